"""deploy/ checked offline with maintained validators: every Kubernetes manifest and the
kustomize-built overlays against the Kubernetes schemas (kubernetes-validate, strict), the
compose file against the compose-spec schema (check-jsonschema's vendored copy), the
Dockerfiles parsed (dockerfile-parse), the systemd unit by ``systemd-analyze verify``, and the
controller config files by the controller's own config loader."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import build_config

kubernetes_validate = pytest.importorskip("kubernetes_validate")
dockerfile_parse = pytest.importorskip("dockerfile_parse")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
OVERLAYS = ("try-it", "external")
K8S_VERSION = "1.32.0"  # the oldest Kubernetes these manifests are meant for


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def _validate(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


# -- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(KUBE)))
def test_every_manifest_file_is_valid_kubernetes(path: Path) -> None:
    documents = _documents(path)
    assert documents
    for resource in documents:
        _validate(resource)


def test_the_validator_refuses_a_broken_manifest() -> None:
    deployment = _documents(KUBE / "base" / "controller-deployment.yaml")[0]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: unknown field
        _validate(deployment)


@pytest.mark.parametrize("kustomization", sorted(KUBE.rglob("kustomization.yaml")))
def test_every_kustomization_names_files_that_exist(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    here = kustomization.parent
    named = list(spec.get("resources", []))
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        named += [f.split("=", 1)[-1] for f in generator.get("files", [])]
    assert named
    for name in named:
        target = (here / name).resolve()
        assert target.exists(), f"{kustomization}: {name} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_builds_into_valid_kubernetes(overlay: str) -> None:
    resources = _kustomize(KUBE / "overlays" / overlay)
    for resource in resources:
        _validate(resource)
    by_kind: dict[tuple[str, str], dict[str, Any]] = {
        (r["kind"], r["metadata"]["name"]): r for r in resources
    }
    assert all(r["metadata"].get("namespace") == "edgefleet" for r in resources)
    controller = by_kind[("Deployment", "edgefleet-controller")]
    assert controller["spec"]["replicas"] >= 2
    pod = controller["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in secret_volumes] == ["edgefleet-controller-secrets"]
    # mounted where the config's secrets_dir says, with the paths the controller reads there
    maps = [r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"]
    config_text = next(data["controller.toml"] for data in maps if "controller.toml" in data)
    secrets_dir = tomllib.loads(config_text)["controller"]["secrets_dir"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[secret_volumes[0]["name"]] == secrets_dir
    paths = {item["path"] for item in secret_volumes[0]["secret"]["items"]}
    assert paths == {"pki/ca.key", "pki/ca.pem", "operator.token", "mqtt.secret", "http.secret"}
    assert mounts["tuf"] == "/var/lib/edgefleet/tuf"  # one TUF repository for every replica
    replica = next(e for e in container["env"] if e["name"] == "EDGEFLEET_REPLICA_ID")
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the generated ConfigMaps and Secrets the pod reads exist under their hashed names; the
    # rest are Secrets the operator creates (deploy/README.md)
    yours = {"edgefleet-controller-secrets"}
    if overlay == "external":
        yours |= {"edgefleet-database", "edgefleet-s3"}
    names = {name for _, name in by_kind}
    for env in container["env"]:
        ref = env["valueFrom"].get("configMapKeyRef") or env["valueFrom"].get("secretKeyRef")
        if ref is not None:
            assert ref["name"] in names | yours, ref["name"]
    config = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
    assert ("ConfigMap", config) in by_kind
    grpc = by_kind[("Service", "edgefleet-grpc")]
    assert {p["name"]: p["port"] for p in grpc["spec"]["ports"]} == {
        "admin": 50051,
        "device": 50052,
    }
    assert ("Service", "edgefleet-mqtt") in by_kind
    pdb = by_kind[("PodDisruptionBudget", "edgefleet-controller")]
    assert pdb["spec"]["minAvailable"] == 1
    if overlay == "try-it":
        for kind, name in [
            ("StatefulSet", "edgefleet-postgres"),
            ("Deployment", "edgefleet-mosquitto"),
            ("Deployment", "edgefleet-minio"),
            ("Job", "edgefleet-minio-bucket"),
        ]:
            assert (kind, name) in by_kind
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/edgefleet/mosquitto" in mounts  # the broker's passwd/acl volume


# -- compose ---------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose" / "compose.yaml"


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    checked = _check_compose(COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["postgres"]["helthcheck"] = broken["services"]["postgres"].pop("healthcheck")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    refused = _check_compose(tmp_path / "compose.yaml")
    assert refused.returncode != 0 and "helthcheck" in refused.stdout


def test_compose_runs_two_replicas_with_health_checks_and_file_secrets() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    replicas = [name for name in services if name.startswith("controller-")]
    assert len(replicas) == 2
    assert {"postgres", "mosquitto", "minio", "prometheus"} <= set(services)
    for name, service in services.items():
        if service.get("restart") != "no":  # one-shot jobs have nothing to check
            assert "healthcheck" in service, name
    for name in replicas:
        test = services[name]["healthcheck"]["test"]
        assert any("/readyz" in part for part in test)
    ids = {services[name]["environment"]["EDGEFLEET_REPLICA_ID"] for name in replicas}
    assert len(ids) == 2  # one MQTT ingest session each
    assert services["controller-2"]["depends_on"]["controller-1"]["condition"] == (
        "service_healthy"
    )
    for secret in spec["secrets"].values():
        assert secret["file"].startswith("./secrets/")


# -- controller config files -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [KUBE / "base" / "controller.toml", DEPLOY / "compose" / "controller.toml.template"],
    ids=lambda p: p.name,
)
def test_config_files_are_read_by_the_controllers_own_loader(path: Path) -> None:
    config = build_config({}, {}, path)
    assert config.external_mqtt and config.mqtt_shared_ingest and config.store.startswith("s3://")
    assert config.http_host == "0.0.0.0" and config.http_port == 8480


# -- Dockerfiles -----------------------------------------------------------------------------


def _dockerfile(name: str) -> Any:
    with (DEPLOY / "docker" / name).open("rb") as file:
        return dockerfile_parse.DockerfileParser(fileobj=file).structure


def _instructions(structure: Any, kind: str) -> list[str]:
    return [i["value"] for i in structure if i["instruction"] == kind]


@pytest.mark.parametrize("name", ["Dockerfile.controller", "Dockerfile.agent"])
def test_images_are_multi_stage_non_root_and_health_checked(name: str) -> None:
    structure = _dockerfile(name)
    assert len(_instructions(structure, "FROM")) >= 2
    final_stage = structure[max(i for i, x in enumerate(structure) if x["instruction"] == "FROM") :]
    users = _instructions(final_stage, "USER")
    assert users and not users[-1].startswith(("root", "0"))
    assert _instructions(final_stage, "HEALTHCHECK")
    assert _instructions(final_stage, "ENTRYPOINT")


def _pip_installs(name: str) -> list[str]:
    runs = _instructions(_dockerfile(name), "RUN")
    return [run for run in runs if "pip install" in run]


def test_agent_image_installs_only_the_agent_extra() -> None:
    installs = _pip_installs("Dockerfile.agent")
    assert installs == ['/opt/edgefleet-agent/bin/pip install ".[agent]"']
    assert '".[controller]"' in _pip_installs("Dockerfile.controller")[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    contracts = project["tool"]["importlinter"]["contracts"]
    agent_side = ["agent", "edgefleet"]
    controller_only = next(
        c["forbidden_modules"] for c in contracts if c.get("source_modules") == agent_side
    )
    agent_packages = {req.split(">")[0].split("=")[0].split("[")[0].split(";")[0].strip().lower()
                      for req in extras["agent"]}  # fmt: skip
    assert not any(req.startswith("edgefleet[") for req in extras["agent"])
    assert not agent_packages & {m.lower().replace("_", "-") for m in controller_only}
    assert not agent_packages & {"sqlalchemy", "alembic", "psycopg", "boto3", "onnx", "amqtt"}


# -- systemd ---------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "edgefleet-agent.service"


def test_agent_unit_is_hardened() -> None:
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in
             UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")}  # fmt: skip
    assert lines["NoNewPrivileges"] == "yes"
    assert lines["ProtectSystem"] == "strict"
    assert lines["ReadWritePaths"] == "/var/lib/edgefleet-agent"
    assert lines["Restart"] == "on-failure"
    assert lines["User"] != "root"


def test_agent_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks that ExecStart's binary exists: point it at this checkout's agent
    agent = Path(sys.executable).parent / "edgefleet-agent"
    unit = tmp_path / UNIT.name
    shipped = "/opt/edgefleet-agent/bin/edgefleet-agent"
    unit.write_text(UNIT.read_text().replace(shipped, str(agent)))
    verified = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr

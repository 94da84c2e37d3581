"""The operator's everyday experience: `--version`, completion, one-line errors instead of
tracebacks (and nothing gRPC's C core prints by itself), paced frames, JSON numbers, a
`fleet watch` that outlives a controller restart. Real CLI processes against real
controllers on loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from controller.app import Controller
from controller.pki import CertificateAuthority
from edgefleet.enrollment import EnrollmentToken
from tests.conftest import REPO, free_port, wait_until
from tests.fleet import edgefleet_cli, start_controller

BIN = Path(sys.executable).parent
DIGITS = REPO / "examples" / "digits"
# A line gRPC's C core logs by itself, e.g. "I1202 02:02:01.417480 23817 file.cc:2563] ..."
C_CORE_LINE = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]", re.MULTILINE)


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without a GRPC_VERBOSITY of its own (the CLI chooses)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    return {**env, **extra}


def _run(*args: str, timeout_s: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=_env(**env),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Non-zero exit; stderr ends with one ``error: ...`` line and holds no traceback and
    nothing from gRPC's C core (log lines of our own may come before it)."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not C_CORE_LINE.search(result.stderr), result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr


def _serve_args(data_dir: Path, grpc_port: int = 0, mqtt_port: int = 0) -> list[str]:
    return [
        str(BIN / "edgefleet"), "controller", "serve", "--data-dir", str(data_dir),
        "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port), "--device-port", "0",
        "--mqtt-port", str(mqtt_port), "--http-port", "0",
    ]  # fmt: skip


@contextmanager
def taken_port(listen: bool = True) -> Iterator[int]:
    """A loopback port this test holds: listening (taken) or only bound (refuses connects)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if listen:
            s.listen()
        yield int(s.getsockname()[1])


# -- 1. --version and shell completion --------------------------------------------------------


@pytest.mark.parametrize("program", ["edgefleet", "edgefleet-agent"])
def test_version_is_the_installed_distributions(program: str) -> None:
    result = _run(BIN / program, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{program} {version('edgefleet')}"


@pytest.mark.parametrize(
    ("program", "partial", "completed"),
    [("edgefleet", "dev", "device"), ("edgefleet-agent", "enr", "enroll")],
)
def test_shell_completion_is_offered_and_works(program: str, partial: str, completed: str) -> None:
    help_text = _run(BIN / program, "--help", COLUMNS="200").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    # What the installed bash completion script asks the program (click's protocol).
    variable = "_" + program.upper().replace("-", "_") + "_COMPLETE"
    result = _run(
        BIN / program, COMP_WORDS=f"{program} {partial}", COMP_CWORD="1",
        **{variable: "complete_bash"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [completed]


def test_cli_modules_import_no_grpc() -> None:
    """The entry points quiet gRPC's C core before a command imports grpc (and --help stays
    quick): importing the CLI modules must not import it."""
    code = (
        "import sys, controller.cli.main, agent.cli.main; "
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- 2. one-line errors -----------------------------------------------------------------------


def test_serve_grpc_port_taken_is_one_line(tmp_path: Path) -> None:
    with taken_port() as port:
        result = _run(*_serve_args(tmp_path / "ctl", grpc_port=port))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert "--grpc-port" in result.stderr and "controller ready" not in result.stderr


def test_serve_mqtt_port_taken_is_one_line(tmp_path: Path) -> None:
    with taken_port() as port:
        result = _run(*_serve_args(tmp_path / "ctl", mqtt_port=port))
    assert_one_line_error(result, f"MQTT broker (mosquitto) cannot listen on 127.0.0.1:{port}")
    assert "Address already in use" in result.stderr
    assert "Broker startup failed" not in result.stderr


def test_serve_unreachable_s3_store_fails_fast(tmp_path: Path) -> None:
    with taken_port(listen=False) as port:  # bound, not listening: connections are refused
        started = time.monotonic()
        result = _run(
            *_serve_args(tmp_path / "ctl"), "--store", "s3://fleet/artifacts",
            "--store-endpoint-url", f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert_one_line_error(result, f"S3 store unreachable at http://127.0.0.1:{port}")
    assert "controller ready" not in result.stderr
    assert elapsed < 45, f"took {elapsed:.0f} s"


def test_enroll_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "agent"  # under a regular file: cannot be created
    token = str(EnrollmentToken.new("0" * 64))
    result = _run(
        BIN / "edgefleet-agent", "enroll", "--controller", f"127.0.0.1:{free_port()}",
        "--token", token, "--data-dir", str(data_dir), "--attempts", "1",
    )  # fmt: skip
    assert_one_line_error(result, f"cannot use {data_dir} as the agent's data directory")


def test_serve_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "ctl"  # under a regular file: cannot be created
    result = _run(*_serve_args(data_dir))
    assert_one_line_error(result, f"cannot use {data_dir} as the controller's data directory")
    assert "--data-dir" in result.stderr and "controller ready" not in result.stderr


def test_pack_model_unwritable_out_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "variant"
    fashion = REPO / "examples" / "fashion"
    result = _run(
        BIN / "edgefleet-agent", "pack-model", "--onnx", str(fashion / "edge.onnx"),
        "--preprocess", str(fashion / "edge_preprocess.json"), "--out", str(out),
    )  # fmt: skip
    assert_one_line_error(result, f"cannot write the variant to {out}")


@dataclass
class Fleet:
    """One in-process controller, one registered and enrolled device (`cam-1`, site=lab)."""

    controller: Controller
    data_dir: Path
    agent_dir: Path
    address: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    ctl = start_controller(root / "controller")
    try:
        data_dir = root / "controller"
        out = edgefleet_cli(
            data_dir, "device", "register", "cam-1", "--label", "site=lab", "--format", "json"
        )
        token = json.loads(out.stdout)["enrollment_token"]
        address = f"127.0.0.1:{ctl.grpc_port}"
        agent_dir = root / "agent"
        enrolled = _run(
            BIN / "edgefleet-agent", "enroll", "--controller", address, "--token", token,
            "--data-dir", str(agent_dir),
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        yield Fleet(ctl, data_dir, agent_dir, address)
    finally:
        ctl.stop()


def test_ca_mismatch_prints_only_the_clean_error(fleet: Fleet, tmp_path: Path) -> None:
    other = CertificateAuthority(tmp_path / "other-ca")
    token = (fleet.controller.config.data_dir / "operator.token").read_text().strip()
    operator = _run(
        BIN / "edgefleet", "--controller", fleet.address, "--token", token,
        "--ca-file", str(other.directory / "ca.pem"), "device", "list",
    )  # fmt: skip
    assert_one_line_error(operator, f"controller unreachable at {fleet.address}")
    assert "CERTIFICATE_VERIFY_FAILED" in operator.stderr  # said once, in the error line
    registered = edgefleet_cli(fleet.data_dir, "device", "register", "cam-pin", "--format", "json")
    parsed = EnrollmentToken.parse(json.loads(registered.stdout)["enrollment_token"])
    wrong_pin = EnrollmentToken(parsed.token_id, parsed.secret, "0" * 64)
    agent = _run(
        BIN / "edgefleet-agent", "enroll", "--controller", fleet.address,
        "--token", str(wrong_pin), "--data-dir", str(tmp_path / "agent"), "--attempts", "1",
    )  # fmt: skip
    assert_one_line_error(agent, "does not present the CA pinned in the token")


# -- 3. run --source and pacing ---------------------------------------------------------------


def test_run_with_a_missing_source_fails_at_once(fleet: Fleet, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-frames.npz"
    result = _run(
        BIN / "edgefleet-agent", "run", "--data-dir", str(fleet.agent_dir),
        "--source", str(missing), timeout_s=30,
    )  # fmt: skip
    assert_one_line_error(result, f"frame source {missing} does not exist")
    assert result.returncode == 2


def test_run_paces_by_default_and_help_says_so() -> None:
    out = _run(BIN / "edgefleet-agent", "run", "--help", COLUMNS="200").stdout
    text = " ".join(out.replace("\u2502", " ").split())  # without the box's side lines
    fps = re.search(r"--fps <float range> \[x>=0.0\] (.*?)\[default: ([\d.]+)\]", text)
    assert fps is not None, text
    assert "0 = unpaced" in fps.group(1) and float(fps.group(2)) > 0, fps.group(0)


def test_readme_walkthrough_runs_the_agent_with_fps() -> None:
    text = (REPO / "README.md").read_text()
    walkthrough = text[text.index("## A walk through by hand") :]
    run_lines = [line for line in walkthrough.splitlines() if line.startswith("$A run ")]
    assert run_lines and all("--fps" in line for line in run_lines), run_lines


@pytest.mark.skipif(not (DIGITS / "edge.onnx").is_file(), reason="digits models missing")
@pytest.mark.timeout(120)
def test_run_paces_frames_by_default(fleet: Fleet, tmp_path: Path) -> None:
    variant = tmp_path / "variant"
    packed = _run(
        BIN / "edgefleet-agent", "pack-model", "--onnx", str(DIGITS / "edge.onnx"),
        "--preprocess", str(DIGITS / "preprocess.json"), "--labels", str(DIGITS / "labels.txt"),
        "--out", str(variant), "--name", "digits",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    with np.load(DIGITS / "test_corrupted.npz") as archive:
        np.save(tmp_path / "frames.npy", archive["x"][:300])
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen(
        [
            str(BIN / "edgefleet-agent"), "run", "--data-dir", str(fleet.agent_dir),
            "--model", str(variant), "--source", str(tmp_path / "frames.npy"), "--no-ota",
            "--results", str(results),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip

    def answered() -> int:
        return len(results.read_text().splitlines()) if results.exists() else 0

    try:
        assert wait_until(lambda: answered() > 0, 60), "no frame answered"
        first = time.monotonic()
        time.sleep(2.0)
        elapsed, count = time.monotonic() - first, answered()
        # Paced at 30 fps: about 60 in 2 s (fewer on a busy machine, never all 300 at once).
        assert count <= 30 * elapsed + 10, f"{count} frames in {elapsed:.1f} s: not paced"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


# -- 4. JSON numbers and labels ---------------------------------------------------------------


def test_json_integers_are_numbers_and_labels_are_pairs(fleet: Fleet) -> None:
    cli = fleet.data_dir
    listed = json.loads(edgefleet_cli(cli, "device", "list", "--format", "json").stdout)
    cam = next(d for d in listed if d["name"] == "cam-1")
    shown = json.loads(edgefleet_cli(cli, "device", "show", "cam-1", "--format", "json").stdout)
    for device in (cam, shown):
        for field in ("created_unix_ms", "enrolled_unix_ms", "last_seen_unix_ms"):
            assert type(device[field]) is int, (field, device[field])
        assert device["created_unix_ms"] > 0 and device["enrolled_unix_ms"] > 0
        assert type(device["facts"]["ram_bytes"]) is int and device["facts"]["ram_bytes"] > 0
        assert type(device["facts"]["cores"]) is int
    profiles = json.loads(edgefleet_cli(cli, "device", "profiles", "--format", "json").stdout)
    assert all(type(p["memory_budget_bytes"]) is int for p in profiles)
    registered = json.loads(
        edgefleet_cli(cli, "device", "register", "cam-json", "--format", "json").stdout
    )
    assert type(registered["device"]["created_unix_ms"]) is int
    status = json.loads(edgefleet_cli(cli, "fleet", "status", "--format", "json").stdout)
    assert all(type(d["last_seen_unix_ms"]) is int for d in status["devices"])
    human = edgefleet_cli(cli, "device", "show", "cam-1").stdout
    labels = next(line for line in human.splitlines() if line.startswith("labels"))
    assert labels.split() == ["labels", "site=lab"], labels


# -- 5. fleet watch across a controller restart -----------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_fleet_watch_retries_while_the_controller_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "ctl"
    args = _serve_args(data_dir, grpc_port=free_port(), mqtt_port=free_port())

    def serve() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        address = f"127.0.0.1:{args[args.index('--grpc-port') + 1]}"
        ok = wait_until(
            lambda: (
                (data_dir / "client.toml").exists()
                and address in (data_dir / "client.toml").read_text()
                and edgefleet_cli(data_dir, "fleet", "status", check=False).returncode == 0
            ),
            45,
            0.5,
        )
        assert ok, "controller did not start"
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    controller = serve()
    log = tmp_path / "watch.err"
    with log.open("w") as err:
        watch = subprocess.Popen(
            [str(BIN / "edgefleet"), "--data-dir", str(data_dir), "fleet", "watch",
             "--interval", "0.5"],
            stdout=subprocess.DEVNULL, stderr=err, env=_env(COLUMNS="200"),
        )  # fmt: skip
    try:
        time.sleep(2)
        assert watch.poll() is None, log.read_text()
        stop(controller)
        assert wait_until(lambda: "controller unreachable, retrying" in log.read_text(), 20), (
            log.read_text()
        )
        time.sleep(2)  # a few more tries, backing off
        assert watch.poll() is None, f"watch exited: {log.read_text()}"
        controller = serve()
        assert wait_until(lambda: "controller reachable again" in log.read_text(), 45), (
            log.read_text()
        )
        assert watch.poll() is None
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=15) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if watch.poll() is None:
            watch.kill()
        stop(controller)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ((BIN / "edgefleet", "device", "list", "--format", "yaml"), "Invalid value for '--format'"),
        ((BIN / "edgefleet", "--bogus"), "No such option: --bogus"),
        ((BIN / "edgefleet-agent", "run", "--fps", "-5"), "Invalid value for '--fps'"),
    ],
)
def test_a_bad_flag_or_value_is_one_line(argv: tuple[Path | str, ...], needle: str) -> None:
    result = _run(*(str(a) for a in argv))
    assert result.returncode == 2
    assert_one_line_error(result, needle)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no usage box

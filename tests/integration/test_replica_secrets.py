"""What replicas share: the CA and the controller's secrets read from one secrets directory
(never written to), and client.toml written atomically and only when it changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509

from controller.app import ClientInfo, write_client_file
from controller.errors import ConfigError
from tests.fleet import start_controller

SHARED = ("pki/ca.key", "pki/ca.pem", "operator.token", "mqtt.secret", "http.secret")


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secrets of a controller that ran once, as an operator would put them in a secret."""
    first = tmp_path_factory.mktemp("first")
    start_controller(first, mqtt="embedded").stop()
    secrets = tmp_path_factory.mktemp("secrets")
    for name in SHARED:
        (secrets / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(first / name, secrets / name)
    return secrets


def test_a_replica_uses_the_shared_ca_and_secrets_and_writes_none(
    secrets_dir: Path, tmp_path: Path
) -> None:
    before = _snapshot(secrets_dir)
    replica = start_controller(tmp_path / "replica", mqtt="embedded", secrets_dir=secrets_dir)
    try:
        assert replica.operator_token == (secrets_dir / "operator.token").read_text().strip()
        assert replica.ca.certificate_pem.encode() == (secrets_dir / "pki" / "ca.pem").read_bytes()
        server = x509.load_pem_x509_certificate(replica.ca.server_cert_pem)
        server.verify_directly_issued_by(replica.ca.certificate)  # issued locally by the shared CA
        assert not (tmp_path / "replica" / "pki" / "ca.key").exists()  # the CA key stays shared
        assert not (tmp_path / "replica" / "operator.token").exists()
    finally:
        replica.stop()
    assert _snapshot(secrets_dir) == before


def test_a_missing_shared_secret_is_a_one_line_config_error(
    secrets_dir: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(secrets_dir, partial)
    (partial / "mqtt.secret").unlink()
    with pytest.raises(ConfigError, match=r"secrets_dir: cannot read .*mqtt\.secret"):
        start_controller(tmp_path / "replica", mqtt="embedded", secrets_dir=partial)
    (partial / "pki" / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"no .*ca\.key"):
        start_controller(tmp_path / "replica2", mqtt="embedded", secrets_dir=partial)


def test_client_file_is_written_atomically_only_when_it_changes(tmp_path: Path) -> None:
    info = ClientInfo("10.0.0.1:50051", tmp_path / "ca.pem", tmp_path / "operator.token")
    assert write_client_file(tmp_path, info)
    written = (tmp_path / "client.toml").stat().st_mtime_ns
    assert not write_client_file(tmp_path, info)  # the same content: left alone
    assert (tmp_path / "client.toml").stat().st_mtime_ns == written
    assert write_client_file(tmp_path, ClientInfo("10.0.0.2:50051", info.ca_file, info.token_file))
    assert 'address = "10.0.0.2:50051"' in (tmp_path / "client.toml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.toml"]  # no temp file left

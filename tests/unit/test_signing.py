"""Key store and TUF repository on disk (real Ed25519 keys, real signatures)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from controller.artifacts import ArtifactRef
from controller.signing import (
    InvalidTarget,
    KeyLoadError,
    KeyStore,
    MetadataNotFound,
    Repository,
    ThresholdNotMet,
    create_keys,
    load_signer,
    target_path,
)

PASS = b"correct horse"
REF = ArtifactRef("ab" * 32, 1234)


def make_repo(tmp_path: Path, threshold: int = 1) -> tuple[KeyStore, Repository]:
    keys = KeyStore(tmp_path / "keys")
    create_keys(keys.dir, root_threshold=threshold, root_passphrase=PASS)
    repo = Repository(tmp_path / "repo", keys)
    repo.init(keys.signers("root", passphrase=PASS), root_threshold=threshold)
    return keys, repo


def test_key_files_are_private_and_root_is_encrypted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    public = create_keys(tmp_path / "keys", root_threshold=2, root_passphrase=PASS)
    assert {r: len(k) for r, k in public.items()} == {
        "root": 2,
        "targets": 1,
        "snapshot": 1,
        "timestamp": 1,
    }
    files = sorted((tmp_path / "keys").rglob("*.pem"))
    assert len(files) == 5
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    root_file = next((tmp_path / "keys" / "root").iterdir())
    assert b"ENCRYPTED PRIVATE KEY" in root_file.read_bytes()
    with pytest.raises(KeyLoadError, match="passphrase"):
        load_signer(root_file)
    with pytest.raises(KeyLoadError, match="passphrase"):
        load_signer(root_file, b"wrong")
    assert load_signer(root_file, PASS).public_key.keyid == root_file.stem
    for f in files:  # no key material in logs
        pem_body = b"".join(f.read_bytes().splitlines()[1:-1]).decode()
        assert pem_body[:40] not in caplog.text


def test_init_and_publish_bump_versions(tmp_path: Path) -> None:
    _, repo = make_repo(tmp_path)
    assert json.loads(repo.metadata_file("timestamp.json"))["signed"]["version"] == 1
    path = target_path("cats", 2, "onnx-fp16", "model.onnx")
    assert path == "models/cats/2/onnx-fp16/model.onnx"
    repo.add_target(path, REF, {"model": "cats", "profile": "rpi5", "temperature": 0.9})
    assert repo.publish() == 2
    targets = Metadata.from_bytes(repo.metadata_file("2.targets.json"))
    assert isinstance(targets.signed, Targets)
    assert targets.signed.targets[path].hashes == {"sha256": REF.sha256}
    assert targets.signed.targets[path].length == REF.size
    snapshot = Metadata.from_bytes(repo.metadata_bytes("snapshot"))
    assert isinstance(snapshot.signed, Snapshot)
    assert snapshot.signed.meta["targets.json"].version == 2
    assert repo.metadata_file("snapshot.json") == repo.metadata_file("2.snapshot.json")
    assert repo.refresh_timestamp() == 3
    ts = Metadata.from_bytes(repo.metadata_file("timestamp.json"))
    assert isinstance(ts.signed, Timestamp) and ts.signed.snapshot_meta.version == 2
    root = repo.root()
    root.verify_delegate("timestamp", ts.signed_bytes, ts.signatures)
    assert ts.signed.expires < snapshot.signed.expires < targets.signed.expires < root.expires
    with pytest.raises(MetadataNotFound):
        repo.metadata_file("../keys/root.json")
    with pytest.raises(MetadataNotFound):
        repo.metadata_file("7.targets.json")


def test_targets_need_profile_and_a_safe_path(tmp_path: Path) -> None:
    _, repo = make_repo(tmp_path)
    with pytest.raises(InvalidTarget, match="profile"):
        repo.add_target("models/a/1/v/m.onnx", REF, {"model": "a"})
    with pytest.raises(InvalidTarget):
        repo.add_target("models/../../etc/passwd", REF, {"model": "a", "profile": "p"})
    with pytest.raises(InvalidTarget):
        target_path("a", 1, "..", "m.onnx")
    custom = {"model": "a", "profile": "p"}
    for path in ("models/a/1/v\x00x/m.onnx", "models/a/1/v\\x/m.onnx", "models/a//m.onnx",
                 "models/a/1/v/manifest.json", "models/a/1/v/m.onnx\x00"):  # fmt: skip
        with pytest.raises(InvalidTarget):
            repo.add_target(path, REF, custom)
    with pytest.raises(InvalidTarget, match="reserved"):
        repo.add_target("models/a/1/v/m.onnx", REF, {**custom, "file": "variant.json"})


def test_offline_root_threshold_is_enforced(tmp_path: Path) -> None:
    keys, repo = make_repo(tmp_path, threshold=2)
    root_signers = keys.signers("root", passphrase=PASS)
    with pytest.raises(ThresholdNotMet):
        repo.resign_root(root_signers[:1])
    assert repo.resign_root(root_signers) == 2
    # online roles never need the root keys
    repo.add_target("models/a/1/v/m.onnx", REF, {"model": "a", "profile": "p"})
    repo.publish()
    with pytest.raises(ThresholdNotMet):
        Repository(tmp_path / "other", keys).init(root_signers[:1], root_threshold=2)


def test_root_rotation_is_signed_by_old_and_new_keys(tmp_path: Path) -> None:
    keys, repo = make_repo(tmp_path)
    old = keys.signers("root", passphrase=PASS)
    new = repo.rotate_key("root", old, passphrase=PASS)
    v1 = Metadata.from_bytes(repo.metadata_file("1.root.json"))
    v2 = Metadata.from_bytes(repo.metadata_file("2.root.json"))
    assert isinstance(v1.signed, Root) and isinstance(v2.signed, Root)
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # old trusts new
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # new is self-signed
    assert v2.signed.roles["root"].keyids == [new[0].public_key.keyid]
    assert repo.metadata_file("root.json") == repo.metadata_file("2.root.json")
    # rotating without any valid current root key is refused
    stranger = KeyStore(tmp_path / "stranger").generate("root")
    with pytest.raises(ThresholdNotMet, match="previous"):
        repo.rotate_key("targets", [stranger])
    assert len(keys.keyids("targets")) == 1  # no orphan key was generated

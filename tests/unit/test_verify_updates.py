"""Device-side verification against real metadata signed by controller.signing.Repository.

A FakeController serves the repository's metadata files and the artifact store's blobs
through the same Transport callable the agent will back with gRPC; tests tamper with what it
serves and check the updater refuses it for the right reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root

from controller.artifacts import ArtifactRef, MemoryArtifactStore
from controller.signing import KeyStore, Repository, create_keys, target_path
from edgefleet.errors import VerificationError
from edgefleet.updates import (
    ArtifactMismatch,
    ArtifactTooLong,
    ArtifactTruncated,
    BadSignature,
    MetadataExpired,
    MixAndMatch,
    RollbackDetected,
    TargetNotFound,
    TrustedUpdater,
)

PASS = b"offline root passphrase"
PROFILE = "x86-avx2"
MODEL_BYTES = os.urandom(300_000)
PATH = target_path("digits-edge", 3, "onnx-int8-static", "model.onnx")


@dataclass
class FakeController:
    repo: Repository
    store: MemoryArtifactStore
    overrides: dict[str, bytes | Callable[[], Iterable[bytes]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def __call__(self, path: str) -> bytes | Iterable[bytes]:
        self.requests.append(path)
        if path in self.overrides:
            served = self.overrides[path]
            return served if isinstance(served, bytes) else served()
        kind, _, rest = path.partition("/")
        if kind == "metadata":
            return self.repo.metadata_file(rest)
        sha256 = rest.rsplit("/", 1)[-1].split(".", 1)[0]
        blob = self.store.open(sha256)
        return iter(lambda: blob.read(64 * 1024), b"")


@dataclass
class World:
    keys: KeyStore
    repo: Repository
    controller: FakeController
    ref: ArtifactRef
    device_dir: Path

    def root_signers(self) -> list[CryptoSigner]:
        return self.keys.signers("root", passphrase=PASS)

    def updater(self) -> TrustedUpdater:
        return TrustedUpdater(self.device_dir, self.controller)


def build_world(tmp_path: Path, clock: Callable[[], datetime] | None = None) -> World:
    keys = KeyStore(tmp_path / "keys")
    create_keys(keys.dir, root_threshold=2, root_passphrase=PASS)
    repo = Repository(tmp_path / "repo", keys, clock=clock or (lambda: datetime.now(UTC)))
    repo.init(keys.signers("root", passphrase=PASS), root_threshold=2)
    store = MemoryArtifactStore()
    ref = store.put_bytes(MODEL_BYTES)
    custom = {
        "model": "digits-edge",
        "version": 3,
        "variant": "onnx-int8-static",
        "variant_id": "digits-edge:3:onnx-int8-static",
        "profile": PROFILE,
        "runtime": "onnxruntime",
        "labels": ["0", "1"],
        "temperature": 1.3,
    }
    repo.add_target(PATH, ref, custom)
    repo.publish()
    device_dir = tmp_path / "device"
    device_dir.mkdir()
    (device_dir / "root.json").write_bytes(repo.metadata_file("1.root.json"))  # provisioning
    return World(keys, repo, FakeController(repo, store), ref, device_dir)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def artifact_path(world: World) -> str:
    return f"targets/models/digits-edge/3/onnx-int8-static/{world.ref.sha256}.model.onnx"


def assert_nothing_written(dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == []


def test_verified_download_succeeds(world: World, tmp_path: Path) -> None:
    updater = world.updater()
    updater.refresh()
    target = updater.get_target(PATH, profile=PROFILE, model="digits-edge")
    assert (target.length, target.sha256) == (len(MODEL_BYTES), world.ref.sha256)
    assert target.custom["temperature"] == 1.3  # floats survive canonical JSON
    assert target.custom["labels"] == ["0", "1"]
    dest = updater.download_target(target, tmp_path / "slot" / "model.onnx")
    assert dest.read_bytes() == MODEL_BYTES
    assert artifact_path(world) in world.controller.requests


def test_flipped_byte_is_rejected(world: World, tmp_path: Path) -> None:
    tampered = bytearray(MODEL_BYTES)
    tampered[12345] ^= 0x01
    world.controller.overrides[artifact_path(world)] = bytes(tampered)
    updater = world.updater()
    target = updater.get_target(PATH, profile=PROFILE)
    with pytest.raises(ArtifactMismatch, match="sha256"):
        updater.download_target(target, tmp_path / "slot" / "model.onnx")
    assert_nothing_written(tmp_path / "slot" / "model.onnx")


def test_wrong_length_and_endless_data_are_rejected(world: World, tmp_path: Path) -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"\0" * 65536

    updater = world.updater()
    target = updater.get_target(PATH, profile=PROFILE)
    world.controller.overrides[artifact_path(world)] = MODEL_BYTES + b"!"
    with pytest.raises(ArtifactTooLong):
        updater.download_target(target, tmp_path / "slot" / "a.onnx")
    world.controller.overrides[artifact_path(world)] = endless
    with pytest.raises(ArtifactTooLong):
        updater.download_target(target, tmp_path / "slot" / "b.onnx")
    assert pulled == len(MODEL_BYTES) // 65536 + 1  # stopped right past the signed length
    assert_nothing_written(tmp_path / "slot" / "b.onnx")


def test_truncated_download_is_rejected(world: World, tmp_path: Path) -> None:
    world.controller.overrides[artifact_path(world)] = MODEL_BYTES[:-1]
    updater = world.updater()
    target = updater.get_target(PATH, profile=PROFILE)
    with pytest.raises(ArtifactTruncated):
        updater.download_target(target, tmp_path / "slot" / "model.onnx")
    assert_nothing_written(tmp_path / "slot" / "model.onnx")


def test_metadata_signed_by_unknown_key_is_rejected(world: World) -> None:
    forged = Metadata.from_bytes(world.repo.metadata_file("timestamp.json"))
    forged.signed.version += 1
    forged.sign(CryptoSigner.generate_ed25519())
    world.controller.overrides["metadata/timestamp.json"] = forged.to_bytes()
    with pytest.raises(BadSignature, match="timestamp"):
        world.updater().refresh()


def test_root_below_threshold_is_rejected(world: World) -> None:
    new_root = Metadata.from_bytes(world.repo.metadata_file("root.json"))
    assert isinstance(new_root.signed, Root) and new_root.signed.roles["root"].threshold == 2
    new_root.signed.version = 2
    new_root.sign(world.root_signers()[0])  # one of the two required root keys
    world.controller.overrides["metadata/2.root.json"] = new_root.to_bytes()
    with pytest.raises(BadSignature, match="root"):
        world.updater().refresh()
    assert isinstance(BadSignature("x"), VerificationError)


def test_expired_timestamp_is_rejected(tmp_path: Path) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    world = build_world(tmp_path, clock=lambda: two_days_ago)
    with pytest.raises(MetadataExpired, match="timestamp"):
        world.updater().refresh()
    # the online key re-signs a fresh timestamp and the device accepts it again
    world.repo._clock = lambda: datetime.now(UTC)
    world.repo.refresh_timestamp()
    world.updater().refresh()


def test_rollback_to_older_timestamp_is_rejected(world: World) -> None:
    old_timestamp = world.repo.metadata_file("timestamp.json")
    world.repo.publish()
    world.updater().refresh()  # the device now trusts the newer timestamp
    world.controller.overrides["metadata/timestamp.json"] = old_timestamp
    with pytest.raises(RollbackDetected):
        world.updater().refresh()


def test_target_for_another_profile_is_rejected(world: World) -> None:
    updater = world.updater()
    with pytest.raises(MixAndMatch, match="profile"):
        updater.get_target(PATH, profile="arm64-npu")
    with pytest.raises(MixAndMatch, match="model"):
        updater.get_target(PATH, profile=PROFILE, model="other-model")
    with pytest.raises(TargetNotFound):
        updater.get_target("models/nope/1/x/model.onnx", profile=PROFILE)


def test_root_rotation_chain_is_walked(world: World, tmp_path: Path) -> None:
    updater = world.updater()
    updater.refresh()
    old_root_keys = world.root_signers()
    # root v2: replace one root key; v3: replace the other; v4: new timestamp key
    new_a = world.repo.rotate_key(
        "root", old_root_keys, revoke=[old_root_keys[0].public_key.keyid], passphrase=PASS
    )
    world.keys.remove("root", old_root_keys[0].public_key.keyid)
    current = world.keys.signers("root", passphrase=PASS)
    assert {s.public_key.keyid for s in new_a} <= {s.public_key.keyid for s in current}
    world.repo.rotate_key(
        "root", current, revoke=[old_root_keys[1].public_key.keyid], passphrase=PASS
    )
    world.keys.remove("root", old_root_keys[1].public_key.keyid)
    world.repo.rotate_key("timestamp", world.keys.signers("root", passphrase=PASS))
    assert world.repo.root().version == 4

    updater = world.updater()
    updater.refresh()
    trusted = Metadata.from_file(str(world.device_dir / "root.json"))
    assert trusted.signed.version == 4
    assert updater.get_target(PATH, profile=PROFILE).sha256 == world.ref.sha256
    # a root signed only by the original (now revoked) keys no longer counts
    forged = Metadata.from_bytes(world.repo.metadata_file("4.root.json"))
    forged.signed.version = 5
    forged.signatures.clear()
    for signer in old_root_keys:
        forged.sign(signer, append=True)
    world.controller.overrides["metadata/5.root.json"] = forged.to_bytes()
    with pytest.raises(BadSignature):
        world.updater().refresh()

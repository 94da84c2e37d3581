"""Refused and reported: the agent's real update path (OtaService + SlotStore + TufVerifier
over mutual-TLS gRPC, as agent.assembly.build_ota_service builds it) against a real
controller (UpdateService download stream, TUF metadata signed by the controller). The
controller turns malicious by having its artifact store or metadata files tampered with on
disk. In every case the agent keeps its installed model
(slot verifies, nothing swapped) and the controller stores a ``failed`` report with the reason.

Desired states are written into the controller's desired-state table (as the rollout engine
does) and the agent fetches them with ``GetDesiredState``, so no rollout engine decisions
interfere with the refusal being checked.
"""

from __future__ import annotations

import errno
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from tuf.api.metadata import Metadata

from agent.assembly import AgentConfig, OtaSettings, build_ota_service
from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials, Identity
from agent.ota.component import onnx_smoke_test
from agent.ota.remote import DesiredStateClient
from agent.ota.service import OtaService
from agent.ota.slots import write_all
from controller.app import Controller
from controller.services.rollout_store import Desired, RolloutStore, now_ms
from controller.services.rollouts import target_of
from controller.store.models_rollouts import DesiredStateRow
from tests.fleet import Admin, start_controller
from tests.rollout_fleet import add_and_build

pytestmark = pytest.mark.timeout(180)


@dataclass
class Fleet:
    ctl: Controller
    admin: Admin
    v1: int
    v2: int
    root: Path
    devices: int = 0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("refusals")
    ctl = start_controller(root / "controller")
    admin = Admin(ctl)
    try:
        v1 = add_and_build(admin, root, "tiny", 8)
        v2 = add_and_build(admin, root, "tiny", 6)
        yield Fleet(ctl, admin, v1, v2, root)
    finally:
        admin.close()
        ctl.stop()


@pytest.fixture
def pristine(fleet: Fleet) -> Iterator[None]:
    """Undo whatever a test does to the controller's metadata and artifact files."""
    data = fleet.ctl.config.data_dir
    saved = fleet.root / f"saved-{uuid.uuid4().hex[:6]}"
    for name in ("tuf/metadata", "artifacts"):
        shutil.copytree(data / name, saved / name)
    yield
    for name in ("tuf/metadata", "artifacts"):
        shutil.rmtree(data / name)
        shutil.copytree(saved / name, data / name)


@dataclass
class Agent:
    device_id: str
    profile: str
    service: OtaService
    desired: DesiredStateClient
    swaps: list[Path] = field(default_factory=list)
    disk_full: list[bool] = field(default_factory=lambda: [False])
    close: Callable[[], None] = lambda: None

    def pull_and_handle(self) -> None:
        d = self.desired.get(self.service.current_variant)
        assert d is not None, "controller has no desired state for this device"
        self.service.handle(d)


def _full_disk_writer(flag: list[bool]) -> Callable[[BinaryIO, bytes], None]:
    def write(fh: BinaryIO, data: bytes) -> None:
        if flag[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fh, data)

    return write


@pytest.fixture
def agent(fleet: Fleet, pristine: None) -> Iterator[Agent]:
    """A freshly enrolled agent with v1 installed and committed through the real path."""
    fleet.devices += 1
    name = f"refuse-{fleet.devices:02d}"
    token = fleet.admin.register(name, "auto", site="lab")
    data_dir = fleet.root / "agents" / name
    identity = enroll(data_dir, f"127.0.0.1:{fleet.ctl.grpc_port}", token, detect())
    a = _make_agent(data_dir, identity)
    try:
        assign(fleet.ctl, a, fleet.v1)
        a.pull_and_handle()
        a.service.updater.tick()  # zero-second probation: commit
        assert a.service.current_variant == variant_of(fleet.ctl, a, fleet.v1).variant_id
        assert reported(fleet.ctl, a)[0] == "committed"
        a.swaps.clear()
        yield a
    finally:
        a.close()


def _make_agent(data_dir: Path, identity: Identity) -> Agent:
    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    flag = [False]
    swaps: list[Path] = []
    ota = OtaSettings(
        max_retries=2, backoff_base_s=0.05, probation_s=0.0, smoke_frames=2,
        download_timeout_s=20.0,
    )  # fmt: skip
    service = build_ota_service(
        AgentConfig(data_dir, ota=ota), identity, channel, on_model_update=swaps.append,
        slot_writer=_full_disk_writer(flag),
    )  # fmt: skip
    assert service.recover() is None
    desired = DesiredStateClient(channel, 5.0)  # the test pulls by hand
    return Agent(identity.device_id, identity.profile, service, desired, swaps, flag, channel.close)


def variant_of(ctl: Controller, a: Agent, version: int, profile: str | None = None) -> Any:
    v = ctl.models.selected_variant("tiny", version, profile or a.profile)
    assert v is not None, f"no variant of tiny v{version} for {profile or a.profile}"
    return v


def assign(ctl: Controller, a: Agent, version: int, **change: Any) -> Desired:
    """Store a desired state for the device (as a rollout step does); ``change`` overrides."""
    v = variant_of(ctl, a, version)
    d = Desired(
        a.device_id, "tiny", version, v.variant_id, v.target_path, v.sha256, int(v.size),
        target_of(v), rollout_id=f"test-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    d = Desired(**{**d.__dict__, **change})
    with ctl.db.session() as s:
        row = s.get(DesiredStateRow, d.device_id)
        if row is None:
            row = DesiredStateRow(device_id=d.device_id, revision=0, target={})
            s.add(row)
        return RolloutStore._write_desired(d, now_ms(), row)


def reported(ctl: Controller, a: Agent) -> tuple[str, str]:
    st = ctl.rollouts.store.statuses([a.device_id])[a.device_id]
    return st.reported_state, st.reported_reason


def assert_refused(fleet: Fleet, a: Agent, *reason_words: str, phase: str = "failed") -> str:
    """The agent still runs v1 from a verified slot, swapped nothing, and said why (``phase``
    is what it reported: ``downloading`` while a later download round is still to come)."""
    v1 = variant_of(fleet.ctl, a, fleet.v1).variant_id
    assert a.service.current_variant == v1
    state = a.service.store.state()
    assert state.active is not None and state.probation is None
    slot = a.service.store.verify_slot(state.active)
    onnx_smoke_test(frames=1)(slot.path)  # the kept model still loads and runs
    assert a.swaps == []
    reported_phase, reason = reported(fleet.ctl, a)
    assert reported_phase == phase, (reported_phase, reason)
    print(f"refused: {reason}")
    for word in reason_words:
        assert word.lower() in reason.lower(), reason
    return reason


# -- controller-side tampering helpers ---------------------------------------------------------
def artifact_file(fleet: Fleet, sha256: str) -> Path:
    path = fleet.ctl.model_parts.store.path_of(sha256)  # type: ignore[attr-defined]
    assert isinstance(path, Path) and path.exists()
    return path


def metadata_dir(fleet: Fleet) -> Path:
    return fleet.ctl.config.data_dir / "tuf" / "metadata"


def resign_timestamp(fleet: Fleet, edit: Callable[[Metadata[Any]], None], signers: Any) -> None:
    path = metadata_dir(fleet) / "timestamp.json"
    md = Metadata.from_bytes(path.read_bytes())
    md.signed.version += 1
    edit(md)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    path.write_bytes(md.to_bytes())


def timestamp_signers(fleet: Fleet) -> Any:
    return fleet.ctl.model_parts.releases.repo.keystore.signers("timestamp")


# -- the cases ---------------------------------------------------------------------------------
def test_tampered_artifact_bytes(fleet: Fleet, agent: Agent) -> None:
    d = assign(fleet.ctl, agent, fleet.v2)
    path = artifact_file(fleet, d.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length, one byte flipped
    path.write_bytes(bytes(data))
    agent.pull_and_handle()
    assert_refused(fleet, agent, "sha256")


def test_artifact_longer_than_signed(fleet: Fleet, agent: Agent) -> None:
    d = assign(fleet.ctl, agent, fleet.v2)
    path = artifact_file(fleet, d.sha256)
    path.write_bytes(path.read_bytes() + b"\0" * 4096)  # endless data
    agent.pull_and_handle()
    assert_refused(fleet, agent, "longer than the target")


def test_desired_length_differs_from_signed(fleet: Fleet, agent: Agent) -> None:
    v = variant_of(fleet.ctl, agent, fleet.v2)
    target = {**target_of(v), "length": int(v.size) + 1}
    assign(fleet.ctl, agent, fleet.v2, length=int(v.size) + 1, target=target)
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed", "signed metadata")


def test_truncated_download(fleet: Fleet, agent: Agent) -> None:
    d = assign(fleet.ctl, agent, fleet.v2)
    path = artifact_file(fleet, d.sha256)
    path.write_bytes(path.read_bytes()[: d.length // 2])
    agent.pull_and_handle()
    reason = assert_refused(fleet, agent, "truncated download", "gave up", phase="downloading")
    assert "download round 2 of 4" in reason  # tried again later, resuming; failed after that


def test_metadata_signed_by_unknown_key(fleet: Fleet, agent: Agent) -> None:
    from securesystemslib.signer import CryptoSigner

    assign(fleet.ctl, agent, fleet.v2)
    resign_timestamp(fleet, lambda md: None, [CryptoSigner.generate_ed25519()])
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed", "timestamp")


def test_metadata_below_threshold(fleet: Fleet, agent: Agent) -> None:
    assign(fleet.ctl, agent, fleet.v2)
    resign_timestamp(fleet, lambda md: None, [])  # threshold 1, no signature
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed", "timestamp")


def test_expired_timestamp(fleet: Fleet, agent: Agent) -> None:
    assign(fleet.ctl, agent, fleet.v2)

    def expire(md: Metadata[Any]) -> None:
        md.signed.expires = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)

    resign_timestamp(fleet, expire, timestamp_signers(fleet))  # the real key: only expiry bad
    agent.pull_and_handle()
    assert_refused(fleet, agent, "expired")


def test_metadata_rollback(fleet: Fleet, agent: Agent) -> None:
    """The controller serves metadata older than what the agent already trusts."""
    meta = metadata_dir(fleet)
    old = {n: (meta / n).read_bytes() for n in ("timestamp.json", "snapshot.json")}
    fleet.ctl.model_parts.releases.repo.publish()  # newer targets, snapshot and timestamp
    v1 = variant_of(fleet.ctl, agent, fleet.v1)
    agent.service._verifier.preflight(target_of(v1))  # the agent now trusts the newer ones
    for name, data in old.items():
        (meta / name).write_bytes(data)
    assign(fleet.ctl, agent, fleet.v2)
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed", "version")


def test_target_for_another_profile(fleet: Fleet, agent: Agent) -> None:
    """Mix-and-match: a correctly signed target, but meant for a different profile."""
    targets = fleet.ctl.model_parts.releases.targets()

    def profile_of(t: Any) -> Any:
        return t.unrecognized_fields["custom"].get("profile")

    other = next(
        (p for p, t in targets.items() if f"/{fleet.v2}/" in p and profile_of(t) != agent.profile),
        None,
    )
    assert other is not None, f"no tiny v{fleet.v2} target for a profile other than {agent.profile}"
    profile = str(profile_of(targets[other]))
    v = variant_of(fleet.ctl, agent, fleet.v2, profile)
    assign(fleet.ctl, agent, fleet.v2, variant_id=v.variant_id, target_path=v.target_path,
           sha256=v.sha256, length=int(v.size), target=target_of(v))  # fmt: skip
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed", "profile")


def test_disk_full_during_write(fleet: Fleet, agent: Agent) -> None:
    assign(fleet.ctl, agent, fleet.v2)
    agent.disk_full[0] = True
    try:
        agent.pull_and_handle()
    finally:
        agent.disk_full[0] = False
    assert_refused(fleet, agent, "disk full")


def test_garbage_metadata(fleet: Fleet, agent: Agent) -> None:
    assign(fleet.ctl, agent, fleet.v2)
    (metadata_dir(fleet) / "timestamp.json").write_bytes(b"\x00\xffnot json at all{{")
    agent.pull_and_handle()
    assert_refused(fleet, agent, "verification failed")


def test_garbage_desired_state(fleet: Fleet, agent: Agent) -> None:
    """Garbage where the target info should be (as a broken controller would publish)."""
    assign(fleet.ctl, agent, fleet.v2, target={"path": 7, "hashes": "x", "length": "lots"})
    agent.pull_and_handle()
    assert_refused(fleet, agent)
    agent.service.handle(b"\x00\x01 garbage")
    assert_refused(fleet, agent, "refused desired state")

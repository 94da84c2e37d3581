# ruff: noqa: F811 - the fixtures of test_ota_refusals are imported, and used by name
"""What a device installs is exactly a signed target (issue 9, item 4 and the smaller OTA
items), through the real path: a real controller (TUF metadata it signs, UpdateService over
mutual TLS, desired states in its table), agents enrolled with ``agent.enroll.enroll`` and
running the real ``OtaService`` + ``SlotStore`` + ``TufVerifier``.

- the unsigned desired-state message cannot change labels, temperature, preprocessing or
  file name: what disagrees with the signed target is refused, counted and reported;
- switching back to the previous slot re-verifies it against signed metadata;
- the TUF root is pinned at enrollment (0600), never taken on first use;
- a signed file name that collides with the slot store's files is refused on both sides;
- a download whose resume fails is retried with backoff, through a real gRPC server in
  front of the controller that breaks the stream and then fails the first resume.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import grpc
import pytest
from tuf.api.metadata import TargetFile

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials, Identity
from agent.ota import machine as m
from agent.ota import slots as ota_slots
from agent.ota import updater as ota_updater
from agent.ota import verify as ota_verify
from agent.ota.component import onnx_smoke_test
from agent.ota.remote import UpdateServiceSource
from agent.ota.service import OtaConfig, OtaService
from agent.ota.slots import SlotStore
from agent.ota.verify import TufVerifier
from controller.services.releases import TufPaths, initialise
from controller.signing import InvalidTarget
from edgefleet.updates import stream as updates_stream
from edgefleet.updates.custom import decode_custom, encode_custom, variant_fields
from edgefleet.v1 import updates_pb2, updates_pb2_grpc
from tests.conftest import wait_until
from tests.integration.test_ota_refusals import (  # noqa: F401 - fixtures used by name
    Agent,
    Fleet,
    _make_agent,
    agent,
    assert_refused,
    assign,
    fleet,
    metadata_dir,
    pristine,
    reported,
    variant_of,
)

pytestmark = pytest.mark.timeout(180)


def signed_custom(fleet: Fleet, target_path: str) -> dict[str, Any]:
    target = fleet.ctl.model_parts.releases.targets()[target_path]
    custom: dict[str, Any] = decode_custom(target.unrecognized_fields["custom"])
    return custom


def active_metadata(a: Agent) -> dict[str, Any]:
    state = a.service.store.state()
    assert state.active is not None
    data: dict[str, Any] = json.loads(
        (a.service.store.slot_dir(state.active) / "variant.json").read_text()
    )
    return data


def commit(a: Agent) -> None:
    a.service.updater.tick()  # zero-second probation: commit
    assert a.service.store.state().probation is None


# -- 1. the desired message names a target; the signed target says what is installed ----------
def test_desired_message_cannot_change_installed_metadata(fleet: Fleet, agent: Agent) -> None:
    v = variant_of(fleet.ctl, agent, fleet.v2)
    custom = v.metadata.to_dict()
    forged = {
        **custom,
        "labels": ["renamed-0", "renamed-1"],
        "temperature": 0.001,  # nothing would ever be offloaded
        "preprocessing": {**custom["preprocessing"], "scale": 1.0},
        "file": "other.onnx",
    }
    target = {"path": v.target_path, "length": int(v.size), "hashes": {"sha256": v.sha256},
              "custom": forged}  # fmt: skip
    assign(fleet.ctl, agent, fleet.v2, target=target)
    agent.pull_and_handle()
    reason = assert_refused(fleet, agent, "disagrees with the signed target")
    for name in ("custom.file", "custom.labels", "custom.preprocessing", "custom.temperature"):
        assert name in reason
    assert agent.service.refused["mismatch"] == 1


def test_installed_metadata_is_the_signed_targets(fleet: Fleet, agent: Agent) -> None:
    """A message that only identifies the target installs the signed metadata, exactly."""
    v = variant_of(fleet.ctl, agent, fleet.v2)
    ident = {"path": v.target_path, "length": int(v.size), "hashes": {"sha256": v.sha256}}
    assign(fleet.ctl, agent, fleet.v2, target=ident)
    agent.pull_and_handle()
    commit(agent)
    assert agent.service.current_variant == v.variant_id
    assert active_metadata(agent) == variant_fields(signed_custom(fleet, v.target_path))
    assert reported(fleet.ctl, agent)[0] == "committed"


# -- 2. switching back to the previous slot re-verifies it ---------------------------------------
def _install_v2_keep_v1_as_previous(fleet: Fleet, a: Agent) -> str:
    assign(fleet.ctl, a, fleet.v2)
    a.pull_and_handle()
    commit(a)
    previous = a.service.store.state().previous
    assert previous is not None
    return previous


def _rewrite_slot(a: Agent, slot: str, name: str, edit: Any) -> None:
    """Edit a slot file and re-record its hash in the manifest (a consistent forgery)."""
    d = a.service.store.slot_dir(slot)
    data = json.loads((d / name).read_text())
    edit(data)
    (d / name).write_text(json.dumps(data))
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))


def _forge(data: dict[str, Any]) -> None:
    data["labels"], data["temperature"] = ["renamed-0", "renamed-1"], 0.001


@pytest.mark.parametrize("forged", ["variant.json", "variant.json+target.json"])
def test_switch_back_reverifies_the_previous_slot(fleet: Fleet, agent: Agent, forged: str) -> None:
    previous = _install_v2_keep_v1_as_previous(fleet, agent)
    _rewrite_slot(agent, previous, "variant.json", _forge)
    if "target.json" in forged:  # consistent on disk: only signed metadata can tell
        _rewrite_slot(agent, previous, "target.json", lambda t: _forge(t["custom"]))
    v1 = variant_of(fleet.ctl, agent, fleet.v1)
    assign(fleet.ctl, agent, fleet.v1)
    agent.pull_and_handle()
    commit(agent)
    assert agent.service.current_variant == v1.variant_id
    assert active_metadata(agent) == variant_fields(signed_custom(fleet, v1.target_path))
    assert reported(fleet.ctl, agent)[1] != "switched back to the previous slot"
    assert agent.service.refused["previous_slot"] == 1  # refused, downloaded afresh instead


def test_switch_back_to_an_intact_previous_slot(fleet: Fleet, agent: Agent) -> None:
    _install_v2_keep_v1_as_previous(fleet, agent)
    assign(fleet.ctl, agent, fleet.v1)
    agent.pull_and_handle()
    assert reported(fleet.ctl, agent) == ("committed", "switched back to the previous slot")
    assert agent.service.refused["previous_slot"] == 0


# -- 3. the TUF root is pinned at enrollment ------------------------------------------------------
def _enrolled(fleet: Fleet, name: str) -> tuple[Path, Agent]:
    token = fleet.admin.register(name, "auto", site="lab")
    data_dir = fleet.root / "agents" / name
    identity = enroll(data_dir, f"127.0.0.1:{fleet.ctl.grpc_port}", token, detect())
    return data_dir, _make_agent(data_dir, identity)


def _sign_with_foreign_keys(fleet: Fleet) -> None:
    """The controller starts signing with keys of its own (a new root v1, the same targets)."""
    foreign = initialise(TufPaths(fleet.root / f"foreign-{fleet.devices}"))
    for path, t in fleet.ctl.model_parts.releases.targets().items():
        ref = type("Ref", (), {"sha256": t.hashes["sha256"], "size": t.length})()
        foreign.add_target(path, ref, decode_custom(t.unrecognized_fields["custom"]))
    foreign.publish()
    meta = metadata_dir(fleet)
    shutil.rmtree(meta)
    shutil.copytree(foreign.dir, meta)


def test_enrollment_pins_the_tuf_root(fleet: Fleet, pristine: None) -> None:
    fleet.devices += 1
    data_dir, a = _enrolled(fleet, f"pin-{fleet.devices:02d}")
    try:
        pinned = data_dir / "tuf" / "root.json"
        assert pinned.read_bytes() == (metadata_dir(fleet) / "root.json").read_bytes()
        assert pinned.stat().st_mode & 0o777 == 0o600
        _sign_with_foreign_keys(fleet)  # before this device's first update
        assign(fleet.ctl, a, fleet.v2)
        a.pull_and_handle()
        assert a.service.current_variant is None and a.swaps == []
        phase, reason = reported(fleet.ctl, a)
        assert phase == "failed" and "verification failed" in reason, (phase, reason)
    finally:
        a.close()


def test_a_rotated_root_chaining_from_the_pin_is_accepted(fleet: Fleet, pristine: None) -> None:
    fleet.devices += 1
    data_dir, a = _enrolled(fleet, f"rotate-{fleet.devices:02d}")
    try:
        repo = fleet.ctl.model_parts.releases.repo
        old_root = repo.root()
        repo.rotate_key("root", repo.keystore.signers("root", old_root.roles["root"].keyids))
        assert repo.root().version == old_root.version + 1
        assign(fleet.ctl, a, fleet.v2)
        a.pull_and_handle()
        a.service.updater.tick()
        assert a.service.current_variant == variant_of(fleet.ctl, a, fleet.v2).variant_id
        trusted = json.loads((data_dir / "tuf" / "root.json").read_text())
        assert trusted["signed"]["version"] == old_root.version + 1  # walked 1 -> 2
    finally:
        a.close()


def test_device_without_a_pinned_root_refuses_updates(fleet: Fleet, pristine: None) -> None:
    fleet.devices += 1
    data_dir, a = _enrolled(fleet, f"nopin-{fleet.devices:02d}")
    try:
        (data_dir / "tuf" / "root.json").unlink()
        assign(fleet.ctl, a, fleet.v2)
        a.pull_and_handle()
        assert a.service.current_variant is None and a.swaps == []
        phase, reason = reported(fleet.ctl, a)
        assert phase == "failed" and "no TUF root pinned at enrollment" in reason, reason
        assert not (data_dir / "tuf" / "root.json").exists()  # nothing taken on first use
    finally:
        a.close()


# -- 4. file names that collide with the slot store ----------------------------------------------
@pytest.mark.parametrize("name", ["manifest.json", "target.json", "variant.json", "m.onnx.tmp"])
def test_controller_refuses_to_sign_a_reserved_file_name(fleet: Fleet, name: str) -> None:
    releases = fleet.ctl.model_parts.releases
    path, t = next(iter(releases.targets().items()))
    custom = {**decode_custom(t.unrecognized_fields["custom"]), "file": name}
    ref = type("Ref", (), {"sha256": t.hashes["sha256"], "size": t.length})()
    with pytest.raises(InvalidTarget, match="reserved"):
        releases.repo.add_target(path.rsplit("/", 1)[0] + f"/{name}", ref, custom)
    with pytest.raises(InvalidTarget, match="reserved"):
        releases.repo.add_target(path, ref, custom)  # the path's name is fine, the file not
    assert releases.targets()[path] == t


def test_agent_refuses_a_signed_reserved_file_name(fleet: Fleet, agent: Agent) -> None:
    """Signed anyway (an older or compromised controller): refused and reported, not stuck."""
    v = variant_of(fleet.ctl, agent, fleet.v2)
    custom = {**signed_custom(fleet, v.target_path), "file": "manifest.json"}
    path = v.target_path.rsplit("/", 1)[0] + "/manifest.json"
    repo = fleet.ctl.model_parts.releases.repo
    repo._staged_targets()[path] = TargetFile(  # past add_target's name check
        int(v.size), {"sha256": v.sha256}, path, {"custom": encode_custom(custom)}
    )
    repo.publish()
    target = {"path": path, "length": int(v.size), "hashes": {"sha256": v.sha256},
              "custom": variant_fields(custom)}  # fmt: skip
    assign(fleet.ctl, agent, fleet.v2, target_path=path, target=target)
    agent.pull_and_handle()
    assert_refused(fleet, agent, "reserved")
    assert agent.service.updater.state.phase not in m.BUSY


# -- 6. the artifact is hashed once, while it streams ---------------------------------------------
class CountingSha256:
    """hashlib.sha256 that remembers every digest it produced."""

    digests: ClassVar[list[str]] = []

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashlib.sha256(data)
        self._done = False

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        digest = self._h.hexdigest()
        if not self._done:
            self._done = True
            CountingSha256.digests.append(digest)
        return digest


def test_artifact_is_hashed_once_while_streaming(
    fleet: Fleet, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = SimpleNamespace(sha256=CountingSha256)
    for module in (ota_slots, ota_updater, ota_verify, updates_stream):
        monkeypatch.setattr(module, "hashlib", counting, raising=False)
    CountingSha256.digests = []
    v = variant_of(fleet.ctl, agent, fleet.v2)
    assign(fleet.ctl, agent, fleet.v2)
    agent.pull_and_handle()
    commit(agent)
    assert agent.service.current_variant == v.variant_id
    assert CountingSha256.digests.count(v.sha256) == 1, CountingSha256.digests.count(v.sha256)


# -- 5. a failed resume is retried ---------------------------------------------------------------
class ResumeFailingProxy(updates_pb2_grpc.UpdateServiceServicer):
    """A real UpdateService in front of the controller's: re-chunks artifacts into 1 KiB
    pieces, breaks the first download after 3 of them and fails the first resume."""

    def __init__(self, upstream: grpc.Channel) -> None:
        self._up = updates_pb2_grpc.UpdateServiceStub(upstream)
        self.offsets: list[int] = []
        self._lock = threading.Lock()

    def GetMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return self._up.GetMetadata(request, timeout=10)
        except grpc.RpcError as exc:  # NOT_FOUND ends python-tuf's walk to newer roots
            context.abort(exc.code(), exc.details())

    def DownloadArtifact(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._lock:
            self.offsets.append(request.offset)
            first, resumes = len(self.offsets) == 1, [o for o in self.offsets if o > 0]
        if request.offset > 0 and len(resumes) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "resume failed")
        sent = 0
        for chunk in self._up.DownloadArtifact(request, timeout=10):
            for start in range(0, len(chunk.data), 1024):
                if first and sent == 3:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")
                piece = chunk.data[start : start + 1024]
                yield updates_pb2.ArtifactChunk(
                    data=piece, offset=chunk.offset + start, total_size=chunk.total_size
                )
                sent += 1


def test_failed_resume_is_retried_with_backoff(fleet: Fleet, agent: Agent) -> None:
    data_dir = fleet.root / "agents" / _name_of(fleet)
    upstream = device_channel(
        Identity.load(data_dir).controller, Credentials.load(data_dir), 8 << 20
    )
    proxy = ResumeFailingProxy(upstream)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    updates_pb2_grpc.add_UpdateServiceServicer_to_server(proxy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        source = UpdateServiceSource(channel, timeout_s=10, attempts=1)  # the machine retries
        verifier = TufVerifier(agent.service.store.root.parent / "tuf", source.transport,
                               agent.profile)  # fmt: skip
        service = OtaService(
            SlotStore(agent.service.store.root),
            desired=agent.desired,
            chunks=source.chunks,
            verifier=verifier,
            smoke_test=onnx_smoke_test(frames=1),
            config=OtaConfig(  # one retry per round: the failed resume ends the first round
                update=m.UpdateConfig(
                    max_retries=1, backoff_base=0.05, round_backoff_s=0.2, probation_seconds=0.0
                )
            ),
        )
        service.recover()
        v2 = variant_of(fleet.ctl, agent, fleet.v2)
        assert int(v2.size) > 4 * 1024, "the artifact must outlast the broken stream"
        assign(fleet.ctl, agent, fleet.v2)
        d = agent.desired.get(service.current_variant)
        assert d is not None
        service.handle(d)
        gave_up = service.updater.state
        assert gave_up.phase == "failed" and gave_up.retry_at is not None, gave_up
        assert "at byte 3072" in gave_up.reason and "UNAVAILABLE" in gave_up.reason
        assert "download round 2 of 4 in 0 s" in gave_up.reason
        # The controller hears it is still downloading: a later round may yet succeed.
        assert reported(fleet.ctl, agent)[0] == "downloading"
        assert wait_until(lambda: ticked(service) == "probation", timeout_s=10)
        service.tick()  # zero-second probation: commit
        assert service.current_variant == v2.variant_id, service.reports
        assert reported(fleet.ctl, agent)[0] == "committed"
        # broke at 3 KiB, the resume there failed (round 1 gave up), round 2 resumed there
        assert proxy.offsets == [0, 3 * 1024, 3 * 1024], proxy.offsets
    finally:
        channel.close()
        server.stop(None)
        upstream.close()


def ticked(service: OtaService) -> str:
    service.tick()
    return service.updater.state.phase


def _name_of(fleet: Fleet) -> str:
    return f"refuse-{fleet.devices:02d}"

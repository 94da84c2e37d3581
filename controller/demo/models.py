"""Story 2: one source model becomes a measured, selected and signed variant per profile.

On the Fashion-MNIST workload (examples/fashion): the edge student is built into every
variant (LiteRT ones too, when the controller has the TensorFlow toolchain), measured and
selected per hardware profile; the EfficientNet-Lite0 teacher is registered as its cloud model.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.demo.context import FASHION, DemoFailed, DemoRun
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata

if TYPE_CHECKING:
    from edgefleet.updates import TrustedUpdater

# Timed runs per variant and thread count (the build's default is 25): the student answers in
# tens of microseconds, so even the whole build, LiteRT included, takes seconds.
BUILD_RUNS = "30"


def story(demo: DemoRun) -> None:
    w = FASHION
    w.require(w.edge_onnx, w.edge_preprocess, w.cloud_onnx, w.cloud_preprocess, w.labels,
              w.validation, w.calibration)  # fmt: skip
    demo.step(f"add the {w.name} edge student and its cloud teacher (EfficientNet-Lite0)")
    out = demo.edgefleet(
        "model", "add", w.edge_model, "--onnx", str(w.edge_onnx),
        "--validation", str(w.validation), "--calibration", str(w.calibration),
        "--labels", str(w.labels), "--preprocess", str(w.edge_preprocess),
    )  # fmt: skip
    ref = out.strip().splitlines()[-1].split()[-1]
    demo.say(f"added {ref}")
    out = demo.edgefleet(
        "model", "add", w.cloud_model, "--onnx", str(w.cloud_onnx),
        "--validation", str(w.validation), "--labels", str(w.labels),
        "--preprocess", str(w.cloud_preprocess), "--cloud-for", w.edge_model,
    )  # fmt: skip
    cloud_ref = out.strip().splitlines()[-1].split()[-1]
    demo.say(f"added {cloud_ref} (answers the frames {w.edge_model} devices offload)")
    demo.say(demo.edgefleet("model", "list").rstrip())

    demo.step(
        f"build every variant of {ref} (ONNX Runtime, and LiteRT through onnx2tf), measure "
        "each, select one per hardware profile, sign"
    )
    args = ["model", "build", ref, "--profiles", "all", "--runs", BUILD_RUNS]
    demo.say(f"$ edgefleet {' '.join(args)}")
    demo.say(demo.edgefleet(*args).strip()[-2000:])
    report = demo.edgefleet_json("model", "variants", ref)
    litert = [v for v in report["variants"] if v["runtime"] == "litert"]
    built = [v["variant"] for v in litert if v["status"] == "built"]
    if built:
        demo.say(f"LiteRT variants built: {', '.join(built)}")
    else:
        reasons = sorted({v.get("reason") or v["status"] for v in litert}) or ["none reported"]
        demo.say(f"LiteRT variants NOT built: {'; '.join(reasons)}")

    demo.step(f"{ref}: every variant's figures, the selection per profile and why others lost")
    demo.say(demo.edgefleet("model", "variants", ref).rstrip())
    chosen = {profile: s["variant"] for profile, s in report["selections"].items()}
    if not chosen or not any(chosen.values()):
        raise DemoFailed("the build selected no variant for any profile")

    device = next(iter(demo.agent_dirs))
    profile = demo.edgefleet_json("device", "show", device)["profile"]
    demo.step(f"{device} benchmarks its candidates on the device and reports them")
    bench = subprocess.run(
        demo.agent_cmd("bench", "--data-dir", str(demo.agent_dirs[device])),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if bench.returncode != 0:
        raise DemoFailed(f"edgefleet-agent bench failed: {bench.stderr.strip()}")
    demo.say(bench.stdout.strip())
    after = demo.edgefleet_json("model", "variants", ref)["selections"]
    changes = selection_changes(report["selections"], after)
    if changes:
        demo.say(f"{device}'s measurements ({profile}) changed these selections of {ref}:")
        for line in changes:
            demo.say(f"  {line}")
    else:
        demo.say(f"{device}'s measurements ({profile}) left every selection of {ref} as it was")

    demo.step("the signed metadata verifies with python-tuf; one flipped byte does not")
    _verify_and_tamper(demo, profile, ref)


def _selection_text(sel: dict[str, Any] | None) -> str:
    if not sel or not sel.get("variant"):
        return "(nothing fits)"
    return f"{sel['variant']} ({sel['latency_ms']:.4g} ms, {sel['latency_source']})"


def selection_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``profile: old -> new`` for each profile whose selected variant differs between two
    ``model variants --format json`` selections."""
    changes = []
    for profile in sorted(set(before) | set(after)):
        old, new = before.get(profile), after.get(profile)
        if (old or {}).get("variant") != (new or {}).get("variant"):
            changes.append(f"{profile}: {_selection_text(old)} -> {_selection_text(new)}")
    return changes


def signed_updater(demo: DemoRun, metadata_dir: Path) -> TrustedUpdater:
    """A python-tuf updater (edgefleet.updates) reading the same signed metadata files and
    artifacts the device API serves, straight from the controller's release store."""
    from edgefleet.updates import TrustedUpdater

    parts = demo.controller.model_parts

    def transport(path: str) -> bytes:
        kind, _, rest = path.partition("/")
        if kind == "metadata":
            return parts.releases.metadata_file(rest)  # NotFound for a root not made yet
        digest = rest.rsplit("/", 1)[-1].split(".", 1)[0]  # targets/<dir>/<sha256>.<file>
        with parts.store.open(digest) as artifact:
            return artifact.read()

    updater = TrustedUpdater(
        metadata_dir, transport, bootstrap_root=parts.releases.metadata_file("1.root.json")
    )
    updater.refresh()
    return updater


_META_FIELDS = {f.name for f in dataclasses.fields(VariantMetadata)}


def fetch_selected(
    demo: DemoRun, updater: TrustedUpdater, ref: str, profile: str, dest: Path
) -> VariantMetadata:
    """Write the variant the controller selected for ``profile`` into ``dest`` as a device
    would install it: the artifact verified against the signed targets metadata, and
    ``variant.json`` from the signed target's custom fields (what `edgefleet-agent run
    --model DIR` loads)."""
    name, version = ref.split(":")
    selected = demo.controller.models.selected_variant(name, int(version), profile)
    if selected is None:
        raise DemoFailed(f"no variant of {ref} was selected for {profile}")
    target = updater.get_target(selected.target_path, profile, variant_id=selected.variant_id)
    metadata = VariantMetadata.from_dict(
        {k: v for k, v in target.custom.items() if k in _META_FIELDS}
    )
    dest.mkdir(parents=True, exist_ok=True)
    updater.download_target(target, dest / metadata.file)
    (dest / METADATA_FILE).write_text(metadata.to_json())
    return metadata


def _verify_and_tamper(demo: DemoRun, profile: str, ref: str) -> None:
    """Check a selected variant the way a device does, with python-tuf (edgefleet.updates),
    reading the same signed files and artifacts the device API serves."""
    from edgefleet.updates import ArtifactMismatch, verify_artifact_stream

    name, version = ref.split(":")
    selected = demo.controller.models.selected_variant(name, int(version), profile)
    if selected is None:
        raise DemoFailed(f"no variant was selected for {profile}")
    updater = signed_updater(demo, demo.root / "tuf-check")
    target = updater.get_target(selected.target_path, profile)
    dest = updater.download_target(target, demo.root / "verified.bin")
    demo.say(
        f"{selected.variant_id} for {profile}: {target.length} bytes, "
        f"sha256 {target.sha256[:16]}... verified against the signed targets metadata"
    )
    flipped = bytearray(dest.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    try:
        verify_artifact_stream([bytes(flipped)], target.length, target.sha256)
    except ArtifactMismatch as exc:
        demo.say(f"after flipping one byte: refused ({str(exc)[:100]}...)")
    else:
        raise DemoFailed("a tampered artifact passed verification")

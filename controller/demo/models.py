"""Story 2: one source model becomes a measured, selected and signed variant per profile.

On the Fashion-MNIST workload (examples/fashion): the edge student is built into every
variant (LiteRT ones too, when the controller has the TensorFlow toolchain), measured and
selected per hardware profile; the EfficientNet-Lite0 teacher is registered as its cloud model.
"""

from __future__ import annotations

import subprocess

from controller.demo.context import FASHION, DemoFailed, DemoRun

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

    demo.step("the signed metadata verifies with python-tuf; one flipped byte does not")
    _verify_and_tamper(demo, device, ref)


def _verify_and_tamper(demo: DemoRun, device: str, ref: str) -> None:
    """Check a selected variant the way a device does, with python-tuf (edgefleet.updates),
    reading the same signed files and artifacts the device API serves."""
    from edgefleet.updates import ArtifactMismatch, TrustedUpdater, verify_artifact_stream

    parts = demo.controller.model_parts
    profile = demo.edgefleet_json("device", "show", device)["profile"]
    name, version = ref.split(":")
    selected = demo.controller.models.selected_variant(name, int(version), profile)
    if selected is None:
        raise DemoFailed(f"no variant was selected for {profile}")

    def transport(path: str) -> bytes:
        kind, _, rest = path.partition("/")
        if kind == "metadata":
            return parts.releases.metadata_file(rest)  # NotFound for a root not made yet
        digest = rest.rsplit("/", 1)[-1].split(".", 1)[0]  # targets/<dir>/<sha256>.<file>
        with parts.store.open(digest) as artifact:
            return artifact.read()

    updater = TrustedUpdater(
        demo.root / "tuf-check",
        transport,
        bootstrap_root=parts.releases.metadata_file("1.root.json"),
    )
    updater.refresh()
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

"""The agent's OpenVINO backend on the real edge models: same logits as ONNX Runtime, bad input
refused with a RuntimeFailure; an openvino variant goes through the agent's loading path (the
active model and the OTA smoke test); the agent reports the runtime and the profiles use it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.hardware import detect
from agent.inference.active import ActiveModel
from agent.ota.component import onnx_smoke_test
from agent.ota.errors import SmokeTestFailed
from agent.pack import pack_model
from agent.runtime import OnnxRuntimeBackend, OpenVinoBackend, RuntimeFailure, load_variant
from edgefleet.errors import InvalidInput
from edgefleet.hardware import HardwareFacts
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata
from edgefleet.profiles import ProfileCatalogue

pytest.importorskip("openvino")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS = [  # model, its preprocessing
    (EXAMPLES / "digits" / "edge.onnx", EXAMPLES / "digits" / "preprocess.json"),
    (EXAMPLES / "fashion" / "edge.onnx", EXAMPLES / "fashion" / "edge_preprocess.json"),
]


def _openvino_variant(tmp_path: Path, onnx_file: Path, preprocess: Path) -> Path:
    """The model packed as the agent receives it, its metadata naming the openvino runtime."""
    directory = tmp_path / "variant"
    meta = pack_model(onnx_file, preprocess, directory, name="edge")
    meta = dataclasses.replace(
        meta, variant="openvino-fp32", variant_id="edge:1:openvino-fp32", runtime="openvino"
    )
    (directory / METADATA_FILE).write_text(meta.to_json())
    return directory


def _inputs(onnx_file: Path, n: int) -> np.ndarray:
    shape = OpenVinoBackend(onnx_file, "input", "logits").input_shape
    return np.random.default_rng(0).standard_normal((n, *shape[1:])).astype(np.float32)


@pytest.mark.parametrize(("onnx_file", "preprocess"), MODELS, ids=["digits", "fashion"])
@pytest.mark.parametrize("threads", [1, 2])
def test_logits_match_onnx_runtime(onnx_file: Path, preprocess: Path, threads: int) -> None:
    del preprocess
    openvino = OpenVinoBackend(onnx_file, "input", "logits", threads)
    ort = OnnxRuntimeBackend(onnx_file, "input", "logits", threads)
    x = _inputs(onnx_file, 8)
    batch = openvino.run(x)  # a batch runs frame by frame on the batch-1 compiled model
    assert batch.shape == (8, 10) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, ort.run(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(openvino.run(x[:1]), batch[:1])


def test_bf16_variants_compile_in_bf16_and_agree() -> None:
    onnx_file = MODELS[1][0]
    bf16 = OpenVinoBackend(onnx_file, "input", "logits", 1, precision="bf16")
    fp32 = OpenVinoBackend(onnx_file, "input", "logits", 1)
    assert str(fp32.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    with np.load(EXAMPLES / "fashion" / "validation.npz") as data:
        frames = data["x"][:200]
    x = ((frames.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None]
    a, b = bf16.run(x), fp32.run(x)
    assert float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) >= 0.98
    np.testing.assert_allclose(a, b, atol=0.25)  # bf16 keeps 8 bits of mantissa


def test_bad_input_is_refused() -> None:
    onnx_file = MODELS[1][0]
    backend = OpenVinoBackend(onnx_file, "input", "logits", 1)
    x = _inputs(onnx_file, 1)
    for bad, why in [
        (x[:, :, :27], "does not fit"),
        (x[0], "does not fit"),
        (x.astype(np.float64), "float32"),
        (x[:0], "empty batch"),
    ]:
        with pytest.raises(RuntimeFailure, match=why):
            backend.run(bad)
    with pytest.raises(RuntimeFailure, match="no input 'pixels'"):
        OpenVinoBackend(onnx_file, "pixels", "logits")
    with pytest.raises(RuntimeFailure, match="no output 'probs'"):
        OpenVinoBackend(onnx_file, "input", "probs")
    with pytest.raises(RuntimeFailure, match="OpenVINO"):
        OpenVinoBackend(EXAMPLES / "fashion" / "labels.txt", "input", "logits")


def test_missing_openvino_is_a_runtime_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _openvino_variant(tmp_path, *MODELS[0])
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(RuntimeFailure, match=r"OpenVINO is not installed.*edgefleet\[openvino\]"):
        OpenVinoBackend(MODELS[0][0], "input", "logits")
    # A device without it refuses such a variant in the OTA smoke test (and keeps its model).
    with pytest.raises(SmokeTestFailed, match="OpenVINO is not installed"):
        onnx_smoke_test(frames=1)(directory)


def test_agent_loads_and_smoke_tests_an_openvino_variant(tmp_path: Path) -> None:
    onnx_file, preprocess = MODELS[1]
    directory = _openvino_variant(tmp_path, onnx_file, preprocess)
    active = ActiveModel(threads=2)
    assert active.load(directory) == "edge:1:openvino-fp32"
    model = active.current()
    assert isinstance(model.backend, OpenVinoBackend) and model.bound is None
    with np.load(EXAMPLES / "fashion" / "validation.npz") as data:
        frames, labels = data["x"][:100], data["y"][:100]
    ort_dir = tmp_path / "ort"
    pack_model(onnx_file, preprocess, ort_dir, name="edge")
    ort_model = load_variant(ort_dir, threads=1)
    assert VariantMetadata.from_json((ort_dir / METADATA_FILE).read_text()).runtime == "onnxruntime"
    on_openvino = np.array([model.infer_frame(f) for f in frames])
    on_ort = np.array([ort_model.infer_frame(f) for f in frames])
    np.testing.assert_allclose(on_openvino, on_ort, rtol=1e-4, atol=1e-4)
    assert float(np.mean(on_openvino.argmax(axis=1) == labels)) >= 0.8
    onnx_smoke_test(frames=3, threads=1)(directory)  # the OTA smoke test: raises on failure
    assert model.backend.inference_precision == "f32"
    meta = dataclasses.replace(model.metadata, variant="openvino-bf16", precision="bf16")
    (directory / METADATA_FILE).write_text(meta.to_json())
    bf16 = load_variant(directory, threads=1).backend
    assert isinstance(bf16, OpenVinoBackend) and bf16.inference_precision == "bf16"


def test_agent_reports_openvino_and_resolves_to_an_openvino_profile() -> None:
    facts = detect()
    assert "openvino" in facts.runtimes
    catalogue = ProfileCatalogue.load()
    profile = catalogue.resolve(facts)
    if facts.arch == "x86_64" and facts.has_flag("avx2"):
        assert profile.name.endswith("-openvino") and "openvino" in profile.runtimes
    without = dataclasses.replace(facts, runtimes=("onnxruntime", "litert"))
    assert "openvino" not in catalogue.resolve(without).runtimes


@pytest.mark.parametrize(
    ("flags", "runtimes", "expected"),
    [
        (("avx2", "avx512_vnni"), ("onnxruntime", "openvino"), "x86-64-vnni-openvino"),
        (("avx2", "avx512_vnni", "avx512_bf16"), ("openvino",), "x86-64-bf16-openvino"),
        (("avx2", "avx512_vnni", "avx512_bf16"), ("onnxruntime",), "x86-64-vnni"),
        (("avx2", "avx512_vnni"), ("onnxruntime",), "x86-64-vnni"),
        (("avx2",), ("onnxruntime", "openvino"), "x86-64-avx2-openvino"),
        (("avx2",), ("onnxruntime",), "x86-64-avx2"),
        (("avx2", "avx_vnni"), (), "x86-64-vnni"),  # runtimes not reported: no OpenVINO
    ],
)
def test_only_devices_with_openvino_resolve_to_its_profiles(
    flags: tuple[str, ...], runtimes: tuple[str, ...], expected: str
) -> None:
    facts = HardwareFacts(arch="x86_64", cpu_flags=flags, runtimes=runtimes)
    assert ProfileCatalogue.load().resolve(facts).name == expected


def test_profile_toml_accepts_openvino(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[profiles.nuc]\narch = "x86_64"\nrequires_flags = ["avx2"]\n'
        'requires_runtimes = ["openvino"]\nruntimes = ["openvino", "onnxruntime"]\n'
        'precisions = ["fp32", "int8"]\nthreads = 4\n'
    )
    profile = ProfileCatalogue.load(path).get("nuc")
    assert profile.requires_runtimes == ("openvino",) and "openvino" in profile.runtimes
    path.write_text('[profiles.x]\nrequires_runtimes = ["openvino"]\nruntimes = ["onnxruntime"]\n')
    with pytest.raises(InvalidInput, match="requires_runtimes"):
        ProfileCatalogue.load(path)

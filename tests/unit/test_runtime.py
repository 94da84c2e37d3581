from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent.runtime import (
    ArraySource,
    BadFrame,
    FrameSkipper,
    FrameSourceError,
    ImageDirectorySource,
    ModelHolder,
    Preprocessor,
    RuntimeFailure,
    choose_providers,
    load_variant,
    open_source,
)
from agent.runtime.model import LoadedModel
from edgefleet.modelmeta import InputQuantization, Preprocessing
from tests.unit.test_runtime_models import (
    PREPROCESSING,
    SIDE,
    constant_weights,
    frames,
    random_weights,
    write_variant,
)

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


def test_loads_variant_and_matches_numpy_reference(tmp_path: Path) -> None:
    weights, bias = random_weights(0)
    model = load_variant(write_variant(tmp_path / "v", (weights, bias)), threads=1)
    assert model.variant_id == "tiny:1:onnx-fp32"
    assert model.backend.name == "onnxruntime"
    frame = frames(1)[0]
    x = (frame.astype(np.float32) / 255.0 - 0.5) / 0.5
    expected = x.reshape(-1) @ weights + bias
    np.testing.assert_allclose(model.infer_frame(frame), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not (DIGITS / "edge.onnx").exists(), reason="digits model not committed yet")
def test_runs_the_digits_edge_model(tmp_path: Path) -> None:
    import json
    import shutil

    raw = json.loads((DIGITS / "preprocess.json").read_text())
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    pre = Preprocessing(**fields)
    variant = tmp_path / "digits"
    variant.mkdir()
    shutil.copy(DIGITS / "edge.onnx", variant / "edge.onnx")
    write_variant(
        variant, random_weights(0), file="edge.onnx", preprocessing=pre, input_shape=(-1, 1, 32, 32)
    )
    model = load_variant(variant, threads=1)
    with np.load(DIGITS / "validation.npz") as data:
        x, y = data["x"][:50], data["y"][:50]
    predicted = np.array([int(np.argmax(model.infer_frame(f))) for f in x])
    assert (predicted == y).mean() > 0.8


def test_provider_choice_follows_preference_and_allowed_list() -> None:
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider"]
    assert choose_providers(available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(available, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeFailure):
        choose_providers(available, ["TensorrtExecutionProvider"])


def test_missing_or_malformed_variant_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match=r"variant\.json"):
        load_variant(tmp_path)
    (tmp_path / "variant.json").write_text("{}")
    with pytest.raises(RuntimeFailure, match="malformed"):
        load_variant(tmp_path)


def test_preprocessing_layouts_and_resize() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 51
    base = dict(size=(4, 6), channels=3, scale=1 / 255, mean=(0.0, 0.0, 0.2), std=(1.0, 1.0, 0.5))
    nchw = Preprocessor(Preprocessing(**base, layout="NCHW"))(rgb)  # type: ignore[arg-type]
    nhwc = Preprocessor(Preprocessing(**base, layout="NHWC"))(rgb)  # type: ignore[arg-type]
    assert nchw.shape == (1, 3, 4, 6) and nhwc.shape == (1, 4, 6, 3)
    np.testing.assert_allclose(nchw[0, :, 0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(nhwc[0].transpose(2, 0, 1), nchw[0])
    resized = Preprocessor(PREPROCESSING)(np.full((20, 30), 255, np.uint8))
    assert resized.shape == (1, 1, SIDE, SIDE)
    np.testing.assert_allclose(resized, 1.0, atol=1e-5)


def test_int8_input_quantization_and_output_dequantization() -> None:
    q = InputQuantization(scale=1 / 127, zero_point=-1, dtype="int8")
    pre = Preprocessor(Preprocessing(size=(2, 2), channels=1), "int8", q)
    out = pre(np.array([[0, 255], [127, 64]], np.uint8))
    assert out.dtype == np.int8
    expected = np.clip(np.rint(np.array([0, 1, 127 / 255, 64 / 255]) * 127) - 1, -128, 127)
    np.testing.assert_array_equal(out.reshape(-1), expected)
    with pytest.raises(BadFrame):
        Preprocessor(Preprocessing(size=(2, 2)), "int8", None)

    class IntBackend:
        name = "fake"

        def run(self, tensor: np.ndarray) -> np.ndarray:
            return np.array([[10, -5]], np.int8)

    from agent.runtime.model import load_variant as _  # noqa: F401  (module import check)
    from edgefleet.modelmeta import VariantMetadata

    meta = VariantMetadata(
        model="m", version=1, variant="litert-int8", variant_id="m:1:litert-int8",
        runtime="litert", precision="int8", file="m.tflite", input_name="x",
        input_shape=(1, 2, 2, 1), input_dtype="int8", output_name="y",
        preprocessing=Preprocessing(size=(2, 2), channels=1, layout="NHWC"),
        input_quantization=q, output_quantization=InputQuantization(0.5, 2),
    )  # fmt: skip
    model = LoadedModel(meta, IntBackend(), pre)
    np.testing.assert_allclose(model.run(out), [[4.0, -3.5]])


def test_bad_frames_raise_bad_frame() -> None:
    pre = Preprocessor(PREPROCESSING)
    for bad in (np.zeros((2, 3, 4, 5), np.uint8), np.zeros((8, 8), np.int32), [[1, 2]]):
        with pytest.raises(BadFrame):
            pre(bad)  # type: ignore[arg-type]


def test_image_directory_skips_and_counts_corrupt_files(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "c.jpg")
    source = ImageDirectorySource(tmp_path)
    got = list(source)
    assert [name for name, _ in got] == ["a.png", "c.jpg"]
    assert got[0][1].shape == (8, 8) and got[1][1].shape == (8, 8, 3)
    assert source.corrupt == 1
    assert isinstance(open_source(tmp_path), ImageDirectorySource)


def test_array_sources_and_video_needs_opencv(tmp_path: Path) -> None:
    x = frames(3)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(3))
    np.save(tmp_path / "f.npy", x)
    for name in ("f.npz", "f.npy"):
        got = list(open_source(tmp_path / name))
        assert [i for i, _ in got] == ["f:0", "f:1", "f:2"]
        np.testing.assert_array_equal(got[2][1], x[2])
    assert isinstance(open_source(tmp_path / "f.npz"), ArraySource)
    try:
        import cv2  # noqa: F401
    except ImportError:
        with pytest.raises(FrameSourceError, match="OpenCV"):
            open_source("camera:0")
    with pytest.raises(FrameSourceError):
        open_source(tmp_path / "missing.npz")


def test_frame_skipper_skips_near_duplicates_of_the_last_processed_frame() -> None:
    skipper = FrameSkipper(threshold=2.0)
    base = np.full((8, 8), 100, np.uint8)
    assert not skipper.should_skip(base)
    assert skipper.should_skip(base + 1)  # diff 1 < 2
    assert skipper.should_skip(base + 1)  # still compared with `base`
    assert not skipper.should_skip(base + 5)
    assert skipper.should_skip(base + 6)  # now compared with base + 5
    assert skipper.skipped == 3
    never = FrameSkipper(0)
    assert not never.should_skip(base) and not never.should_skip(base)


def test_model_holder_swaps_without_dropping_frames(tmp_path: Path) -> None:
    a = load_variant(write_variant(tmp_path / "a", constant_weights(1)), threads=1)
    b = load_variant(
        write_variant(tmp_path / "b", constant_weights(2), variant_id="tiny:2:onnx-fp32"),
        threads=1,
    )
    holder = ModelHolder(a)
    answers: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        frame = frames(1)[0]
        try:
            while not stop.is_set():
                answers.append(int(np.argmax(holder.current().infer_frame(frame))))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=loop)
    worker.start()
    while len(answers) < 20:
        time.sleep(0.001)
    previous = holder.swap(b)
    count_at_swap = len(answers)
    while len(answers) < count_at_swap + 20:
        time.sleep(0.001)
    stop.set()
    worker.join()
    assert previous is a and holder.current() is b and not errors
    assert set(answers) == {1, 2}
    first_two = answers.index(2)
    assert all(v == 1 for v in answers[:first_two]) and all(v == 2 for v in answers[first_two:])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_uint8_fast_path_matches_the_float_path(layout: str) -> None:
    pre = Preprocessor(
        Preprocessing(
            size=(5, 7), channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), layout=layout
        )
    )
    frame = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    fast, generic = pre(frame), pre(frame.astype(np.float32))
    assert fast.shape == generic.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, generic, rtol=1e-5, atol=1e-5)
    gray = Preprocessor(PREPROCESSING)
    plane = frames(1)[0]
    np.testing.assert_allclose(gray(plane), gray(plane.astype(np.float32)), atol=1e-5)

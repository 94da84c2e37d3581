"""The student catalogue (controller/training/catalogue.py): the baseline entry is exactly the
examples/fashion edge model's architecture, every entry builds and runs at its input size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

import torch

from controller.training.catalogue import BASELINE, CATALOGUE, architecture, catalogue_rows
from controller.training.data import Frames
from controller.training.distill import augmented, student_preprocessing
from controller.training.errors import UnknownArchitecture

FASHION = Path(__file__).resolve().parents[2] / "examples" / "fashion"


def _make_fashion() -> object:
    spec = importlib.util.spec_from_file_location("make_fashion", FASHION / "make_fashion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_baseline_entry_is_the_fashion_edge_model_layer_for_layer() -> None:
    reference = _make_fashion().student_model()  # type: ignore[attr-defined]
    built = architecture(BASELINE).build(channels=1, num_classes=10)
    assert sum(p.numel() for p in built.parameters()) == 32_378
    assert sum(p.numel() for p in reference.parameters()) == 32_378
    assert architecture(BASELINE).parameters(1, 10) == 32_378
    # same layers in the same order: the reference's weights load without a rename
    built.load_state_dict(reference.state_dict())
    x = torch.randn(3, 1, 28, 28)
    built.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(built(x), reference(x), atol=1e-6)
    # and the committed edge.onnx holds exactly that many weights
    graph = onnx.load(str(FASHION / "edge.onnx")).graph
    committed = sum(int(np.prod(t.dims)) for t in graph.initializer)
    bn_stats = sum(  # the exported graph folds batch norm into the convolutions
        int(m.num_features) for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert committed == 32_378 - bn_stats


def test_every_entry_builds_for_any_frame_size_channels_and_classes() -> None:
    for arch in CATALOGUE.values():
        for frame, channels, classes in (((28, 28), 1, 10), ((32, 48), 3, 5)):
            module = arch.build(channels, classes).eval()
            h, w = arch.input_size(frame)
            with torch.no_grad():
                out = module(torch.zeros(2, channels, h, w))
            assert out.shape == (2, classes)
            assert sum(p.numel() for p in module.parameters()) == arch.parameters(channels, classes)
    assert architecture("mobilenet-w1.0-r75").input_size((28, 28)) == (21, 21)
    assert architecture("mobilenet-w1.0-r50").input_size((28, 28)) == (14, 14)
    rows = catalogue_rows()
    assert [r["name"] for r in rows if r["baseline"]] == [BASELINE] and len(rows) == 9


def test_an_unknown_architecture_lists_the_known_ones() -> None:
    with pytest.raises(UnknownArchitecture, match=r"known: mobilenet-w0\.5, "):
        architecture("resnet-50")


def test_student_preprocessing_and_augmented_copies_keep_frames_and_labels_aligned() -> None:
    rng = np.random.default_rng(0)
    frames = Frames(rng.integers(0, 255, (40, 28, 28), dtype=np.uint8), np.arange(40) % 10)
    pre = student_preprocessing(architecture("mobilenet-w0.5-r50"), frames)
    assert pre.size == (14, 14) and pre.channels == 1 and pre.layout == "NCHW"
    assert frames.inputs(pre).shape == (40, 1, 14, 14)
    twice = augmented(frames, copies=2, seed=1)
    assert len(twice) == 120 and np.array_equal(twice.y, np.tile(frames.y, 3))
    assert np.array_equal(twice.x[:40], frames.x) and not np.array_equal(twice.x[40:80], frames.x)
    assert np.array_equal(augmented(frames, 2, seed=1).x, twice.x)  # seeded

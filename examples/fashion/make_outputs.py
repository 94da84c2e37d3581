"""Make outputs.npz: both models' logits on every split, so that tests and benchmarks of the
accuracy estimate resample real model answers without running the 13 MB teacher each time.

    .venv/bin/python examples/fashion/make_outputs.py      # about 20 s on a 2-core machine

Frames are preprocessed by the product's own code (``edgefleet.frames.frame_tensor`` with
each model's preprocess.json) and run with ONNX Runtime, batch 200. Keys, per split
(validation, test, test_corrupted, and test_inverted: test.npz's frames as 255 - x):
``{split}_edge`` and ``{split}_cloud`` float32 logits [N, 10], ``{split}_y`` the true classes.
``edge_temperature``: the edge model's softmax temperature fitted on validation
(``controller.optimize.evaluate.fit_temperature``, as a build does).
tests/integration/test_estimate_coverage.py checks a sample of them against the models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPLITS = ("validation", "test", "test_corrupted")
# test.npz with every frame inverted (255 - x: a dark garment on white): a new kind of input
# the edge student is confidently wrong on while the teacher mostly is not (the demo's drift)
INVERTED = "test_inverted"


def logits(model: str, frames: np.ndarray, batch: int = 200) -> np.ndarray:
    import onnxruntime as ort

    from edgefleet.frames import frame_tensor
    from edgefleet.modelmeta import Preprocessing

    pre = Preprocessing.from_dict(json.loads((HERE / f"{model}_preprocess.json").read_text()))
    session = ort.InferenceSession(str(HERE / f"{model}.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for i in range(0, len(frames), batch):
        x = np.concatenate([frame_tensor(f, pre) for f in frames[i : i + batch]])
        out.append(session.run(None, {name: x})[0])
    return np.concatenate(out).astype(np.float32)


def main() -> None:
    from controller.optimize.evaluate import fit_temperature

    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        with np.load(HERE / f"{split}.npz") as data:
            x, y = data["x"], data["y"]
        arrays[f"{split}_edge"] = logits("edge", x)
        arrays[f"{split}_cloud"] = logits("cloud", x)
        arrays[f"{split}_y"] = y.astype(np.int64)
    with np.load(HERE / "test.npz") as data:
        x, y = 255 - data["x"], data["y"]
    arrays[f"{INVERTED}_edge"] = logits("edge", x)
    arrays[f"{INVERTED}_cloud"] = logits("cloud", x)
    arrays[f"{INVERTED}_y"] = y.astype(np.int64)
    t = fit_temperature(arrays["validation_edge"].astype(np.float64), arrays["validation_y"])
    arrays["edge_temperature"] = np.array(t)
    np.savez_compressed(HERE / "outputs.npz", **arrays)
    for split in (*SPLITS, INVERTED):
        y = arrays[f"{split}_y"]
        edge = (arrays[f"{split}_edge"].argmax(1) == y).mean()
        cloud = (arrays[f"{split}_cloud"].argmax(1) == y).mean()
        print(f"{split}: edge {edge:.3f}, cloud {cloud:.3f}")
    print(f"edge temperature {t:.3f}")


if __name__ == "__main__":
    main()

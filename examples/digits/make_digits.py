"""Make the digits reference models and data (edge + cloud ONNX, calibration/validation/test).

Deterministic: every random draw comes from SEED. Needs torch (the ``train`` extra),
scikit-learn (its bundled copy of the UCI handwritten digits; nothing is downloaded), scipy,
onnx and onnxruntime. Run from the repository root:

    .venv/bin/python examples/digits/make_digits.py [--out examples/digits]

It prints the measured accuracies and the cascade check that later benchmarks rely on, and
exits non-zero when a quality target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
SIZE = 32
N_CALIBRATION = 200
N_VALIDATION = 300
N_TEST = 300
OFFLOAD_FRACTION = 0.25
OPSET = 17
EDGE_EPOCHS, EDGE_AUGMENT = 40, 0.3
CLOUD_EPOCHS, CLOUD_AUGMENT = 30, 1.0
HARD_FRACTION = 0.2  # share of test_corrupted frames that are badly degraded
PREPROCESSING = {
    "size": [SIZE, SIZE],
    "channels": 1,
    "scale": 1.0 / 255.0,
    "mean": [0.5],
    "std": [0.5],
    "layout": "NCHW",
}
# Quality targets (see README.md); the script fails when one is missed.
MIN_EDGE_CLEAN = 0.95
MIN_CLOUD_CORRUPTED = 0.95
MIN_CASCADE_RATIO = 0.99


# ---------------------------------------------------------------- data


def load_frames() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits (values 0..16) as bilinear-upsampled uint8 32x32 frames."""
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    frames = np.clip(np.rint(big.squeeze(1).numpy() * 255.0), 0, 255).astype(np.uint8)
    return frames, digits.target.astype(np.int64)


def split(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified, disjoint train / calibration / validation / test splits."""
    held = N_CALIBRATION + N_VALIDATION + N_TEST
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=held, stratify=y, random_state=SEED
    )
    x_cal, x_rest, y_cal, y_rest = train_test_split(
        x_rest, y_rest, train_size=N_CALIBRATION, stratify=y_rest, random_state=SEED
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=N_VALIDATION, stratify=y_rest, random_state=SEED
    )
    return {
        "train": (x_train, y_train),
        "calibration": (x_cal, y_cal),
        "validation": (x_val, y_val),
        "test": (x_test, y_test),
    }


def corrupt(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like corruption with graded severity. Most frames are mildly degraded (severity
    0..0.3: a small shift and sensor noise); HARD_FRACTION of them badly (severity 0.5..1:
    defocus blur, lost contrast, a lifted background, strong noise), as in poor light."""
    n_hard = round(HARD_FRACTION * len(frames))
    severities = rng.permutation(
        np.concatenate([np.linspace(0.0, 0.3, len(frames) - n_hard), np.linspace(0.5, 1.0, n_hard)])
    )
    out = np.empty_like(frames)
    for i, (frame, s) in enumerate(zip(frames, severities, strict=True)):
        img = frame.astype(np.float32)
        if s > 0.3:
            img = ndimage.gaussian_filter(img, sigma=0.4 + 1.4 * s)
        shift = rng.uniform(-1.0, 1.0, size=2) * (1.0 + 3.0 * s)
        img = ndimage.shift(img, shift, order=1, mode="constant", cval=0.0)
        contrast = 1.0 - 0.6 * s * rng.uniform(0.5, 1.0)
        background = 255.0 * 0.25 * s * rng.uniform(0.0, 1.0)
        img = background + contrast * img + rng.normal(0.0, 6.0 + 60.0 * s, size=img.shape)
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W frames -> normalized float N x 1 x H x W (preprocess.json)."""
    x = torch.as_tensor(frames, dtype=torch.float32).unsqueeze(1)
    scale = PREPROCESSING["scale"]
    mean = PREPROCESSING["mean"][0]  # type: ignore[index]
    std = PREPROCESSING["std"][0]  # type: ignore[index]
    return (x * scale - mean) / std  # type: ignore[operator]


def gaussian_kernels(sigmas: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """One normalized 2-D gaussian kernel per sigma: B x 1 x k x k."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    g = g / g.sum(dim=1, keepdim=True)
    return (g[:, :, None] * g[:, None, :]).unsqueeze(1)


def augment(pixels: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """Random affine jitter, blur, contrast loss and noise scaled by `strength` (0..1), in
    pixel units 0..255 on a B x 1 x H x W batch."""
    b = pixels.shape[0]
    angle = (torch.rand(b, generator=gen) - 0.5) * 0.4
    zoom = 1.0 + (torch.rand(b, generator=gen) - 0.5) * 0.2
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * 2 * (0.1 + 0.15 * strength)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    x = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if strength <= 0:
        return x
    s = strength * torch.rand(b, 1, 1, 1, generator=gen)
    kernels = gaussian_kernels(0.3 + 2.0 * strength * torch.rand(b, generator=gen))
    blurred = F.conv2d(x.transpose(0, 1), kernels, padding=3, groups=b).transpose(0, 1)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.6, blurred, x)
    contrast = 1.0 - 0.7 * s * torch.rand(b, 1, 1, 1, generator=gen)
    background = 255.0 * 0.3 * s * torch.rand(b, 1, 1, 1, generator=gen)
    noise = torch.randn(x.shape, generator=gen) * (80.0 * s)
    return (background + contrast * x + noise).clamp(0, 255)


# ---------------------------------------------------------------- models


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in), conv_bn(c_in, c_out, 1))


def edge_model() -> nn.Module:
    """Depthwise-separable CNN, ~5k parameters."""
    return nn.Sequential(
        conv_bn(1, 12, 3, stride=2),  # 16x16
        separable(12, 24, 1),
        separable(24, 32, 2),  # 8x8
        separable(32, 64, 2),  # 4x4
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def cloud_model() -> nn.Module:
    """Plain CNN, ~150k parameters."""
    return nn.Sequential(
        conv_bn(1, 32, 3, stride=2),  # 16x16
        conv_bn(32, 48, 3),
        conv_bn(48, 64, 3, stride=2),  # 8x8
        conv_bn(64, 96, 3),
        conv_bn(96, 128, 3, stride=2),  # 4x4
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(
    model: nn.Module, frames: np.ndarray, labels: np.ndarray, epochs: int, strength: float
) -> None:
    gen = torch.Generator().manual_seed(SEED)
    pixels = torch.as_tensor(frames, dtype=torch.float32).unsqueeze(1)
    targets = torch.as_tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 64
    steps = epochs * ((len(frames) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=6e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(frames), generator=gen)
        for start in range(0, len(frames), batch):
            idx = order[start : start + batch]
            x = augment(pixels[idx], gen, strength)
            x = (x / 255.0 - 0.5) / 0.5
            loss = F.cross_entropy(model(x), targets[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


# ---------------------------------------------------------------- export and evaluation


def export(model: nn.Module, path: Path) -> None:
    sample = to_input(np.zeros((2, SIZE, SIZE), np.uint8))
    # The TorchScript exporter, because the dynamo one writes opset 18 whatever is asked.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)))


def onnx_logits(path: Path, frames: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = session.run(["logits"], {"input": to_input(frames).numpy()})[0]
    return np.asarray(result)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def cascade_accuracy(edge: np.ndarray, cloud: np.ndarray, y: np.ndarray, fraction: float) -> float:
    """Accuracy when the `fraction` least-confident edge answers are replaced by the cloud's."""
    confidence = softmax(edge).max(axis=1)
    n_offload = round(fraction * len(y))
    offloaded = np.argsort(confidence, kind="stable")[:n_offload]
    answer = edge.argmax(axis=1)
    answer[offloaded] = cloud.argmax(axis=1)[offloaded]
    return float((answer == y).mean())


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    started = time.perf_counter()

    frames, labels = load_frames()
    parts = split(frames, labels)
    x_test, y_test = parts["test"]
    x_corrupt = corrupt(x_test, np.random.default_rng(SEED))
    for name, (x, y) in (
        ("calibration", parts["calibration"]),
        ("validation", parts["validation"]),
        ("test_corrupted", (x_corrupt, y_test)),
    ):
        np.savez_compressed(out / f"{name}.npz", x=x, y=y)
    (out / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    (out / "preprocess.json").write_text(json.dumps(PREPROCESSING) + "\n")

    x_train, y_train = parts["train"]
    x_val, y_val = parts["validation"]
    results: dict[str, dict[str, np.ndarray]] = {}
    for name, make_model, epochs, strength in (
        ("edge", edge_model, EDGE_EPOCHS, EDGE_AUGMENT),
        ("cloud", cloud_model, CLOUD_EPOCHS, CLOUD_AUGMENT),
    ):
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        model = make_model()
        train(model, x_train, y_train, epochs, strength)
        path = out / f"{name}.onnx"
        export(model, path)
        with torch.no_grad():
            expected = model(to_input(x_val)).numpy()
        got = onnx_logits(path, x_val)
        max_diff = float(np.abs(got - expected).max())
        if max_diff > 1e-3:
            print(f"{name}: onnxruntime differs from torch by {max_diff}", file=sys.stderr)
            return 1
        results[name] = {"clean": got, "corrupted": onnx_logits(path, x_corrupt)}
        print(
            f"{name}: {n_params(model)} params, trained in {time.perf_counter() - t0:.1f}s, "
            f"{path.stat().st_size} bytes, onnx-vs-torch max diff {max_diff:.1e}"
        )

    edge, cloud = results["edge"], results["cloud"]
    edge_clean = accuracy(edge["clean"], y_val)
    cloud_clean = accuracy(cloud["clean"], y_val)
    edge_corrupt = accuracy(edge["corrupted"], y_test)
    cloud_corrupt = accuracy(cloud["corrupted"], y_test)
    cascade = cascade_accuracy(edge["corrupted"], cloud["corrupted"], y_test, OFFLOAD_FRACTION)
    ratio = cascade / cloud_corrupt
    print(f"validation (clean):   edge {edge_clean:.4f}  cloud {cloud_clean:.4f}")
    print(f"test_corrupted:       edge {edge_corrupt:.4f}  cloud {cloud_corrupt:.4f}")
    print(
        f"cascade (offload {OFFLOAD_FRACTION:.0%} least-confident): {cascade:.4f} "
        f"= {ratio:.4f} of cloud-only"
    )
    print(
        f"total: {time.perf_counter() - started:.1f}s wall, "
        f"{time.process_time():.1f}s CPU (the wall time grows when the cores are shared)"
    )
    checks = {
        f"edge clean >= {MIN_EDGE_CLEAN}": edge_clean >= MIN_EDGE_CLEAN,
        f"cloud corrupted >= {MIN_CLOUD_CORRUPTED}": cloud_corrupt >= MIN_CLOUD_CORRUPTED,
        "edge worse than cloud on corrupted": edge_corrupt < cloud_corrupt,
        f"cascade >= {MIN_CASCADE_RATIO} of cloud-only": ratio >= MIN_CASCADE_RATIO,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        print(f"TARGET MISSED: {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

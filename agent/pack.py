"""`pack-model`: turn a plain ONNX classifier + preprocess.json (+ labels) into a variant
directory (model file + variant.json) that `edgefleet-agent run --model DIR` can load."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from agent.runtime.errors import RuntimeFailure
from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import METADATA_FILE, Preprocessing, VariantMetadata

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def read_preprocessing(path: Path) -> Preprocessing:
    try:
        return Preprocessing.from_file(path)
    except InvalidInput as exc:
        raise RuntimeFailure(str(exc)) from exc


def pack_model(
    onnx_file: Path,
    preprocess_file: Path,
    out: Path,
    labels_file: Path | None = None,
    name: str = "",
    version: int = 1,
    temperature: float = 1.0,
) -> VariantMetadata:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RuntimeFailure(f"cannot load {onnx_file}: {exc}") from exc
    inp, outp = session.get_inputs()[0], session.get_outputs()[0]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype is None:
        raise RuntimeFailure(f"unsupported model input type {inp.type}")
    labels: tuple[str, ...] = ()
    if labels_file is not None:
        labels = tuple(
            line.strip() for line in labels_file.read_text().splitlines() if line.strip()
        )
    name = name or onnx_file.resolve().parent.name
    data = onnx_file.read_bytes()
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_file, out / "model.onnx")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write the variant to {out}: {exc.strerror or exc}") from exc
    meta = VariantMetadata(
        model=name,
        version=version,
        variant="onnx-fp32",
        variant_id=f"{name}:{version}:onnx-fp32",
        runtime="onnxruntime",
        precision="fp32",
        file="model.onnx",
        input_name=inp.name,
        input_shape=tuple(d if isinstance(d, int) else -1 for d in inp.shape),
        input_dtype=dtype,
        output_name=outp.name,
        preprocessing=read_preprocessing(preprocess_file),
        labels=labels,
        temperature=temperature,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    try:
        (out / METADATA_FILE).write_text(meta.to_json())
    except OSError as exc:
        raise RuntimeFailure(f"cannot write the variant to {out}: {exc.strerror or exc}") from exc
    return meta

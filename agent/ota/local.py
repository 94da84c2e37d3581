"""Local stand-ins for the updater's collaborators: a file-backed fetcher, a hash-only
verifier and a target builder. Used by tests, the crash benchmark and offline demos; the
agent runtime plugs in the real TUF verifier and network fetcher instead."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.ota.machine import TargetInfo
from edgefleet.errors import VerificationError
from edgefleet.modelmeta import Preprocessing, VariantMetadata


def make_target(
    model_bytes: bytes,
    *,
    model: str = "demo",
    version: int = 1,
    variant: str = "onnx-fp32",
    file: str = "model.onnx",
    input_shape: tuple[int, ...] = (-1, 4),
) -> dict[str, Any]:
    """A desired-state target (TUF-style target info with variant metadata as custom)."""
    sha = hashlib.sha256(model_bytes).hexdigest()
    meta = VariantMetadata(
        model=model, version=version, variant=variant,
        variant_id=f"{model}:{version}:{variant}", runtime="onnxruntime", precision="fp32",
        file=file, input_name="x", input_shape=input_shape, input_dtype="float32",
        output_name="y", preprocessing=Preprocessing(size=(1, 1), channels=1),
        sha256=sha, size_bytes=len(model_bytes),
    )  # fmt: skip
    return {
        "path": f"{model}/{version}/{variant}/{file}",
        "length": len(model_bytes),
        "hashes": {"sha256": sha},
        "custom": meta.to_dict(),
    }


def file_fetcher(
    source_dir: Path, *, chunk_size: int = 64 * 1024, delay: float = 0.0
) -> Callable[[TargetInfo, int], Iterator[bytes]]:
    """Serve targets from ``source_dir/<target path>``, resuming at ``offset``."""

    def fetch_chunks(target: TargetInfo, offset: int) -> Iterator[bytes]:
        with (source_dir / target.path).open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(chunk_size):
                if delay:
                    time.sleep(delay)
                yield chunk

    return fetch_chunks


def hash_verifier(target_info: Mapping[str, Any], path: Path) -> None:
    """The stand-in for the TUF verifier (no signatures): the updater already checked length
    and sha256 once, while streaming; this only confirms the file on disk kept its length."""
    size = path.stat().st_size
    if size != target_info["length"]:
        raise VerificationError(f"length {size} != {target_info['length']}")

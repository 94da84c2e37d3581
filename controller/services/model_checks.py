"""Checks and operator hints of the model registry: preprocessing from JSON or the model's
input, upload errors naming the field instead of the server's temp file, and what to do with
a version that is not built yet or already built."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.services.model_views import CLOUD
from controller.store.models_models import ModelRow
from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import Preprocessing

_FIELDS = {
    "onnx": "the ONNX model",
    "validation": "validation data",
    "calibration": "calibration data",
}


def without_paths(message: str, files: dict[str, Path]) -> str:
    """A build error about uploaded files, naming the field instead of the server's temp file."""
    for key, path in files.items():
        message = message.replace(str(path), _FIELDS.get(key, key))
    return message


def preprocessing(text: str, input_shape: tuple[int, ...], layout: str) -> Preprocessing:
    """From the operator's JSON, else from the model's (static) input shape."""
    if text:
        try:
            return Preprocessing.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise InvalidInput(f"invalid preprocessing JSON: {exc}") from exc
    if layout == "NCHW":
        channels, size = input_shape[1], (input_shape[2], input_shape[3])
    else:
        size, channels = (input_shape[1], input_shape[2]), input_shape[3]
    if min(size) <= 0 or channels <= 0:
        raise InvalidInput("the model's input size is dynamic: pass --preprocess")
    return Preprocessing(size=size, channels=channels, layout=layout)


def preprocessing_dict(pre: Preprocessing) -> dict[str, Any]:
    data = asdict(pre)
    data["size"] = list(pre.size)
    data["mean"], data["std"] = list(pre.mean), list(pre.std)
    return data


def immutable_hint(row: ModelRow, next_version: int) -> str:
    ref = f"{row.name}:{row.version}"
    return (
        f"{ref} is already built and a built version never changes (a rollout of it always"
        f" installs the same files): register a new version with `edgefleet model add"
        f" {row.name} ...`, or build the same sources again as {row.name}:{next_version} with"
        f" `edgefleet model build {ref} --rebuild`"
    )


def unbuilt_hint(row: ModelRow) -> str:
    ref = f"{row.name}:{row.version}"
    if row.build_status == "running":
        return f"{ref} is being built: wait for `edgefleet model build {ref}` to finish"
    if row.build_status == "failed":
        return f"the last build of {ref} failed: run `edgefleet model build {ref}` again"
    if row.build_status == "succeeded":
        return f"no variant of {ref} could be built (`edgefleet model variants {ref}` says why)"
    if row.role == CLOUD:
        return (
            f"{ref} is the cloud model of {row.cloud_for}: the controller serves it for"
            f" offloaded frames without a build, but to roll it out to devices build its"
            f" variants first: `edgefleet model build {ref}`"
        )
    return f"{ref} is not built yet: run `edgefleet model build {ref}` first"

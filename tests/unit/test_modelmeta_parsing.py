"""Variant metadata parsing (pydantic over the plain dataclasses): every field type-checked,
each problem named by its path, the on-disk JSON unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.ota.local import make_target
from agent.ota.machine import TargetInfo
from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import Preprocessing, VariantMetadata


def custom(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = make_target(b"model")["custom"]
    return {**data, **changes}


def test_round_trip_keeps_the_json_and_builds_tuples() -> None:
    data = custom(labels=["a", "b"])
    meta = VariantMetadata.from_dict(data)
    assert meta.input_shape == (-1, 4) and meta.labels == ("a", "b")
    assert isinstance(meta.preprocessing, Preprocessing) and meta.preprocessing.size == (1, 1)
    assert json.loads(meta.to_json()) == json.loads(
        VariantMetadata.from_json(meta.to_json()).to_json()
    )
    assert VariantMetadata.from_dict(meta.to_dict()) == meta


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "three"}, "version: Input should be a valid integer"),
        ({"file": 123}, "file: Input should be a valid string"),
        ({"temperature": None}, "temperature: Input should be a valid number"),
        ({"colour": "red"}, "colour: Unexpected keyword argument"),
        ({"input_quantization": {"scale": "x", "zero_point": 0}}, "input_quantization.scale"),
    ],
)
def test_wrong_types_are_refused_by_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=f"malformed variant metadata: {message}"):
        VariantMetadata.from_dict(custom(**changes))


def test_missing_fields_and_bad_preprocessing_are_named() -> None:
    data = custom()
    del data["output_name"]
    with pytest.raises(InvalidInput, match="output_name: Field required"):
        VariantMetadata.from_dict(data)
    with pytest.raises(InvalidInput, match=r"preprocessing\.size: Input should be a valid tuple"):
        VariantMetadata.from_dict(custom(preprocessing={"size": 4}))
    with pytest.raises(InvalidInput, match="layout must be one of"):
        Preprocessing.from_dict({"size": [2, 2], "layout": "CHW"})
    assert Preprocessing.from_dict({"size": [2, 3], "mean": [0.5]}).mean == (0.5,)


def test_a_desired_target_with_a_non_string_file_is_refused_not_a_crash() -> None:
    target = make_target(b"model")
    target["custom"]["file"] = 123  # used to escape as TypeError from the file-name check
    with pytest.raises(InvalidInput, match="file: Input should be a valid string"):
        TargetInfo.from_dict(target)

"""artifact_url_lifetime_s: bounded when the config is built (flag > env > file > default)."""

from __future__ import annotations

import pytest

from controller.config import MAX_URL_LIFETIME_S, build_config
from controller.errors import ConfigError

ENV = "EDGEFLEET_ARTIFACT_URL_LIFETIME_S"


def test_default_and_off() -> None:
    assert build_config({}, {}).artifact_url_lifetime_s == 300
    assert build_config({}, {ENV: "0"}).artifact_url_lifetime_s == 0
    assert build_config({}, {ENV: str(MAX_URL_LIFETIME_S)}).artifact_url_lifetime_s == 604800


@pytest.mark.parametrize("value", ["-1", str(MAX_URL_LIFETIME_S + 1), "soon"])
def test_out_of_range_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="artifact_url_lifetime_s"):
        build_config({}, {ENV: value})

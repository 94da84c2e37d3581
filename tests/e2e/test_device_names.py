"""Device names and labels cannot smuggle terminal tricks into an operator's screen: control,
bidi-override and other format characters are refused at registration (one-line
INVALID_ARGUMENT), and whatever a database already holds is printed escaped by the real CLI."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from controller.store.models import DeviceRow
from edgefleet.v1 import admin_pb2
from tests.fleet import controller_with_admin, edgefleet_cli, status_code

RLO, NUL, ZWJ = "\u202e", "\x00", "\u200d"
pytestmark = pytest.mark.timeout(120)


def _unprintable(text: str) -> list[str]:
    return sorted({c for c in text if not c.isprintable() and c != "\n"})


def test_control_and_bidi_characters_are_refused_and_escaped(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        data_dir = ctl.config.data_dir
        # the CLI: one line, exit 2, the character named
        cli = edgefleet_cli(data_dir, "device", "register", f"cam{RLO}1", check=False)
        lines = cli.stderr.strip().splitlines()
        assert cli.returncode == 2 and len(lines) == 1, cli.stderr
        assert lines[0].startswith("error: device name") and "U+202E" in lines[0], lines[0]
        assert not _unprintable(cli.stderr)
        cli = edgefleet_cli(data_dir, "device", "register", "cam-2", "--label",
                            f"site=lab{ZWJ}", check=False)  # fmt: skip
        assert cli.returncode == 2 and "U+200D" in cli.stderr, cli.stderr
        # the API: INVALID_ARGUMENT for a NUL, nothing registered
        for name in (f"cam{NUL}3", f"cam{ZWJ}3", "cam\u20284"):
            with pytest.raises(grpc.RpcError) as err:
                admin.stub.RegisterDevice(admin_pb2.RegisterDeviceRequest(name=name), timeout=10)
            assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
            assert "\n" not in err.value.details() and not _unprintable(err.value.details())
        assert admin.devices() == []

        # names stored before the check: every command prints them escaped
        admin.register("cam-old", "auto", site="lab")
        evil = f"cam{NUL}{RLO}evil"
        with ctl.db.session() as s:
            row = s.scalars(select(DeviceRow).where(DeviceRow.name == "cam-old")).one()
            row.name, row.labels, device_id = evil, {"site": f"a\nb{RLO}"}, row.device_id
        outputs = [
            edgefleet_cli(data_dir, "device", "list").stdout,
            edgefleet_cli(data_dir, "device", "show", device_id).stdout,
            edgefleet_cli(data_dir, "device", "label", device_id, "floor=2").stdout,
            edgefleet_cli(data_dir, "device", "revoke", device_id).stdout,
        ]
        for out in outputs:
            assert not _unprintable(out), (out, _unprintable(out))
            assert "cam\\x00\\u202eevil" in out, out
        assert "a\\nb\\u202e" in outputs[0]  # a label value cannot break a table row either

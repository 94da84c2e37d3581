"""Regenerate the Python code for protos/edgefleet/v1/*.proto into edgefleet/v1/.

Run: python scripts/gen_protos.py            (writes the files)
     python scripts/gen_protos.py --check    (exit 1 when the committed code is stale)
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = ROOT / "edgefleet" / "v1"


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency, pinned in pyproject

    protos = sorted(PROTO_ROOT.glob("edgefleet/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / "edgefleet" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(OUT_PACKAGE.glob("*_pb2*.py*"))
        if check:
            stale = [
                f.name
                for f in fresh
                if not (OUT_PACKAGE / f.name).exists()
                or not filecmp.cmp(f, OUT_PACKAGE / f.name, shallow=False)
            ]
            extra = sorted({c.name for c in committed} - {f.name for f in fresh})
            if stale or extra:
                print(
                    f"generated proto code is stale: {', '.join(stale + extra)}; "
                    "run python scripts/gen_protos.py",
                    file=sys.stderr,
                )
                return 1
            return 0
        for old in committed:
            old.unlink()
        for f in fresh:
            (OUT_PACKAGE / f.name).write_bytes(f.read_bytes())
    print(f"wrote {len(fresh)} files to {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

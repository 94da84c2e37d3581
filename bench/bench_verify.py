"""Artifact verification throughput vs plain hashlib, side by side in one run.

Writes a 100 MB random file, then alternately (best of N rounds each):
  * plain:    hashlib.sha256 over the file read in 1 MiB chunks
  * verifier: edgefleet.updates.verify_artifact_stream over the same 1 MiB chunks
              (length limit + sha256 check, no sink)
and prints MB/s for both and the ratio verifier/plain (goal >= 0.9x).

    .venv/bin/python bench/bench_verify.py [--mb 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgefleet.updates import verify_artifact_stream

CHUNK = 1024 * 1024


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def plain(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in read_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1000 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "artifact.bin"
        with open(path, "wb") as f:
            for _ in range(0, size, CHUNK):
                f.write(os.urandom(min(CHUNK, size - f.tell())))
        expected = plain(path)  # also warms the page cache for both contestants
        best = {"plain": float("inf"), "verifier": float("inf")}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            assert plain(path) == expected
            best["plain"] = min(best["plain"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert verify_artifact_stream(read_chunks(path), size, expected) == expected
            best["verifier"] = min(best["verifier"], time.perf_counter() - t0)
    mb = size / 1e6
    for name, seconds in best.items():
        print(f"{name:9s} {seconds * 1000:8.1f} ms  {mb / seconds:8.1f} MB/s")
    ratio = best["plain"] / best["verifier"]
    verdict = "ok" if ratio >= 0.9 else "BELOW GOAL"
    print(f"ratio verifier/plain throughput: {ratio:.3f}x (goal >= 0.9x: {verdict})")


if __name__ == "__main__":
    main()

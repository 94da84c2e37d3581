"""Checks of the data files a model version is registered with, shared by the CLI (before
uploading, errors name the option) and the controller (errors name the field, never the
temporary file the upload was materialised in)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.errors import InvalidInput


def arrays_text(keys: tuple[str, ...]) -> str:
    return f"{' and '.join(keys)} array{'s' if len(keys) > 1 else ''}"


def check_npz(path: Path, keys: tuple[str, ...], label: str) -> None:
    """InvalidInput ``"{label}: not an .npz file with x and y arrays"`` unless ``path`` is
    an ``.npz`` archive (no pickles) holding every array in ``keys``."""
    import numpy as np

    wrong = f"{label}: not an .npz file with {arrays_text(keys)}"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{label}: {path}: no such file") from exc
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, EOFError) as exc:  # not a zip / .npy; pickled objects refused
        raise InvalidInput(wrong) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):  # a single .npy array
        raise InvalidInput(wrong)
    with data:
        missing = [k for k in keys if k not in data.files]
    if missing:
        has = ", ".join(data.files) or "no arrays"
        raise InvalidInput(f"{wrong} (it has {has})")

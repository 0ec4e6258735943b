"""File helpers: strict loading and atomic writing (temp name, then rename)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from golden_model.errors import BadInputError


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise BadInputError("no such file", where=p)
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:
        raise BadInputError(f"not a readable .npy array ({type(e).__name__}: {e})", where=p) \
            from None
    if not isinstance(arr, np.ndarray):
        raise BadInputError("expected a single .npy array, not an .npz archive", where=p)
    return arr


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """The folder an output file goes into must exist (we never create a stray tree)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"output folder '{parent}' does not exist", where=os.fspath(p))
    return p


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    p = check_out_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npy_atomic(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())

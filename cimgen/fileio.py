"""File helpers: strict loading and atomic writing (temp name, then rename)."""

from __future__ import annotations

import io
import os
import shutil
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


def write_dir_atomic(out_dir: str | os.PathLike[str], files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative paths, subfolders allowed) into a temp folder
    beside ``out_dir``, then swap it into place: a reader never sees a partial
    folder, and a failure leaves any earlier folder as it was."""
    out = Path(out_dir)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"output folder '{parent}' does not exist", where=str(out))
    if out.exists() and not out.is_dir():
        raise BadInputError("exists and is not a directory", where=str(out))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            old.rmdir()
            out.rename(old)
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the result from other users
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

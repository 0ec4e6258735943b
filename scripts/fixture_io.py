"""Byte-reproducible writers shared by export_models.py and export_larq.py.

Only the standard library and numpy: export_larq.py imports this module under
the separate TensorFlow interpreter (numpy < 2), export_models.py under the
project's own.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

# numpy.savez stamps each member with the current time; a fixed stamp keeps the
# archive identical from one export to the next.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by ``numpy.load``) with fixed member timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def pixel_inputs(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded 8-bit pixels scaled to [0, 1] as ToTensor() gives them, float32.

    k/255 is never exactly 0.5, so 2x - 1 never lands on a quantizer's tie.
    """
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=shape).astype(np.float32) / np.float32(255.0))

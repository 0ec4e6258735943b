"""Where tensors live in data memory: memory orders and the DMEM allocator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.errors import BadInputError


@dataclass
class Tensor:
    """A tensor in DMEM: base address, IR shape, and memory order.

    ``order[m]`` is the IR (C-major) flat index stored at DMEM[base + m].
    """

    base: int
    shape: tuple[int, ...]
    order: np.ndarray

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def hwc(self) -> bool:
        return len(self.shape) == 3


def hwc_order(shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)



class DmemAllocator:
    def __init__(self, limit: int) -> None:
        self.consts: list[tuple[int, np.ndarray]] = []
        self.top = 0
        self.limit = limit

    def const(self, data: np.ndarray) -> int:
        base = self.top
        arr = np.asarray(data, dtype=np.int64).reshape(-1)
        self.consts.append((base, arr))
        self.top += int(arr.size)
        return base

    def reserve(self, n: int) -> int:
        base = self.top
        self.top += n
        return base

    def image(self) -> np.ndarray:
        """Initial DMEM contents up to the last constant (reserved space is zero)."""
        end = max((b + a.size for b, a in self.consts), default=0)
        data = np.zeros(end, np.int64)
        for b, a in self.consts:
            data[b:b + a.size] = a
        if data.size and (data.max() >= 2**31 or data.min() < -(2**31)):
            raise BadInputError("a constant does not fit a 32-bit data word", where="compile")
        return data.astype(np.int32)

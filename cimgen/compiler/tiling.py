"""Logical weight tiles and their placement on crossbars (first-fit shelf packing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Tile:
    layer: int  # index of the linear layer in net.layers
    rt: int
    ct: int
    f0: int
    f_len: int
    o0: int
    o_len: int
    bits: np.ndarray  # physical cell bits [f_len*rpi, o_len*cpo]
    phase: int = 0
    xbar: int = 0
    row0: int = 0
    col0: int = 0


@dataclass
class Shelf:
    y0: int
    height: int
    used: int


class Packer:
    """First-fit shelf packing of tiles onto crossbars (one phase)."""

    def __init__(self, n: int, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.shelves: list[list[Shelf]] = [[] for _ in range(n)]
        self.top = [0] * n

    def place(self, h: int, w: int) -> tuple[int, int, int] | None:
        for x, shelves in enumerate(self.shelves):
            for s in shelves:
                if h <= s.height and s.used + w <= self.cols:
                    s.used += w
                    return x, s.y0, s.used - w
            if self.top[x] + h <= self.rows:
                shelves.append(Shelf(self.top[x], h, w))
                self.top[x] += h
                return x, self.top[x] - h, 0
        return None

    @property
    def used_xbars(self) -> int:
        return sum(1 for t in self.top if t > 0)

"""Which weight tiles sit on which crossbar when: pinned layers and streamed residencies.

When every tile fits the crossbars at once, all of them are written by the
setup program and never again. Otherwise the crossbars are split: the first
``num_xbars - S`` hold *pinned* layers (whole layers, written once at setup),
the last ``S`` are *streaming* crossbars through which the other tiles pass in
a sequence of *residencies*. Streamed tiles are taken in layer order, and
within a layer column tile by column tile (row tiles in order), so a layer's
output columns complete as early as possible and partial sums wait in data
memory only across residency boundaries. The program runs every residency
over the whole batch before it moves on, so each streamed tile is written at
most once per batch.

The split S is chosen by an estimate of cycles per inference at the batch:
row writes (amortized over the batch) plus partial-sum spills. Among the
splits within ``NEAR`` of the best estimate, the one with the fewest
residencies wins: every residency rewrites the streaming crossbars, so fewer
residencies spread the writes over more cells and the most-written cell
lives longer (pinning a small layer saves a few writes but can triple the
wear of the cells everything else streams through).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from golden_model.errors import BadInputError

from .tiling import Packer, Tile

NEAR = 1.1  # splits within 10 % of the best cycle estimate count as equally fast


@dataclass
class Schedule:
    """The outcome of placement; every tile's phase/xbar/row0/col0 is set.

    ``Tile.phase`` is -1 for a pinned tile and the residency index for a
    streamed one.
    """

    residencies: int  # streamed residencies (0: nothing streams)
    streaming_xbars: int  # S (0 when everything is pinned)
    pinned_layers: list[int] = field(default_factory=list)
    xbars_used: int = 0

    @property
    def streams(self) -> bool:
        return self.residencies > 0


def _pack(tiles: list[Tile], n: int, rows: int, cols: int, first_xbar: int
          ) -> list[tuple[int, int, int]] | None:
    packer = Packer(n, rows, cols)
    spots = []
    for t in tiles:
        s = packer.place(*t.bits.shape)
        if s is None:
            return None
        spots.append((s[0] + first_xbar, s[1], s[2]))
    return spots


def fits(tiles: dict[int, list[Tile]], num_xbars: int, rows: int, cols: int) -> bool:
    """Every tile on the crossbars at once."""
    return _pack([t for ts in tiles.values() for t in ts], num_xbars, rows, cols, 0) is not None


@dataclass
class _Plan:
    pinned: list[int]
    pinned_spots: list[tuple[Tile, tuple[int, int, int]]]
    streamed: list[tuple[Tile, int, tuple[int, int, int]]]  # tile, residency, spot
    residencies: int
    cost: float
    s: int


def _stream(tiles: list[Tile], s: int, rows: int, cols: int, first_xbar: int
            ) -> tuple[list[tuple[Tile, int, tuple[int, int, int]]], int]:
    """Streamed tiles in order, a new residency whenever the S crossbars are full."""
    out: list[tuple[Tile, int, tuple[int, int, int]]] = []
    phase = 0
    packer = Packer(s, rows, cols)
    for t in tiles:
        spot = packer.place(*t.bits.shape)
        if spot is None:
            phase += 1
            packer = Packer(s, rows, cols)
            spot = packer.place(*t.bits.shape)
            assert spot is not None  # a tile always fits an empty crossbar
        out.append((t, phase, (spot[0] + first_xbar, spot[1], spot[2])))
    return out, (phase + 1 if out else 0)


def plan(tiles: dict[int, list[Tile]], positions: dict[int, int], num_xbars: int, rows: int,
         cols: int, batch: int, prog_cycles: int, vec_width: int) -> Schedule:
    """Place every tile (mutating ``Tile.phase``, ``xbar``, ``row0``, ``col0``)."""
    order = list(tiles)
    everything = [t for i in order for t in tiles[i]]
    spots = _pack(everything, num_xbars, rows, cols, 0)
    if spots is not None:
        for t, (x, r, c) in zip(everything, spots, strict=True):
            t.phase, t.xbar, t.row0, t.col0 = -1, x, r, c
        return Schedule(0, 0, order, len({x for x, _, _ in spots}))
    for i in order:
        for t in tiles[i]:
            if t.bits.shape[0] > rows or t.bits.shape[1] > cols:  # pragma: no cover
                raise BadInputError("a tile is larger than a crossbar", where="compile")
    cells = {i: sum(t.bits.size for t in tiles[i]) for i in order}
    plans: list[_Plan] = []
    cands = sorted({1 << k for k in range(int(math.log2(num_xbars)) + 1)} | {num_xbars})
    for s in cands:
        n_pin = num_xbars - s
        pinned: list[int] = []
        pinned_spots: list[tuple[Tile, tuple[int, int, int]]] = []
        if n_pin:
            # Pin whole layers, largest first, while they fit (each pinned cell is
            # a cell that is never rewritten).
            for i in sorted(order, key=lambda j: (-cells[j], j)):
                trial = [t for j in [*pinned, i] for t in tiles[j]]
                sp = _pack(trial, n_pin, rows, cols, 0)
                if sp is not None:
                    pinned.append(i)
                    pinned_spots = list(zip(trial, sp, strict=True))
        rest = [t for i in order if i not in pinned for t in tiles[i]]
        streamed, n_res = _stream(rest, s, rows, cols, n_pin)
        # Estimated cycles per inference: the row writes of one batch (every
        # streamed tile row once) over the batch, plus partial-sum spills.
        prog_rows = len({(ph, x, r + k) for t, ph, (x, r, _) in streamed
                         for k in range(t.bits.shape[0])})
        spans: dict[tuple[int, int], set[int]] = {}
        for t, ph, _ in streamed:
            spans.setdefault((t.layer, t.ct), set()).add(ph)
        spill = sum((len(ph) - 1) * positions[layer] * 2 * (1 + -(-tiles[layer][0].o_len
                                                                   // vec_width))
                    for (layer, _), ph in spans.items())
        cost = prog_rows * prog_cycles / batch + spill
        plans.append(_Plan(sorted(pinned), pinned_spots, streamed, n_res, cost, s))
    fastest = min(p.cost for p in plans)
    best = min((p for p in plans if p.cost <= NEAR * fastest),
               key=lambda p: (p.residencies, p.cost, -p.s))
    used = set()
    for t, (x, r, c) in best.pinned_spots:
        t.phase, t.xbar, t.row0, t.col0 = -1, x, r, c
        used.add(x)
    for t, ph, (x, r, c) in best.streamed:
        t.phase, t.xbar, t.row0, t.col0 = ph, x, r, c
        used.add(x)
    return Schedule(best.residencies, best.s, best.pinned, len(used))

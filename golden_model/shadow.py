"""Drive shadows: the READ drive of DMEM words, made once for many READs.

A convolution's positions load overlapping windows of the same DMEM words into
IN (a 3x3 kernel reads every word nine times), and each READ turns its IN rows
into a 0/1 drive before the product. When nothing writes those words between
the READs, the drive of every word they load can be made once: a ``Shadow``
holds it as a [words, columns] float matrix, in the column order of the
registers, and a READ's product is then the sum of its matrix's row blocks
times contiguous row blocks of the shadow (or of the rows gathered from it):
no copy into IN and no drive per READ.

``plan_shadows`` finds the runs of chains ("epochs") that may share one shadow:
each chain's IN rows come only from the LDINs after its INCLR (``in_source``),
and no instruction between the start of the epoch and a chain writes a word the
chain loads. The shadow is marked stale where the epoch starts (each run) and
built by the first READ that uses it, for that READ's driver and float type;
the words of a later chain of the epoch are unchanged since the start, so they
are what its LDINs would have loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .machine import _Step
    from .machine_fast import Ctx

# A word range in one address space: "rel" (a lifted body's per-iteration words)
# or "abs" (absolute words; in a block every address, IB being 0).
Span = tuple[str, int, int]
Driver = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
# An epoch's chains must load at least this many rows per word of the shadow, or
# building it costs more than the drives it saves.
MIN_REUSE = 2


def _overlaps(spans: list[Span], others: list[Span]) -> bool:
    return any(s == t and a < d and c < b for s, a, b in spans for t, c, d in others)


@dataclass
class Shadow:
    """The drive of DMEM words: disjoint ranges (space, lo, hi), rows in that order."""

    ctx: Ctx
    ranges: list[Span]
    fresh: set[tuple[int, int, type]] = field(default_factory=set)
    rows: int = field(init=False)  # the words of the ranges
    # (mask, bit, dt) -> the buffer ``get`` last used and its [rows, columns] view.
    _views: dict[tuple[int, int, type], tuple[np.ndarray, np.ndarray]] = \
        field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.rows = sum(hi - lo for _, lo, hi in self.ranges)

    def row(self, space: str, word: int) -> int:
        """The shadow row of a word."""
        base = 0
        for s, lo, hi in self.ranges:
            if s == space and lo <= word < hi:
                return base + word - lo
            base += hi - lo
        raise KeyError((space, word))

    def stale(self, _ib: int = 0) -> None:
        """Where the epoch starts: the words may have changed since the last build."""
        self.fresh.clear()

    def get(self, mask: int, bit: int, dt: type, driver: Driver) -> np.ndarray:
        """The drive of every word under (mask, bit) as ``dt`` [rows, columns].

        The memory is the context's, one buffer per driver and type for all its
        shadows (contexts of as many columns share it): a run of closures passes
        each epoch's start (``stale``) before its chains, and epochs do not
        interleave, so whatever another shadow wrote there since is rebuilt."""
        key = (mask, bit, dt)
        ctx = self.ctx
        n_all = self.rows * ctx.N
        flat = ctx.flat(f"shadow{mask},{bit}", n_all, dt)
        got = self._views.get(key)
        if got is None or got[0] is not flat:  # (the buffer grew for another shadow)
            got = self._views[key] = (flat, flat[:n_all].reshape(self.rows, ctx.N))
        s = got[1]
        if key not in self.fresh:
            base = 0
            for space, lo, hi in self.ranges:
                n = hi - lo
                x = ctx.view(lo, n, space == "rel")  # [n, copies or 1, B]
                out = s[base:base + n].reshape(n, ctx.copies, ctx.B)
                t = ctx.flat("shadow_t", x.size, np.int32)
                driver(x, out, t[:x.size].reshape(x.shape))
                base += n
            self.fresh.add(key)
        return s


def plan_shadows(steps: list[_Step], cands: dict[int, tuple[int, list[int]]], ctx: Ctx
                 ) -> dict[int, Shadow]:
    """Chain start -> the shadow it reads, for the chains ``cands`` (start -> (end,
    the LDIN steps that load its IN rows)) that fall in epochs worth a shadow. The
    first chain of each epoch is where its shadow goes stale."""
    lifted = ctx.win is not None

    def space(rel: int) -> str:
        return "rel" if rel and lifted else "abs"

    epochs: list[list[tuple[int, list[Span]]]] = []
    written: list[Span] = []  # since the current epoch started
    for k, st in enumerate(steps):
        c = cands.get(k)
        if c is not None:
            reads = [(space(steps[j].a["rsrc"]), steps[j].a["src"],
                      steps[j].a["src"] + steps[j].a["lanes"]) for j in c[1]]
            if epochs and not _overlaps(reads, written):
                epochs[-1].append((k, reads))
            else:
                epochs.append([(k, reads)])
                written = []
        elif epochs:
            written += [(space(rel), a, a + n) for a, n, rel, w in st.spans if w]
    out: dict[int, Shadow] = {}
    for ep in epochs:
        reads = sorted(r for _, rs in ep for r in rs)
        loaded = sum(b - a for _, a, b in reads)
        ranges: list[Span] = []
        for s, a, b in reads:  # the words loaded, as disjoint ranges
            if ranges and ranges[-1][0] == s and a <= ranges[-1][2]:
                ranges[-1] = (s, ranges[-1][1], max(ranges[-1][2], b))
            else:
                ranges.append((s, a, b))
        sh = Shadow(ctx, ranges)
        if len(ep) < 2 or loaded < MIN_REUSE * sh.rows:
            continue
        for k, _ in ep:
            out[k] = sh
    return out

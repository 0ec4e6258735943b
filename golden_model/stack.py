"""Stacked positions: runs of like units of straight code as one product.

A convolution compiles to one unit per output position: ACLR, INCLR, LDINs of
the position's window into IN, one READ and its ACC from CODE, ACCs of a bias
and a STA or an ACT of the result. The positions differ only in the DMEM words
their LDINs load and in the words they store to, so the products of many
positions are one product of the matrix with their drives side by side
([rows, positions x columns]), and their bias and threshold comparison one pass
over all of them. On a small batch this replaces hundreds of short numpy
passes per position with a few long ones.

This module finds such runs in a block or lifted body (``stack_runs``); the
closure that runs one is ``machine_fast._stack_fn``, which also checks that no
unit of a run reads a word another one writes (so all of their loads may come
first) and falls back to the units' own closures when the product would not be
exact. The last unit of a run is left to the ordinary closures: registers then
end as it leaves them, and the stacked units change only DMEM and the read
charge (each unit starts by clearing ACC and IN, so none of their register
effects can be seen after the last one).
"""

from __future__ import annotations

from dataclasses import dataclass

from .isa import Src
from .machine import _ACC, _ACLR, _ACT, _INCLR, _LDIN, _READ, _STA, _Step

# Runs of fewer units are left as they are: the last unit runs on its own, and a
# run of two would stack one.
MIN_UNITS = 3


@dataclass(frozen=True)
class Unit:
    """steps[start:end]: ACLR, INCLR, the LDINs ``loads`` (IN rows [0, hi) in
    order), the READ at ``read`` and its ACC from CODE, ACCs of absolute DMEM
    words, then a STA or an ACT."""

    start: int
    loads: tuple[int, ...]
    read: int
    end: int
    hi: int


def find_unit(steps: list[_Step], k: int, chains: dict[int, int]) -> Unit | None:
    """The unit that starts at steps[k], if one does (its READ and ACC one chain of
    ``read_chains`` by themselves, the READ not a pair)."""
    if k + 2 >= len(steps) or steps[k].op != _ACLR or steps[k + 1].op != _INCLR:
        return None
    j = k + 2
    hi = 0
    while j < len(steps) and steps[j].op == _LDIN:
        if steps[j].a["dst"] != hi:
            return None
        hi += steps[j].a["lanes"]
        j += 1
    if hi == 0 or j >= len(steps) or steps[j].op != _READ or chains.get(j) != j + 2 or \
            steps[j].a["pair"]:
        return None
    e = j + 2
    while e < len(steps) and steps[e].op == _ACC:
        if steps[e].a["src"] != Src.DMEM or steps[e].a["rel"]:
            return None
        e += 1
    if e == len(steps) or steps[e].op not in (_STA, _ACT):
        return None
    if any(st.fused is not None for st in steps[k:e + 1]):
        return None
    return Unit(k, tuple(range(k + 2, j)), j, e + 1, hi)


def unit_key(steps: list[_Step], u: Unit) -> tuple:
    """What like units share: everything but the LDINs' sources and how they split
    IN's rows, and the STA's or ACT's destination."""
    last = steps[u.end - 1]
    return (u.hi, u.end - u.read, last.op,
            *(tuple(sorted(st.a.items())) for st in steps[u.read:u.end - 1]),
            tuple(sorted((f, v) for f, v in last.a.items() if f != "dst")))


def stack_runs(steps: list[_Step], chains: dict[int, int]) -> list[list[Unit]]:
    """Runs of at least MIN_UNITS like units, each right after the one before."""
    runs: list[list[Unit]] = []
    run: list[Unit] = []
    key: tuple | None = None
    k = 0
    while k < len(steps):
        u = find_unit(steps, k, chains)
        if u is None:
            k += 1
            continue
        uk = unit_key(steps, u)
        if run and run[-1].end == u.start and uk == key:
            run.append(u)
        else:
            if len(run) >= MIN_UNITS:
                runs.append(run)
            run, key = [u], uk
        k = u.end
    if len(run) >= MIN_UNITS:
        runs.append(run)
    return runs

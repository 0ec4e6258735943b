"""The instruction emitter: builds, range-checks and encodes each distinct instruction once."""

from __future__ import annotations

from golden_model import isa
from golden_model.isa import Instr

_FIELD_RANGES = {op.name: tuple((f.name, f.lo, f.hi) for f in op.fields) for op in isa.OPS}


_FIELD_RANGES = {op.name: tuple((f.name, f.lo, f.hi) for f in op.fields) for op in isa.OPS}


class Emitter:
    """Collects (instruction, comment) pairs.

    Programs repeat the same instructions many times (per output position), so
    each distinct instruction is built and range-checked once (``isa.make``'s
    checks, inlined; any violation goes through ``isa.make`` for its error) and
    encoded once.
    """

    def __init__(self) -> None:
        self.code: list[tuple[Instr, str]] = []
        self._made: dict[tuple[str, tuple[tuple[str, int], ...]], Instr] = {}

    def make(self, op: str, **f: int) -> Instr:
        key = (op, tuple(f.items()))
        ins = self._made.get(key)
        if ins is None:
            ranges = _FIELD_RANGES.get(op)
            args = []
            if ranges is not None and len(f) <= len(ranges):
                for name, lo, hi in ranges:
                    v = int(f.get(name, 0))
                    if not lo <= v <= hi:
                        break
                    args.append((name, v))
            if ranges is None or len(args) != len(ranges) or not f.keys() <= dict(args).keys():
                ins = isa.make(op, **f)  # raises the EncodeError
            else:
                ins = Instr(op, tuple(args))
            self._made[key] = ins
        return ins

    def __call__(self, op: str, comment: str = "", **f: int) -> None:
        self.code.append((self.make(op, **f), comment))

    def extend(self, block: list[tuple[Instr, str]]) -> None:
        self.code.extend(block)

    def words(self) -> tuple[int, ...]:
        """The encoded program (each distinct instruction object encoded once)."""
        enc: dict[int, int] = {}
        out = []
        for ins, _ in self.code:
            w = enc.get(id(ins))
            if w is None:
                w = enc[id(ins)] = isa.encode(ins)
            out.append(w)
        return tuple(out)

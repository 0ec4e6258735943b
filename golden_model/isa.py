"""The cimgen instruction set: the single source of truth.

Every instruction is one 64-bit word; the opcode sits in bits [63:58]. The
RTL package ``rtl/cim_isa_pkg.sv`` and ``docs/isa.md`` are generated from the
tables below (``cimgen.hw.isa_gen``), and tests fail when they are stale.

Machine state (per inference): data memory DMEM (int32 words), the input
register IN (one small signed int per logical crossbar row), the ADC code
vector CODE and driven-row count NDRV of the last READ, and the accumulator
vector ACC (int32 per lane, wrapping two's complement). Crossbar cell states
persist across inferences.

Vector instructions that read and write DMEM (VCOPY, VMAX, ACT) run in steps
of vec_width lanes, ascending: each step reads its source words, then writes
its destination words, so overlapping source and destination ranges behave as
the hardware's pipeline does (only the overlapping case can tell this apart
from whole-vector semantics).

BasisN: ``CMAC`` combines n basis products (x . b_j, stored in DMEM by the
READ/ACC recipe of a basis tile) with per-output integer coefficients held in
weight memory, one coef_bits-bit signed field per basis vector and one row per
output lane: ACC[l] += sum_j C[l][j] * y[j].

Batches: ``LOOP count len stride`` repeats the next ``len`` instructions
``count`` times (a zero-overhead hardware loop; loops do not nest). The image
base register IB is 0 in the first iteration and grows by ``stride`` words per
iteration; it is 0 again after the loop. A DMEM address field whose ``r*`` bit
is set is relative: the effective address is field + IB. So one loop body
processes every input of a batch, each in its own DMEM slot, and the program's
size does not grow with the batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

WORD_BITS = 64
OPCODE_LSB = 58
OPCODE_BITS = 6
ISA_VERSION = 3

# READ mask bits: which input values drive a row.
MASK_NEG, MASK_ZERO, MASK_POS = 1, 2, 4
BIT_SIGNED = 15  # READ.bit value: use IN as a signed value, not a bit-plane


class Err(IntEnum):
    """Error codes raised identically by the golden machine and the RTL."""

    NONE = 0
    ILLEGAL = 1  # unknown opcode or reserved field value
    DMEM_RANGE = 2  # data memory access outside [0, dmem_words)
    XBAR_RANGE = 3  # crossbar index, row or column outside the array
    WMEM_RANGE = 4  # weight memory word outside [0, wmem_words)
    VEC_RANGE = 5  # lanes == 0 or a vector beyond IN / CODE / ACC
    ADC_RANGE = 6  # ADC table index outside [0, adc_tables)
    PC_RANGE = 7  # program counter past the loaded program without HALT


class Src(IntEnum):
    """ACC operand source."""

    CODE = 0
    NDRV = 1
    DMEM = 2


class Sense(IntEnum):
    POS = 0  # one column, HRS floor removed using the driven-row count
    SYM = 1  # differential pair (2c, 2c+1)


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    signed: bool = False
    doc: str = ""

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


@dataclass(frozen=True)
class OpSpec:
    name: str
    code: int
    fields: tuple[Field, ...]
    doc: str
    cost: str  # the cycle-cost formula, documented and evaluated by ``cost``

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _f(name: str, lsb: int, width: int, signed: bool = False, doc: str = "") -> Field:
    return Field(name, lsb, width, signed, doc)


_LANES = _f("lanes", 0, 11, doc="vector length (1..cols)")
_REL = "1: the DMEM address is relative to IB"
_VEC_COST = "1 + ceil(lanes / vec_width)"

OPS: tuple[OpSpec, ...] = (
    OpSpec("NOP", 0x00, (), "no operation", "1"),
    OpSpec("HALT", 0x01, (), "stop; the host sees done", "1"),
    OpSpec("PROG", 0x02, (
        _f("xbar", 50, 8, doc="crossbar index"),
        _f("row", 40, 10, doc="physical row"),
        _f("wsrc", 0, 24, doc="weight-memory word (one physical row of cell bits)"),
    ), "program one crossbar row from weight memory (write-verify)", "t_write"),
    OpSpec("INCLR", 0x03, (), "IN[:] = 0 (no row driven)", "1"),
    OpSpec("LDIN", 0x04, (
        _f("dst", 47, 11, doc="first IN entry"),
        _f("src", 18, 18, doc="DMEM word address"),
        _f("rsrc", 11, 1, doc=_REL),
        _LANES,
    ), "IN[dst + l] = DMEM[src + l] for l < lanes", _VEC_COST),
    OpSpec("READ", 0x05, (
        _f("xbar", 50, 8, doc="crossbar index"),
        _f("row_off", 40, 10, doc="physical row driven by IN[0]"),
        _f("col", 29, 11, doc="first physical column"),
        _f("mask_a", 26, 3, doc="values driving row (2)j: bit0 -1, bit1 0, bit2 +1"),
        _f("mask_b", 23, 3, doc="values driving row 2j+1 (pair layout)"),
        _f("pair", 22, 1, doc="1: IN[j] drives rows row_off+2j and row_off+2j+1"),
        _f("sense", 21, 1, doc="0 POS (one column), 1 SYM (column pair 2l, 2l+1)"),
        _f("adc", 15, 6, doc="ADC table"),
        _f("bit", 11, 4, doc="0..7: bit-plane of IN (1 -> +1, 0 -> 0); 15: signed IN"),
        _LANES,
    ), "drive rows from IN, sense lanes conversions into CODE, driven rows into NDRV",
        "t_read + t_adc * ceil(lanes / adcs_per_xbar)"),
    OpSpec("ACC", 0x06, (
        _f("src", 56, 2, doc="0 CODE, 1 NDRV (broadcast), 2 DMEM"),
        _f("mul", 48, 8, signed=True, doc="signed multiplier"),
        _f("sh", 44, 4, doc="left shift of the multiplier"),
        _f("addr", 18, 18, doc="CODE offset or DMEM address"),
        _f("rel", 11, 1, doc=_REL + " (src DMEM only; ignored otherwise)"),
        _LANES,
    ), "ACC[l] += (mul << sh) * S[l]", "1 if src != DMEM else " + _VEC_COST),
    OpSpec("ACLR", 0x07, (), "ACC[:] = 0", "1"),
    OpSpec("STA", 0x08, (
        _f("dst", 18, 18, doc="DMEM word address"),
        _f("rel", 11, 1, doc=_REL),
        _LANES,
    ), "DMEM[dst + l] = ACC[l]", _VEC_COST),
    OpSpec("ACT", 0x09, (
        _f("k", 56, 2, doc="thresholds per channel (1..3)"),
        _f("oscale", 53, 3, signed=True, doc="output scale"),
        _f("obias", 50, 3, signed=True, doc="output bias"),
        _f("tbl", 32, 18, doc="DMEM address of the per-lane tables [sign, t_1..t_k]"),
        _f("dst", 14, 18, doc="DMEM word address"),
        _f("rtbl", 12, 1, doc=_REL + " (tbl)"),
        _f("rdst", 11, 1, doc=_REL + " (dst)"),
        _LANES,
    ), "DMEM[dst + l] = obias + oscale * #{j: sign_l * ACC[l] >= t_lj}", _VEC_COST),
    OpSpec("VCOPY", 0x0A, (
        _f("dst", 36, 18, doc="DMEM word address"),
        _f("src", 18, 18, doc="DMEM word address"),
        _f("rdst", 12, 1, doc=_REL + " (dst)"),
        _f("rsrc", 11, 1, doc=_REL + " (src)"),
        _LANES,
    ), "DMEM[dst + l] = DMEM[src + l]", _VEC_COST),
    OpSpec("VMAX", 0x0B, (
        _f("dst", 36, 18, doc="DMEM word address"),
        _f("src", 18, 18, doc="DMEM word address"),
        _f("rdst", 12, 1, doc=_REL + " (dst)"),
        _f("rsrc", 11, 1, doc=_REL + " (src)"),
        _LANES,
    ), "DMEM[dst + l] = max(DMEM[dst + l], DMEM[src + l])", _VEC_COST),
    OpSpec("LOOP", 0x0C, (
        _f("count", 38, 16, doc="iterations (1..65535)"),
        _f("len", 18, 20, doc="body: the next len instructions (>= 1)"),
        _f("stride", 0, 18, doc="IB increment per iteration (DMEM words)"),
    ), "repeat the next len instructions count times, IB = 0, stride, 2 * stride, ...; "
       "IB = 0 after the loop. count 0, len 0 or a LOOP inside a loop body: ILLEGAL", "1"),
    OpSpec("CMAC", 0x0D, (
        _f("src", 40, 18, doc="DMEM word address of the n basis products"),
        _f("coef", 22, 18, doc="weight-memory row of lane 0's coefficients (lane l: coef + l)"),
        _f("n", 12, 10, doc="basis products per lane (1..cols / coef_bits)"),
        _f("rsrc", 11, 1, doc=_REL),
        _LANES,
    ), "ACC[l] += sum_j C[l][j] * DMEM[src + j] for l < lanes, j < n; C[l][j] is the signed "
       "coef_bits-bit field j of WMEM[coef + l] (BasisN coefficient combination)",
        "1 + ceil(n / vec_width) + lanes"),
)

BY_NAME: dict[str, OpSpec] = {op.name: op for op in OPS}
BY_CODE: dict[int, OpSpec] = {op.code: op for op in OPS}


def _check_layout() -> None:
    for op in OPS:
        used = 0
        for f in op.fields:
            m = ((1 << f.width) - 1) << f.lsb
            assert f.lsb + f.width <= OPCODE_LSB, (op.name, f.name)
            assert not used & m, (op.name, f.name)
            used |= m


_check_layout()


@dataclass(frozen=True)
class Instr:
    op: str
    args: tuple[tuple[str, int], ...] = ()

    def __getitem__(self, name: str) -> int:
        for k, v in self.args:
            if k == name:
                return v
        raise KeyError(name)

    def get(self, name: str, default: int = 0) -> int:
        for k, v in self.args:
            if k == name:
                return v
        return default


class EncodeError(ValueError):
    pass


def make(op: str, **fields: int) -> Instr:
    spec = BY_NAME.get(op)
    if spec is None:
        raise EncodeError(f"unknown opcode {op}")
    names = {f.name for f in spec.fields}
    extra = set(fields) - names
    if extra:
        raise EncodeError(f"{op}: unknown field(s) {', '.join(sorted(extra))}")
    args = tuple((f.name, int(fields.get(f.name, 0))) for f in spec.fields)
    for f in spec.fields:
        v = dict(args)[f.name]
        if not f.lo <= v <= f.hi:
            raise EncodeError(f"{op}.{f.name} = {v} outside [{f.lo}, {f.hi}]")
    return Instr(op, args)


def encode(ins: Instr) -> int:
    spec = BY_NAME[ins.op]
    word = spec.code << OPCODE_LSB
    vals = dict(ins.args)
    for f in spec.fields:
        v = vals.get(f.name, 0)
        if not f.lo <= v <= f.hi:
            raise EncodeError(f"{ins.op}.{f.name} = {v} outside [{f.lo}, {f.hi}]")
        word |= (v & ((1 << f.width) - 1)) << f.lsb
    return word


def decode(word: int) -> Instr | None:
    """Instr, or None for an unknown opcode (the machine raises Err.ILLEGAL)."""
    spec = BY_CODE.get((word >> OPCODE_LSB) & ((1 << OPCODE_BITS) - 1))
    if spec is None:
        return None
    args = []
    for f in spec.fields:
        v = (word >> f.lsb) & ((1 << f.width) - 1)
        if f.signed and v >> (f.width - 1):
            v -= 1 << f.width
        args.append((f.name, v))
    return Instr(spec.name, tuple(args))


# ----------------------------------------------------------------- cycle cost


class Timing(Protocol):
    t_write: int
    t_read: int
    t_adc: int
    adcs_per_xbar: int
    vec_width: int


def cost(ins: Instr, cfg: Timing) -> int:
    """Cycles the instruction takes (documented formula in OPS[...].cost)."""
    op = ins.op
    if op in ("NOP", "HALT", "INCLR", "ACLR", "LOOP"):
        return 1
    if op == "PROG":
        return cfg.t_write
    if op == "READ":
        return cfg.t_read + cfg.t_adc * math.ceil(ins["lanes"] / cfg.adcs_per_xbar)
    if op == "ACC" and ins["src"] != Src.DMEM:
        return 1
    if op == "CMAC":
        return 1 + math.ceil(ins["n"] / cfg.vec_width) + ins["lanes"]
    return 1 + math.ceil(ins["lanes"] / cfg.vec_width)


# --------------------------------------------------------- text (asm/disasm)


def disassemble(ins: Instr) -> str:
    if not ins.args:
        return ins.op
    return ins.op + " " + " ".join(f"{k}={v}" for k, v in ins.args)


_TOKEN = re.compile(r"^([a-z_]+)=(-?(?:0x[0-9a-fA-F]+|\d+))$")


def assemble_line(line: str) -> Instr | None:
    """One line of assembly -> Instr (None for blank/comment lines)."""
    text = line.split("#", 1)[0].split(";", 1)[0].strip()
    if not text:
        return None
    parts = text.split()
    op = parts[0].upper()
    if op not in BY_NAME:
        raise EncodeError(f"unknown opcode '{parts[0]}'")
    fields: dict[str, int] = {}
    for tok in parts[1:]:
        m = _TOKEN.match(tok)
        if not m:
            raise EncodeError(f"bad operand '{tok}' (expected name=integer)")
        if m.group(1) in fields:
            raise EncodeError(f"operand '{m.group(1)}' given twice")
        fields[m.group(1)] = int(m.group(2), 0)
    return make(op, **fields)


def assemble(text: str) -> list[Instr]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            ins = assemble_line(line)
        except EncodeError as e:
            raise EncodeError(f"line {n}: {e}") from None
        if ins is not None:
            out.append(ins)
    return out


def to_bytes(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(8, "little") for w in words)


def from_bytes(data: bytes) -> list[int]:
    if len(data) % 8:
        raise EncodeError(f"program length {len(data)} is not a multiple of 8 bytes")
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]

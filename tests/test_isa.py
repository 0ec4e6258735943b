"""The instruction set (golden_model/isa.py): binary and text encodings, range checks, costs.

Randomized tests run under hypothesis: a failure report shows the drawn
instruction (the falsifying example) and hypothesis's own seed
(``--hypothesis-seed`` reproduces a run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from golden_model import isa
from golden_model.isa import BY_CODE, BY_NAME, OPS, EncodeError, Instr, Src

USED_CODES = {op.code for op in OPS}
UNUSED_CODES = [c for c in range(1 << isa.OPCODE_BITS) if c not in USED_CODES]


@st.composite
def instructions(draw: st.DrawFn, op: str | None = None) -> Instr:
    """A valid instruction: any opcode (or ``op``), every field anywhere in its range."""
    spec = BY_NAME[op] if op else draw(st.sampled_from(OPS))
    fields = {f.name: draw(st.integers(f.lo, f.hi)) for f in spec.fields}
    return isa.make(spec.name, **fields)


# ----------------------------------------------------------------- binary


def test_opcode_table_is_consistent() -> None:
    assert len(BY_CODE) == len(OPS) == len(BY_NAME)
    for op in OPS:
        assert 0 <= op.code < 1 << isa.OPCODE_BITS
        for f in op.fields:
            assert f.lsb >= 0 and f.lsb + f.width <= isa.OPCODE_LSB, (op.name, f.name)


@pytest.mark.parametrize("op", [o.name for o in OPS])
@settings(max_examples=60, deadline=None, print_blob=True)
@given(data=st.data())
def test_encode_decode_round_trip_every_opcode(op: str, data: st.DataObject) -> None:
    ins = data.draw(instructions(op))
    word = isa.encode(ins)
    note(f"{isa.disassemble(ins)} -> {word:#018x}")
    assert 0 <= word < 1 << isa.WORD_BITS
    assert word >> isa.OPCODE_LSB == BY_NAME[op].code
    assert isa.decode(word) == ins
    # And back again: the decoded instruction encodes to the same word.
    back = isa.decode(word)
    assert back is not None and isa.encode(back) == word


@settings(max_examples=300, deadline=None, print_blob=True)
@given(ins=instructions())
def test_fields_do_not_overlap(ins: Instr) -> None:
    """Each field occupies exactly its bits: setting one field changes no other."""
    spec = BY_NAME[ins.op]
    for f in spec.fields:
        for v in {f.lo, f.hi, 0}:
            vals = dict(ins.args)
            vals[f.name] = v
            other = isa.decode(isa.encode(isa.make(ins.op, **vals)))
            assert other is not None
            assert dict(other.args) == vals, (isa.disassemble(ins), f.name, v)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(ins=instructions())
def test_unused_bits_are_zero(ins: Instr) -> None:
    spec = BY_NAME[ins.op]
    used = ((1 << isa.OPCODE_BITS) - 1) << isa.OPCODE_LSB
    for f in spec.fields:
        used |= ((1 << f.width) - 1) << f.lsb
    assert isa.encode(ins) & ~used == 0


@pytest.mark.parametrize("code", UNUSED_CODES)
def test_unknown_opcode_decodes_to_none(code: int) -> None:
    assert isa.decode(code << isa.OPCODE_LSB) is None
    assert isa.decode((code << isa.OPCODE_LSB) | 0x1234_5678_9AB) is None


def test_decode_ignores_bits_outside_fields() -> None:
    """A word with garbage in the unused bits still decodes (the RTL does the same)."""
    assert isa.decode((BY_NAME["NOP"].code << isa.OPCODE_LSB) | 0xFFFF) == isa.make("NOP")


def test_signed_fields_sign_extend() -> None:
    ins = isa.make("ACC", src=int(Src.CODE), mul=-128, sh=15, addr=7, lanes=3)
    back = isa.decode(isa.encode(ins))
    assert back is not None and back["mul"] == -128
    ins = isa.make("ACT", k=3, oscale=-4, obias=3, tbl=1, dst=2, lanes=1)
    back = isa.decode(isa.encode(ins))
    assert back is not None and (back["oscale"], back["obias"]) == (-4, 3)


def test_bytes_round_trip() -> None:
    words = [isa.encode(isa.make("READ", xbar=255, row_off=1023, col=2047, lanes=2047)),
             isa.encode(isa.make("HALT")), 0, (1 << 64) - 1]
    data = isa.to_bytes(words)
    assert len(data) == 8 * len(words)
    assert isa.from_bytes(data) == words
    assert data[8:16] == (BY_NAME["HALT"].code << isa.OPCODE_LSB).to_bytes(8, "little")
    with pytest.raises(EncodeError, match="multiple of 8"):
        isa.from_bytes(data[:-1])


# ----------------------------------------------------------- field ranges


def _fields() -> list[tuple[str, str]]:
    return [(op.name, f.name) for op in OPS for f in op.fields]


@pytest.mark.parametrize(("op", "name"), _fields())
def test_field_range_errors(op: str, name: str) -> None:
    f = BY_NAME[op].field(name)
    assert isa.make(op, **{name: f.lo})[name] == f.lo
    assert isa.make(op, **{name: f.hi})[name] == f.hi
    for bad in (f.lo - 1, f.hi + 1):
        with pytest.raises(EncodeError, match=rf"{op}\.{name} = {bad} outside"):
            isa.make(op, **{name: bad})
        # An Instr built by hand is checked again by the encoder.
        args = tuple((g.name, bad if g.name == name else 0) for g in BY_NAME[op].fields)
        with pytest.raises(EncodeError, match=rf"{op}\.{name}"):
            isa.encode(Instr(op, args))


def test_make_rejects_unknown_op_and_field() -> None:
    with pytest.raises(EncodeError, match="unknown opcode FOO"):
        isa.make("FOO")
    with pytest.raises(EncodeError, match="unknown field"):
        isa.make("READ", colum=3)
    with pytest.raises(EncodeError, match="unknown field"):
        isa.make("HALT", lanes=1)


# ---------------------------------------------------------------- text


@settings(max_examples=400, deadline=None, print_blob=True)
@given(ins=instructions())
def test_text_round_trip(ins: Instr) -> None:
    text = isa.disassemble(ins)
    note(text)
    assert isa.assemble(text) == [ins]
    assert isa.assemble_line(text) == ins


def test_assembler_syntax() -> None:
    text = """
        # a comment line
        nop
        READ xbar=1 lanes=0x10 adc=2 ; trailing comment
        ACC src=2 mul=-3 sh=1 addr=5 lanes=4   # another
        HALT
    """
    prog = isa.assemble(text)
    assert [i.op for i in prog] == ["NOP", "READ", "ACC", "HALT"]
    assert prog[1]["lanes"] == 16 and prog[1]["adc"] == 2 and prog[1]["col"] == 0
    assert prog[2]["mul"] == -3
    assert isa.assemble_line("   # only a comment") is None
    assert isa.assemble("") == []


@pytest.mark.parametrize(("bad_line", "message"), [
    ("FROB x=1", "unknown opcode 'FROB'"),
    ("READ xbar", "bad operand 'xbar'"),
    ("READ xbar=abc", "bad operand 'xbar=abc'"),
    ("READ xbar=1 xbar=2", "operand 'xbar' given twice"),
    ("READ xbar=256", r"READ.xbar = 256 outside \[0, 255\]"),
    ("ACC mul=128", r"ACC.mul = 128 outside \[-128, 127\]"),
    ("LDIN lanes=-1", r"LDIN.lanes = -1 outside"),
    ("HALT lanes=1", "unknown field"),
])
def test_assembler_errors_name_the_line(bad_line: str, message: str) -> None:
    text = "NOP\n# comment\n\nHALT\n" + bad_line + "\nNOP\n"
    with pytest.raises(EncodeError, match=rf"^line 5: .*{message}"):
        isa.assemble(text)


# ---------------------------------------------------------------- cost


@dataclass(frozen=True)
class Timing:
    t_write: int
    t_read: int
    t_adc: int
    adcs_per_xbar: int
    vec_width: int


TIMINGS = [Timing(100, 2, 1, 256, 8), Timing(37, 5, 3, 7, 4), Timing(1, 1, 1, 1, 1)]


def expected_cost(ins: Instr, t: Timing) -> int:
    """The documented formulas, written out per opcode."""
    n = ins.get("lanes")
    vec = 1 + -(-n // t.vec_width)
    return {
        "NOP": 1, "HALT": 1, "INCLR": 1, "ACLR": 1, "LOOP": 1,
        "PROG": t.t_write,
        "READ": t.t_read + t.t_adc * -(-n // t.adcs_per_xbar),
        "ACC": 1 if ins.get("src") != Src.DMEM else vec,
        "CMAC": 1 + -(-ins.get("n") // t.vec_width) + n,
        "LDIN": vec, "STA": vec, "ACT": vec, "VCOPY": vec, "VMAX": vec,
    }[ins.op]


@pytest.mark.parametrize("timing", TIMINGS, ids=lambda t: f"w{t.t_write}r{t.t_read}a{t.t_adc}"
                         f"x{t.adcs_per_xbar}v{t.vec_width}")
def test_cost_by_hand(timing: Timing) -> None:
    t = timing
    mk = isa.make
    assert isa.cost(mk("NOP"), t) == 1
    assert isa.cost(mk("HALT"), t) == 1
    assert isa.cost(mk("INCLR"), t) == 1
    assert isa.cost(mk("ACLR"), t) == 1
    assert isa.cost(mk("PROG", xbar=3, row=9, wsrc=11), t) == t.t_write
    for n in (1, 7, 8, 9, 16, 256, 2047):
        conv = math.ceil(n / t.adcs_per_xbar)
        assert isa.cost(mk("READ", lanes=n, sense=1), t) == t.t_read + t.t_adc * conv
        vec = 1 + math.ceil(n / t.vec_width)
        assert isa.cost(mk("LDIN", lanes=n), t) == vec
        assert isa.cost(mk("STA", lanes=n), t) == vec
        assert isa.cost(mk("ACT", k=1, lanes=n), t) == vec
        assert isa.cost(mk("VCOPY", lanes=n), t) == vec
        assert isa.cost(mk("VMAX", lanes=n), t) == vec
        assert isa.cost(mk("ACC", src=int(Src.CODE), lanes=n), t) == 1
        assert isa.cost(mk("ACC", src=int(Src.NDRV), lanes=n), t) == 1
        assert isa.cost(mk("ACC", src=int(Src.DMEM), lanes=n), t) == vec


def test_cost_examples_with_default_timing() -> None:
    t = TIMINGS[0]  # t_write 100, t_read 2, t_adc 1, one ADC per column, vec_width 8
    assert isa.cost(isa.make("READ", lanes=16), t) == 3
    assert isa.cost(isa.make("LDIN", lanes=9), t) == 3
    assert isa.cost(isa.make("STA", lanes=8), t) == 2
    assert isa.cost(isa.make("ACC", src=int(Src.DMEM), lanes=17), t) == 4
    shared = Timing(100, 2, 1, 4, 8)  # 4 ADCs shared by the columns
    assert isa.cost(isa.make("READ", lanes=16), shared) == 2 + 4
    assert isa.cost(isa.make("READ", lanes=17), shared) == 2 + 5


@settings(max_examples=300, deadline=None, print_blob=True)
@given(ins=instructions(), t=st.sampled_from(TIMINGS))
def test_cost_matches_formula_for_random_instructions(ins: Instr, t: Timing) -> None:
    assert isa.cost(ins, t) == expected_cost(ins, t)
    assert isa.cost(ins, t) >= 1

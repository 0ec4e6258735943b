"""The self-checking replay testbench of a vector set, in plain Verilog-2001.

The testbench is built as a pyverilog AST (``pyverilog.vparser.ast`` nodes) and
printed by pyverilog's ``ASTCodeGenerator``; :func:`parse_verilog2001` parses
the text back. It instantiates ``cim_top`` with the vector set's parameters and
acts as the host of ``docs/rtl.md``: AXI4-Lite write/read tasks that check every
response, ``$readmemh`` of each vector's memory images into testbench arrays,
the load path (program, weights, data, ADC tables, lengths), start, wait for
``irq_o`` with a timeout of ``2 * expected CYCLES + 1000`` cycles, then a check
of every status register and every expected output word. One line per vector:

    PASS <vector>: <runs> run(s), <words> word(s) checked
    FAIL <vector>: run <r> output word <i> (DMEM[<a>]): got 0x<g> expected 0x<e> (<n> mismatch(es))
    FAIL <vector>: run <r> register <NAME>: got 0x<g> expected 0x<e> (<n> mismatch(es))

then ``REPLAY SUMMARY: <n> vectors, <p> passed, <f> failed`` and ``REPLAY
RESULT: PASSED`` (``$finish``) or ``REPLAY RESULT: FAILED`` (``$stop``, which
exits non-zero under Verilator ``--binary`` and Icarus ``vvp -N``).

Everything used is in IEEE 1364-2001: tasks with ``input`` arguments only
(results in module registers), ``$readmemh``, ``$value$plusargs``, ``$fopen``
with a mode, ``$fdisplay``; no ``logic``, no ``always_ff``, no ``int``, no
``+:`` part-selects. Paths in the testbench are relative to the vector-set
folder: run the simulator there.

pyverilog's own grammar lacks one Verilog-2001 production, the task-enable
statement (``name(args);``, IEEE 1364-2001 section 10.2.2): its parser has the
rule commented out ("fix me"), and its code generator has no ``TaskCall``
visitor. :class:`TbParser` adds that one rule (with the same leading
``delays`` as pyverilog's assignments, so that no existing parse changes) and
:class:`TbCodeGenerator` the visitor.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyverilog.vparser.ast as A  # noqa: N812 - the AST node namespace
from ply import yacc
from pyverilog.ast_code_generator.codegen import ASTCodeGenerator
from pyverilog.vparser.parser import VerilogParser

from ..hw.rtl_sim import (
    CSR,
    WIN_ADC_REC,
    WIN_ADC_THR,
    WIN_CSR,
    WIN_DMEM,
    WIN_PROG,
    WIN_WMEM,
    RtlParams,
)

#: Registers checked after every run, in the order of a run's ``regs.hex`` file.
REGS: tuple[str, ...] = ("STATUS", "ERROR", "FAULT_PC", "PC", "CYCLES_LO", "CYCLES_HI",
                         "INSTRET", "READS", "PROGS", "IRQ_STATUS")
NAME_CHARS = 64  # vector names: at most this many characters
CLOCK_HALF = 5  # time units per clock half period
TIMEOUT_FACTOR, TIMEOUT_EXTRA = 2, 1000  # irq timeout = 2 * expected cycles + 1000


@dataclass
class TbRun:
    entry: int
    regs_file: str
    in_file: str | None = None  # host input words of all ranges, concatenated
    in_ranges: list[tuple[int, int]] = field(default_factory=list)  # (DMEM addr, words)
    out_file: str | None = None  # expected words of all read ranges, concatenated
    out_ranges: list[tuple[int, int]] = field(default_factory=list)  # (DMEM addr, words)
    expected_cycles: int = 0  # for the watchdog's budget only (the check reads regs_file)


@dataclass
class TbVector:
    name: str
    prog: tuple[str, int]  # (file, words)
    wmem: tuple[str, int]  # (file, rows)
    dmem: tuple[str, int]  # (file, words)
    adc_thr: tuple[str, int]  # (file, tables)
    adc_rec: tuple[str, int]
    runs: list[TbRun]


# ------------------------------------------------------------------ AST helpers


def _id(name: str) -> A.Identifier:
    return A.Identifier(name)


def _int(v: int, width: int | None = None) -> A.IntConst:
    if width is None:
        return A.IntConst(str(int(v)))
    return A.IntConst(f"{width}'h{int(v) & ((1 << width) - 1):x}")


def _ex(v: A.Node | str | int) -> A.Node:
    if isinstance(v, str):
        return _id(v)
    if isinstance(v, int):
        return _int(v)
    return v


def _set(lhs: A.Node | str, rhs: A.Node | str | int) -> A.BlockingSubstitution:
    return A.BlockingSubstitution(A.Lvalue(_ex(lhs)), A.Rvalue(_ex(rhs)))


def _call(task: str, *args: A.Node | str | int) -> A.SingleStatement:
    return A.SingleStatement(A.TaskCall(_id(task), tuple(_ex(a) for a in args)))


def _sys(name: str, *args: A.Node | str | int) -> A.SingleStatement:
    return A.SingleStatement(A.SystemCall(name, tuple(_ex(a) for a in args)))


def _str(text: str) -> A.StringConst:
    return A.StringConst(text)


def _block(*stmts: A.Node) -> A.Block:
    return A.Block(list(stmts))


def _if(cond: A.Node, then: A.Node, other: A.Node | None = None) -> A.IfStatement:
    return A.IfStatement(cond, then, other)


def _while(cond: A.Node, body: A.Node) -> A.WhileStatement:
    return A.WhileStatement(cond, body)


def _for(var: str, hi: A.Node | str | int, body: A.Node) -> A.ForStatement:
    return A.ForStatement(_set(var, 0), A.LessThan(_id(var), _ex(hi)),
                          _set(var, A.Plus(_id(var), _int(1))), body)


def _negedge() -> A.EventStatement:
    return A.EventStatement(A.SensList([A.Sens(_id("clk"), "negedge")]))


def _at(arr: str, idx: A.Node | str | int) -> A.Pointer:
    return A.Pointer(_id(arr), _ex(idx))


def _add(*terms: A.Node | str | int) -> A.Node:
    out = _ex(terms[0])
    for t in terms[1:]:
        out = A.Plus(out, _ex(t))
    return out


def _mul(a: A.Node | str | int, b: A.Node | str | int) -> A.Times:
    return A.Times(_ex(a), _ex(b))


def _reg(name: str, width: int = 1, depth: int | None = None) -> A.Decl:
    w = A.Width(_int(width - 1), _int(0)) if width > 1 else None
    dims = A.Dimensions([A.Length(_int(0), _int(depth - 1))]) if depth is not None else None
    return A.Decl([A.Reg(name, width=w, dimensions=dims)])


def _wire(name: str, width: int = 1) -> A.Decl:
    w = A.Width(_int(width - 1), _int(0)) if width > 1 else None
    return A.Decl([A.Wire(name, width=w)])


def _integer(*names: str) -> list[A.Decl]:
    return [A.Decl([A.Integer(n)]) for n in names]


def _string_reg(name: str, chars: int) -> A.Decl:
    # Verilog-2001 strings: 8 bits per character, [8*n:1] by convention.
    return A.Decl([A.Reg(name, width=A.Width(_int(8 * chars), _int(1)))])


def _task(name: str, inputs: Sequence[tuple[str, int]], *body: A.Node) -> A.Task:
    decls: list[A.Node] = []
    for arg, width in inputs:
        w = A.Width(_int(width - 1), _int(0)) if width > 1 else None
        decls.append(A.Decl([A.Input(arg, width=w)]))
    return A.Task(name, [*decls, _block(*body)])


def _eq(a: A.Node | str | int, b: A.Node | str | int) -> A.Eq:
    return A.Eq(_ex(a), _ex(b))


def _ne(a: A.Node | str | int, b: A.Node | str | int) -> A.NotEq:
    return A.NotEq(_ex(a), _ex(b))


def _not(a: A.Node | str) -> A.Ulnot:
    return A.Ulnot(_ex(a))


# ------------------------------------------------------------ code generation


class TbCodeGenerator(ASTCodeGenerator):
    """pyverilog's code generator plus the task-enable statement it lacks."""

    def visit_TaskCall(self, node: A.TaskCall) -> str:  # noqa: N802 - pyverilog's visitor name
        args = ", ".join(self.visit(a) for a in node.args)
        return f"{self.visit(node.name)}({args})"


class TbParser(VerilogParser):
    """pyverilog's Verilog parser plus the task-enable statement (IEEE 1364-2001
    10.2.2), which pyverilog leaves commented out. Tables go to a temporary
    folder and ply's grammar chatter is silenced."""

    start = "source_text"

    def __init__(self, outputdir: str) -> None:
        from pyverilog.vparser.lexer import VerilogLexer

        self.lexer = VerilogLexer(error_func=self._lexer_error_func)
        self.lexer.build()
        self.tokens = self.lexer.tokens
        self.parser = yacc.yacc(module=self, method="LALR", outputdir=outputdir, debug=False,
                                write_tables=False, errorlog=yacc.NullLogger())

    def p_single_statement_taskcall(self, p: yacc.YaccProduction) -> None:
        "single_statement : delays functioncall SEMICOLON"
        call = p[2]
        p[0] = A.SingleStatement(A.TaskCall(call.name, call.args, lineno=p.lineno(2)),
                                 lineno=p.lineno(2))
        p.set_lineno(0, p.lineno(2))


def parse_verilog2001(text: str) -> A.Source:
    """Parse Verilog-2001 text with pyverilog's grammar (+ task enables); raises
    ``pyverilog.vparser.parser.ParseError`` on anything it does not accept."""
    with tempfile.TemporaryDirectory() as d:
        return TbParser(d).parse(text)


def codegen(ast: A.Node) -> str:
    return TbCodeGenerator().visit(ast)


# ----------------------------------------------------------------- testbench


def _axi_tasks() -> list[A.Node]:
    """Host side of AXI4-Lite: signals change at the falling edge, the DUT samples
    at the rising edge, so a handshake seen at a falling edge happens at the next
    rising one."""
    write = _task(
        "axi_write", [("addr", 32), ("data", 32)],
        _negedge(),
        _set("awaddr", "addr"), _set("awvalid", _int(1, 1)),
        _set("wdata", "data"), _set("wstrb", _int(15, 4)), _set("wvalid", _int(1, 1)),
        _set("aw_done", _int(0, 1)), _set("w_done", _int(0, 1)),
        _while(_not(A.Land(_id("aw_done"), _id("w_done"))), _block(
            _set("aw_hs", A.Land(_id("awvalid"), _id("awready"))),
            _set("w_hs", A.Land(_id("wvalid"), _id("wready"))),
            _negedge(),
            _if(_id("aw_hs"), _block(_set("awvalid", _int(0, 1)), _set("aw_done", _int(1, 1)))),
            _if(_id("w_hs"), _block(_set("wvalid", _int(0, 1)), _set("w_done", _int(1, 1)))),
        )),
        _set("bready", _int(1, 1)),
        _while(_not("bvalid"), _negedge()),
        _set("last_resp", "bresp"),
        _negedge(),
        _set("bready", _int(0, 1)),
        _set("n_axi", A.Plus(_id("n_axi"), _int(1))),
        _if(_ne("last_resp", _int(0, 2)), _call("note_fail", 3, "cur_run", 0, "addr",
                                                "last_resp", 0)),
    )
    read = _task(
        "axi_read", [("addr", 32)],
        _negedge(),
        _set("araddr", "addr"), _set("arvalid", _int(1, 1)), _set("rready", _int(1, 1)),
        _set("ar_done", _int(0, 1)),
        _while(_not("ar_done"), _block(
            _set("ar_hs", A.Land(_id("arvalid"), _id("arready"))),
            _negedge(),
            _if(_id("ar_hs"), _block(_set("arvalid", _int(0, 1)), _set("ar_done", _int(1, 1)))),
        )),
        _while(_not("rvalid"), _negedge()),
        _set("last_rdata", "rdata"), _set("last_resp", "rresp"),
        _negedge(),
        _set("rready", _int(0, 1)),
        _set("n_axi", A.Plus(_id("n_axi"), _int(1))),
        _if(_ne("last_resp", _int(0, 2)), _call("note_fail", 4, "cur_run", 0, "addr",
                                                "last_resp", 0)),
    )
    return [write, read]


def _check_tasks() -> list[A.Node]:
    # note_fail(kind, run, idx, addr, got, exp): kind 0 output word, 1 register
    # (name in fail_reg), 2 timeout, 3 AXI write response, 4 AXI read response.
    note = _task(
        "note_fail", [("kind", 32), ("run", 32), ("idx", 32), ("addr", 32), ("got", 32),
                      ("exp", 32)],
        _if(_eq("vec_bad", 0), _block(
            _set("first_kind", "kind"), _set("first_run", "run"), _set("first_idx", "idx"),
            _set("first_addr", "addr"), _set("first_got", "got"), _set("first_exp", "exp"),
            _set("first_reg", "fail_reg"),
        )),
        _set("vec_bad", A.Plus(_id("vec_bad"), _int(1))),
    )
    check_reg = _task(
        "check_reg", [("name", 8 * 16), ("idx", 32)],
        _set("fail_reg", "name"),
        _set("n_words", A.Plus(_id("n_words"), _int(1))),
        _if(_ne("last_rdata", _at("exp_regs", "idx")),
            _call("note_fail", 1, "cur_run", "idx", 0, "last_rdata", _at("exp_regs", "idx"))),
        _if(_ne("dump_fd", 0),
            _sys("fdisplay", "dump_fd", _str("%0s %0d reg %0s %08h"), "vec_name", "cur_run",
                 "name", "last_rdata")),
    )
    return [note, check_reg]


def _load_tasks(p: RtlParams) -> list[A.Node]:
    chunks = -(-p.COLS // 32)
    rows2 = 2 * p.ROWS
    prog = _task(
        "load_prog", [("n", 32)],
        _for("li", "n", _block(
            _call("axi_write", _add(_int(WIN_PROG, 32), _mul(8, "li")),
                  A.Partselect(_at("prog_img", "li"), _int(31), _int(0))),
            _call("axi_write", _add(_int(WIN_PROG, 32), _mul(8, "li"), 4),
                  A.Partselect(_at("prog_img", "li"), _int(63), _int(32))),
        )),
    )
    wmem = _task(
        "load_wmem", [("n", 32)],
        _for("li", "n", _for("lj", chunks, _block(
            _set("chunk", A.Srl(_at("wmem_img", "li"), _mul(32, "lj"))),
            _call("axi_write", _add(_int(WIN_WMEM, 32),
                                    _mul(4, _add(_mul("li", p.wmem_stride), "lj"))), "chunk"),
        ))),
    )
    dmem = _task(
        "load_dmem", [("n", 32)],
        _for("li", "n", _call("axi_write", _add(_int(WIN_DMEM, 32), _mul(4, "li")),
                              _at("dmem_img", "li"))),
    )
    adc = _task(
        "load_adc", [("n", 32)],
        _for("li", "n", _block(
            _for("lj", rows2, _call(
                "axi_write", _add(_int(WIN_ADC_THR, 32), _mul(4, _add(_mul("li", p.thr_stride),
                                                                     "lj"))),
                _at("thr_img", _add(_mul("li", rows2), "lj")))),
            _for("lj", rows2 + 1, _call(
                "axi_write", _add(_int(WIN_ADC_REC, 32), _mul(4, _add(_mul("li", p.rec_stride),
                                                                     "lj"))),
                _at("rec_img", _add(_mul("li", rows2 + 1), "lj")))),
        )),
    )
    lengths = _task(
        "set_lengths", [("np", 32), ("nw", 32), ("na", 32)],
        _call("axi_write", _int(WIN_CSR + CSR["PROG_LEN"], 32), "np"),
        _call("axi_write", _int(WIN_CSR + CSR["WMEM_LEN"], 32), "nw"),
        _call("axi_write", _int(WIN_CSR + CSR["ADC_LEN"], 32), "na"),
        _call("axi_write", _int(WIN_CSR + CSR["IRQ_ENABLE"], 32), 1),
    )
    inp = _task(
        "write_input", [("off", 32), ("addr", 32), ("n", 32)],
        _if(_not("vec_abort"), _for("li", "n", _call(
            "axi_write", _add(_int(WIN_DMEM, 32), _mul(4, _add("addr", "li"))),
            _at("in_img", _add("off", "li"))))),
    )
    return [prog, wmem, dmem, adc, lengths, inp]


def _run_tasks() -> list[A.Node]:
    reset = _task(
        "reset_dut", [("cycles", 32)],
        _negedge(), _set("rst_n", _int(0, 1)),
        _for("wi", "cycles", _negedge()),
        _set("rst_n", _int(1, 1)),
        _negedge(), _negedge(),
    )
    regs = [s for k, name in enumerate(REGS) for s in (
        _call("axi_read", _int(WIN_CSR + CSR[name], 32)),
        _call("check_reg", _str(name), k))]
    limit = _add(_mul(TIMEOUT_FACTOR, A.Concat([_at("exp_regs", 5), _at("exp_regs", 4)])),
                 TIMEOUT_EXTRA)
    run = _task(
        "start_run", [("run", 32), ("entry", 32)],
        _set("cur_run", "run"),
        _if(_not("vec_abort"), _block(
            _set("n_runs", A.Plus(_id("n_runs"), _int(1))),
            _call("axi_write", _int(WIN_CSR + CSR["IRQ_STATUS"], 32), 1),
            _call("axi_write", _int(WIN_CSR + CSR["ENTRY"], 32), "entry"),
            _call("axi_write", _int(WIN_CSR + CSR["CTRL"], 32), 1),
            _set("limit", limit),
            _set("waited", _int(0, 64)),
            _while(A.Land(_not("irq"), A.LessThan(_id("waited"), _id("limit"))), _block(
                _negedge(), _set("waited", A.Plus(_id("waited"), _int(1, 64))))),
            _if(_not("irq"), _block(
                _set("fail_reg", _str("CYCLES_LO")),
                _call("note_fail", 2, "run", 4, 0, A.Partselect(_id("waited"), _int(31), _int(0)),
                      _at("exp_regs", 4)),
                _set("vec_abort", _int(1, 1)),
                _call("reset_dut", 8),
            ), _block(*regs)),
        )),
    )
    out = _task(
        "check_out", [("off", 32), ("addr", 32), ("n", 32)],
        _if(_not("vec_abort"), _for("ci", "n", _block(
            _call("axi_read", _add(_int(WIN_DMEM, 32), _mul(4, _add("addr", "ci")))),
            _set("n_words", A.Plus(_id("n_words"), _int(1))),
            _if(_ne("last_rdata", _at("exp_out", _add("off", "ci"))),
                _call("note_fail", 0, "cur_run", _add("off", "ci"), _add("addr", "ci"),
                      "last_rdata", _at("exp_out", _add("off", "ci")))),
            _if(_ne("dump_fd", 0),
                _sys("fdisplay", "dump_fd", _str("%0s %0d out %0d %08h"), "vec_name", "cur_run",
                     _add("off", "ci"), "last_rdata")),
        ))),
    )
    begin = _task(
        "begin_vector", [("idx", 32)],
        _set("vec_bad", 0), _set("vec_abort", _int(0, 1)),
        _set("cur_run", 0), _set("n_runs", 0), _set("n_words", 0),
        _set("fail_reg", _str("")),
    )
    fail_word = _sys(
        "display", _str("FAIL %0s: run %0d output word %0d (DMEM[%0d]): got 0x%08h expected "
                        "0x%08h (%0d mismatch(es))"),
        "vec_name", "first_run", "first_idx", "first_addr", "first_got", "first_exp", "vec_bad")
    fail_reg = _sys(
        "display", _str("FAIL %0s: run %0d register %0s: got 0x%08h expected 0x%08h "
                        "(%0d mismatch(es))"),
        "vec_name", "first_run", "first_reg", "first_got", "first_exp", "vec_bad")
    fail_timeout = _sys(
        "display", _str("FAIL %0s: run %0d register CYCLES_LO: timeout, no irq after %0d "
                        "cycles, expected 0x%08h cycles"),
        "vec_name", "first_run", "first_got", "first_exp")
    fail_axi = _sys(
        "display", _str("FAIL %0s: run %0d AXI response %0d at address 0x%08h (expected 0 OKAY)"),
        "vec_name", "first_run", "first_got", "first_addr")
    end = _task(
        "end_vector", [("idx", 32)],
        _if(_eq("vec_bad", 0), _block(
            _set("n_pass", A.Plus(_id("n_pass"), _int(1))),
            _sys("display", _str("PASS %0s: %0d run(s), %0d word(s) checked"), "vec_name",
                 "n_runs", "n_words"),
        ), _block(
            _set("n_fail", A.Plus(_id("n_fail"), _int(1))),
            _if(_eq("first_kind", 0), fail_word,
                _if(_eq("first_kind", 1), fail_reg,
                    _if(_eq("first_kind", 2), fail_timeout, fail_axi))),
        )),
    )
    return [reset, run, out, begin, end]


def _check_name(name: str) -> None:
    if len(name) > NAME_CHARS or not name.isascii() or not name.isprintable() or any(
            c in name for c in '"\\%'):
        raise ValueError(f"vector name {name!r}: at most {NAME_CHARS} plain ASCII characters")


def _case(comp: str, branches: Sequence[tuple[int, list[A.Node]]]) -> A.CaseStatement:
    return A.CaseStatement(_id(comp), [A.Case([_int(k)], _block(*body)) for k, body in branches])


def _select_tasks(vectors: Sequence[TbVector]) -> list[A.Node]:
    """select_vector(v): name, sizes and memory images of vector v;
    select_run(v, r): entry, expected registers, inputs and expected outputs.
    Only these two tasks grow with the set; they have no timing controls."""
    vec_branches = []
    run_branches = []
    for k, v in enumerate(vectors):
        _check_name(v.name)
        body: list[A.Node] = [_set("vec_name", _str(v.name)), _set("v_runs", len(v.runs)),
                              _set("v_prog", v.prog[1]), _set("v_wmem", v.wmem[1]),
                              _set("v_dmem", v.dmem[1]), _set("v_adc", v.adc_thr[1])]
        for (path, n), arr in ((v.prog, "prog_img"), (v.wmem, "wmem_img"),
                               (v.dmem, "dmem_img"), (v.adc_thr, "thr_img"),
                               (v.adc_rec, "rec_img")):
            if n:
                body.append(_sys("readmemh", _str(path), arr))
        vec_branches.append((k, body))
        runs = []
        for r, run in enumerate(v.runs):
            rb: list[A.Node] = [_set("r_entry", _int(run.entry, 32)),
                                _sys("readmemh", _str(run.regs_file), "exp_regs"),
                                _set("r_nin", len(run.in_ranges)),
                                _set("r_nout", len(run.out_ranges))]
            if run.in_ranges:
                assert run.in_file is not None
                rb.append(_sys("readmemh", _str(run.in_file), "in_img"))
            if run.out_ranges:
                assert run.out_file is not None
                rb.append(_sys("readmemh", _str(run.out_file), "exp_out"))
            for q, (addr, n) in enumerate(run.in_ranges):
                rb += [_set(_at("in_addr", q), _int(addr, 32)), _set(_at("in_len", q), _int(n, 32))]
            for q, (addr, n) in enumerate(run.out_ranges):
                rb += [_set(_at("out_addr", q), _int(addr, 32)),
                       _set(_at("out_len", q), _int(n, 32))]
            runs.append((r, rb))
        run_branches.append((k, [_case("r", runs)]))
    return [_task("select_vector", [("v", 32)], _case("v", vec_branches)),
            _task("select_run", [("v", 32), ("r", 32)], _case("v", run_branches))]


def watchdog_cycles(p: RtlParams, vectors: Sequence[TbVector]) -> int:
    """Clock cycles after which the testbench gives up (see ``testbench_ast``)."""
    chunks = -(-p.COLS // 32)
    total = 10_000
    for v in vectors:
        words = (2 * v.prog[1] + chunks * v.wmem[1] + v.dmem[1]
                 + v.adc_thr[1] * (4 * p.ROWS + 1) + 4)
        for r in v.runs:
            words += (sum(n for _, n in r.in_ranges) + sum(n for _, n in r.out_ranges)
                      + len(REGS) + 3)
            total += TIMEOUT_FACTOR * r.expected_cycles + TIMEOUT_EXTRA
        total += 16 * words + 1000
    return total


def testbench_ast(module: str, params: RtlParams, vectors: Sequence[TbVector]) -> A.Source:
    """The replay testbench of one DUT parameter set as a pyverilog AST."""
    p = params
    chunks = -(-p.COLS // 32)

    def most(values: Sequence[int]) -> int:
        return max([1, *values])

    n_prog = most([v.prog[1] for v in vectors])
    n_wmem = most([v.wmem[1] for v in vectors])
    n_dmem = most([v.dmem[1] for v in vectors])
    n_adc = most([v.adc_thr[1] for v in vectors])
    n_in = most([sum(n for _, n in r.in_ranges) for v in vectors for r in v.runs])
    n_out = most([sum(n for _, n in r.out_ranges) for v in vectors for r in v.runs])
    k_in = most([len(r.in_ranges) for v in vectors for r in v.runs])
    k_out = most([len(r.out_ranges) for v in vectors for r in v.runs])

    items: list[A.Node] = [
        _reg("clk"), _reg("rst_n"),
        _reg("awaddr", 32), _reg("awvalid"), _reg("wdata", 32), _reg("wstrb", 4), _reg("wvalid"),
        _reg("bready"), _reg("araddr", 32), _reg("arvalid"), _reg("rready"),
        _wire("awready"), _wire("wready"), _wire("bresp", 2), _wire("bvalid"), _wire("arready"),
        _wire("rdata", 32), _wire("rresp", 2), _wire("rvalid"), _wire("irq"), _wire("busy"),
        _reg("aw_hs"), _reg("w_hs"), _reg("aw_done"), _reg("w_done"), _reg("ar_hs"),
        _reg("ar_done"), _reg("last_resp", 2), _reg("last_rdata", 32), _reg("chunk", 32),
        _reg("limit", 64), _reg("waited", 64), _reg("vec_abort"),
        *_integer("li", "lj", "ci", "wi", "n_pass", "n_fail", "n_vectors", "vec_bad", "cur_run",
                 "n_runs", "n_words", "n_axi", "first_kind", "first_run", "first_idx",
                 "first_addr", "dump_fd"),
        _reg("first_got", 32), _reg("first_exp", 32),
        _string_reg("vec_name", NAME_CHARS), _string_reg("fail_reg", 16),
        _string_reg("first_reg", 16), _string_reg("dump_path", 256),
        _reg("prog_img", 64, n_prog), _reg("wmem_img", 32 * chunks, n_wmem),
        _reg("dmem_img", 32, n_dmem), _reg("thr_img", 32, n_adc * 2 * p.ROWS),
        _reg("rec_img", 32, n_adc * (2 * p.ROWS + 1)), _reg("in_img", 32, n_in),
        _reg("exp_out", 32, n_out), _reg("exp_regs", 32, len(REGS)),
        *_integer("vi", "ri", "ki", "koff", "v_runs", "v_prog", "v_wmem", "v_dmem", "v_adc",
                  "r_nin", "r_nout"),
        _reg("r_entry", 32), _reg("in_addr", 32, k_in), _reg("in_len", 32, k_in),
        _reg("out_addr", 32, k_out), _reg("out_len", 32, k_out),
    ]
    params_args = [A.ParamArg(k, _int(v)) for k, v in
                   (("ROWS", p.ROWS), ("COLS", p.COLS), ("NUM_XBARS", p.NUM_XBARS),
                    ("PROG_WORDS", p.PROG_WORDS), ("DMEM_WORDS", p.DMEM_WORDS),
                    ("WMEM_WORDS", p.WMEM_WORDS), ("ADC_TABLES", p.ADC_TABLES),
                    ("VEC_WIDTH", p.VEC_WIDTH), ("ADCS", p.ADCS), ("T_READ", p.T_READ),
                    ("T_ADC", p.T_ADC), ("T_WRITE", p.T_WRITE), ("HRS_UNITS", p.HRS_UNITS),
                    ("CUR_W", p.CUR_W), ("COEF_BITS", p.COEF_BITS))]
    ports = [A.PortArg(port, _id(sig)) for port, sig in (
        ("clk_i", "clk"), ("rst_ni", "rst_n"),
        ("s_axil_awaddr_i", "awaddr"), ("s_axil_awprot_i", "awprot"),
        ("s_axil_awvalid_i", "awvalid"), ("s_axil_awready_o", "awready"),
        ("s_axil_wdata_i", "wdata"), ("s_axil_wstrb_i", "wstrb"), ("s_axil_wvalid_i", "wvalid"),
        ("s_axil_wready_o", "wready"), ("s_axil_bresp_o", "bresp"),
        ("s_axil_bvalid_o", "bvalid"), ("s_axil_bready_i", "bready"),
        ("s_axil_araddr_i", "araddr"), ("s_axil_arprot_i", "arprot"),
        ("s_axil_arvalid_i", "arvalid"), ("s_axil_arready_o", "arready"),
        ("s_axil_rdata_o", "rdata"), ("s_axil_rresp_o", "rresp"), ("s_axil_rvalid_o", "rvalid"),
        ("s_axil_rready_i", "rready"), ("irq_o", "irq"), ("busy_o", "busy"))]
    items += [_wire("awprot", 3), _wire("arprot", 3),
              A.Assign(A.Lvalue(_id("awprot")), A.Rvalue(_int(0, 3))),
              A.Assign(A.Lvalue(_id("arprot")), A.Rvalue(_int(0, 3))),
              A.InstanceList("cim_top", params_args,
                             [A.Instance("cim_top", "dut", ports, params_args)])]
    items += (_axi_tasks() + _check_tasks() + _load_tasks(p) + _run_tasks()
              + _select_tasks(vectors))
    # Clock: a forever loop of half periods (an "always #5" would not survive
    # pyverilog's AST, which has no delay-only event control for always).
    items.append(A.Initial(_block(
        _set("clk", _int(0, 1)),
        A.ForeverStatement(_block(A.SingleStatement(A.DelayStatement(_int(CLOCK_HALF))),
                                  _set("clk", _not("clk")))))))
    # Watchdog against a hang outside the irq wait (an AXI handshake that never
    # completes): every run's timeout plus 16 cycles per host access, generously.
    kcycles = -(-watchdog_cycles(params, vectors) // 1000)
    items += [*_integer("wd"), A.Initial(_block(
        _for("wd", kcycles, A.SingleStatement(A.DelayStatement(_int(2 * CLOCK_HALF * 1000)))),
        _sys("display", _str("FAIL %0s: watchdog: the replay exceeded %0d000 cycles (a hung "
                             "AXI handshake?)"), "vec_name", kcycles),
        _sys("display", _str("REPLAY SUMMARY: %0d vectors, %0d passed, %0d failed"),
             "n_vectors", "n_pass", A.Minus(_id("n_vectors"), _id("n_pass"))),
        _sys("display", _str("REPLAY RESULT: FAILED")),
        _sys("stop")))]
    main: list[A.Node] = [
        _set("rst_n", _int(0, 1)),
        *(_set(s, _int(0, w)) for s, w in (("awaddr", 32), ("awvalid", 1), ("wdata", 32),
                                           ("wstrb", 4), ("wvalid", 1), ("bready", 1),
                                           ("araddr", 32), ("arvalid", 1), ("rready", 1))),
        _set("n_pass", 0), _set("n_fail", 0), _set("n_vectors", len(vectors)),
        _set("cur_run", 0), _set("vec_bad", 0), _set("dump_fd", 0),
        _if(A.SystemCall("value$plusargs", (_str("CIM_REPLAY_DUMP=%s"), _id("dump_path"))),
            _set("dump_fd", A.SystemCall("fopen", (_id("dump_path"), _str("w"))))),
        _sys("display", _str("REPLAY START: %0d vectors on cim_top"), "n_vectors"),
        _call("reset_dut", 4),
    ]
    runs = _block(
        _call("select_run", "vi", "ri"),
        _set("koff", 0),
        _for("ki", "r_nin", _block(
            _call("write_input", "koff", _at("in_addr", "ki"), _at("in_len", "ki")),
            _set("koff", _add("koff", _at("in_len", "ki"))))),
        _call("start_run", "ri", "r_entry"),
        _set("koff", 0),
        _for("ki", "r_nout", _block(
            _call("check_out", "koff", _at("out_addr", "ki"), _at("out_len", "ki")),
            _set("koff", _add("koff", _at("out_len", "ki"))))),
    )
    main.append(_for("vi", "n_vectors", _block(
        _call("select_vector", "vi"),
        _call("begin_vector", "vi"),
        _if(A.GreaterThan(_id("v_prog"), _int(0)), _call("load_prog", "v_prog")),
        _if(A.GreaterThan(_id("v_wmem"), _int(0)), _call("load_wmem", "v_wmem")),
        _if(A.GreaterThan(_id("v_dmem"), _int(0)), _call("load_dmem", "v_dmem")),
        _if(A.GreaterThan(_id("v_adc"), _int(0)), _call("load_adc", "v_adc")),
        _call("set_lengths", "v_prog", "v_wmem", "v_adc"),
        _for("ri", "v_runs", runs),
        _call("end_vector", "vi"),
    )))
    main += [
        _if(_ne("dump_fd", 0), _sys("fclose", "dump_fd")),
        _sys("display", _str("REPLAY SUMMARY: %0d vectors, %0d passed, %0d failed"),
             "n_vectors", "n_pass", "n_fail"),
        _if(_eq("n_fail", 0), _block(_sys("display", _str("REPLAY RESULT: PASSED")),
                                     _sys("finish")),
            _block(_sys("display", _str("REPLAY RESULT: FAILED")), _sys("stop"))),
    ]
    items.append(A.Initial(_block(*main)))
    mod = A.ModuleDef(module, A.Paramlist([]), A.Portlist([]), items)
    return A.Source("", A.Description([mod]))


def generate(module: str, params: RtlParams, vectors: Sequence[TbVector],
             header: Sequence[str] = ()) -> str:
    """Verilog-2001 text of the replay testbench (header lines become comments)."""
    body = codegen(testbench_ast(module, params, vectors))
    lines = [f"// {h}".rstrip() for h in header]
    lines += [line.rstrip() for line in body.strip("\n").splitlines()]
    return "\n".join(lines) + "\n"

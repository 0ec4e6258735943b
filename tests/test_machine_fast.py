"""The golden machine's prepared execution (blocks, prepared READs, lifted loops)
against its definition (``Machine(fast=False)``: one instruction at a time
through ``_exec``, no lifting), byte for byte.

- Seeded random programs of the RTL tests (cocotb_tests/progs.py): valid and
  invalid words, loops with relative operands, faults, overlapping vector moves,
  32-bit ACC wrap, a chip with variability and stuck cells; several lockstep
  runs with different data; instruction limits that cut blocks and loops;
  read noise.
- Compiled random networks for every mapping, ideal and non-ideal (ADC bits,
  variability, stuck cells, read noise, IR drop, read disturb), batches as lifted loops: every DMEM
  word, every counter, the read charge and what the calibration probe sees.
- Hand-made programs for the corners: ACC lanes cleared lazily then read by
  STA/ACT/ACC, IN with gaps, paired rows that run past the array.
- Seeded sections of the shapes the fast paths take (``section_case``): READ
  chains, drive shadows, epilogues, stacks of like units, each also where it
  must decline (hazards, inexact products, probes).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from netgen import random_network
from test_streaming import tiny_image

from cimgen.compiler import Compiled, compile_network, machine_params
from cimgen.config import MAPPINGS, make_config
from cimgen.run import run_golden
from golden_model import isa, machine_fast, shadow
from golden_model.crossbar import DeviceParams, ideal_adc, sample_device_map, uniform_adc
from golden_model.ir import Network
from golden_model.isa import Src
from golden_model.machine import ChipImage, Machine, RunResult
from golden_model.physics import ReadPhysics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cocotb_tests"))
import progs

BINARY_ONLY = ("BNN_III", "BNN_IV", "BNN_V")
mk = isa.make


def result_tuple(r: RunResult) -> tuple[object, ...]:
    return (r.cycles, r.instructions, int(r.error), r.fault_pc, r.pc, r.cells_written, r.progs,
            r.reads, r.conversions, r.lane_ops, r.dmem_accesses, r.max_cell_writes,
            r.read_charge.tolist())


def machines(img: ChipImage, batch: int, **kw: object) -> list[Machine]:
    """The prepared machine (lifted and not) and the definition, each on its own
    copy of the image's plan cache."""
    out = []
    for fast, lift in ((True, True), (True, False), (False, False)):
        own = dataclasses.replace(img, plan_cache={})
        out.append(Machine(own, batch, fast=fast, lift=lift, **kw))  # type: ignore[arg-type]
    return out


def same_runs(ms: list[Machine], entry: int, what: str, limit: int = 50_000_000) -> None:
    rs = [m.run(entry, limit) for m in ms]
    want = result_tuple(rs[-1])
    for m, r in zip(ms[:-1], rs[:-1], strict=True):
        assert result_tuple(r) == want, f"{what} fast={m.fast} lift={m.lift}"
        np.testing.assert_array_equal(m.dmem, ms[-1].dmem, err_msg=what)
        np.testing.assert_array_equal(m.xbar_bits, ms[-1].xbar_bits, err_msg=what)


@pytest.mark.parametrize("noise", [0.0, 40.0], ids=["no-noise", "read-noise"])
@pytest.mark.parametrize("chunk", range(6))
def test_random_programs_fast_equals_definition(chunk: int, noise: float) -> None:
    p = dataclasses.replace(progs.RANDOM_PARAMS,
                            physics=ReadPhysics(seed=chunk, sigma_units=noise))
    dev = progs.random_devmap(p, 1000 + chunk)
    # With read noise every READ takes the general path (about 0.6 ms each, on every
    # machine): the few programs whose loops run for 10^5 instructions stop at a limit.
    cap = 20_000 if noise else 50_000_000
    for seed in range(chunk * 40, chunk * 40 + 40):
        print("seed", seed)
        gen = progs.ProgramGen(p, seed)
        img, entry = gen.image(dev)
        ms = machines(img, 3)
        rng = np.random.default_rng(seed)
        for m in ms:  # the lockstep runs differ
            m.dmem[1:] += np.arange(1, 3, dtype=np.int32)[:, None]
        what = f"seed {seed} entry {entry}"
        same_runs(ms, entry, what, cap)
        same_runs(ms, entry, what + " second run", cap)  # cells and register state carried
        limit = int(rng.integers(1, 60))
        same_runs(ms, entry, what + f" limit {limit}", limit)


def network_case(mapping: str, seed: int, over: dict[str, object]) -> tuple[Machine, ...]:
    net = random_network(seed, ternary=False if mapping in BINARY_ONLY else None)
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(net.input.values.values), size=(7, *net.input.shape)
                   ).astype(np.int16)
    cfg = make_config(None, {"mapping": mapping, "rows": 24, "cols": 20, "num_xbars": 6,
                             "seed": seed, "batch": 3, **over})
    comp = compile_network(net, cfg)
    ms = machines(comp.image, comp.runs(q.shape[0]))
    seen = probes(ms)
    what = f"random_network({seed}) {mapping} {over}"
    same_runs(ms, comp.setup_entry, what + " setup")
    for m in ms:
        comp.load_inputs(m, q)
    same_runs(ms, comp.infer_entry, what)
    same_runs(ms, comp.infer_entry, what + " again")
    same_probes(seen, what)
    return tuple(ms)


Probed = list[tuple[int, np.ndarray]]


def probes(ms: list[Machine]) -> list[Probed]:
    """A calibration probe on each machine of ``machines``: what it saw, per machine."""
    seen: list[Probed] = [[] for _ in ms]
    for m, s in zip(ms, seen, strict=True):
        m.probe = lambda t, x, s=s: s.append((t, x.copy()))
    return seen


def same_probes(seen: list[Probed], what: str) -> None:
    """The probes of ``machines`` saw what the definition's did. Sequential runs probe
    READ by READ, in order, as the definition does; a lifted loop probes all its
    iterations at once, so there the values per table are compared."""
    assert len(seen[1]) == len(seen[2]), what
    for (t, x), (t2, x2) in zip(seen[1], seen[2], strict=True):
        assert t == t2, what
        np.testing.assert_array_equal(x, x2, err_msg=what)

    def per_table(s: Probed) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for t, x in s:
            out.setdefault(t, []).extend(x.ravel().tolist())
        return {t: sorted(v) for t, v in out.items()}
    assert per_table(seen[0]) == per_table(seen[2]), what


CONFIGS = [
    {},
    {"adc_bits": 3},
    {"sigma_hrs_ua": 2.0, "sigma_lrs_ua": 5.0, "adc_bits": 5},
    {"stuck_lrs_rate": 0.05, "stuck_hrs_rate": 0.05},
    {"sigma_read_ua": 1.5},
    {"num_xbars": 1},  # streamed: PROGs between lifted loops
    # Read physics through lifted loops (noise counters per iteration) and, with
    # read disturb, loops run iteration by iteration.
    {"sigma_read_ua": 1.5, "read_noise": "column", "num_xbars": 1},
    {"wire_ohm": 2.0, "disturb_onset_reads": 20, "disturb_age_reads": 5, "num_xbars": 1},
]


@pytest.mark.parametrize("over", CONFIGS, ids=lambda o: ",".join(o) or "ideal")
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_compiled_networks_fast_equals_definition(mapping: str, over: dict[str, object]
                                                  ) -> None:
    for seed in range(3):
        print("seed", seed)
        network_case(mapping, seed, over)


def test_lazy_acc_lanes_and_wrap() -> None:
    """ACLR clears lazily: a shorter ACC then a longer STA/ACT reads zeros past it;
    sums past 2^31 wrap at STA and ACT; CODE lanes past the last READ read zero."""
    dmem = np.zeros(256, np.int64)
    dmem[:8] = [2**31 - 1, -(2**31), 7, -5, 3, 2**30, -(2**30), 1]
    dmem[40:52] = [1, 0, 3] * 4  # ACT tables: sign, t1 per lane (k = 1)
    prog = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=3, addr=0, lanes=8),
            mk("STA", dst=100, lanes=8),
            mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=127, sh=15, addr=0, lanes=3),
            mk("ACC", src=int(Src.DMEM), mul=-128, sh=15, addr=0, lanes=5),
            mk("STA", dst=110, lanes=8), mk("ACT", k=1, oscale=2, obias=-1, tbl=40, dst=120,
                                             lanes=6),
            mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=5, addr=2, lanes=4),
            mk("ACC", src=int(Src.NDRV), mul=-3, lanes=6), mk("STA", dst=130, lanes=8),
            mk("HALT")]
    img = tiny_image(prog, dmem)
    for entry in (0, 3):
        ms = machines(img, 2)
        for m in ms:
            m.dmem[1, :8] = [5, -7, 2**31 - 1, -(2**31), 0, 1, 2, 3]
        same_runs(ms, entry, f"entry {entry}")
        same_runs(ms, entry, f"entry {entry} again")
        if entry == 0:  # independent of both: 3 * DMEM wrapped by hand
            want = (3 * dmem[:8] + 2**31) % 2**32 - 2**31
            np.testing.assert_array_equal(ms[0].dmem[0, 100:108], want)


def test_in_gaps_and_pairs_past_the_array() -> None:
    """IN loaded with gaps (the gather path), prefixes, and paired rows whose
    second row lies past the array, on ideal and variable cells."""
    dmem = np.array([1, -1, 0, 1, 1, -1, 1, 0, -1, 1, 1, 1] * 4)
    body = []
    for pair in (0, 1):
        for ro in (0, 3, 7):
            body += [mk("READ", xbar=0, row_off=ro, mask_a=isa.MASK_POS,
                        mask_b=isa.MASK_NEG | isa.MASK_ZERO, pair=pair, sense=s, adc=0,
                        bit=isa.BIT_SIGNED, lanes=3) for s in (0, 1)]
            body += [mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, lanes=3),
                     mk("ACC", src=int(Src.NDRV), mul=7, lanes=3),
                     mk("STA", dst=60 + 4 * len(body), lanes=3)]
    prog = [mk("PROG", xbar=0, row=r, wsrc=0) for r in range(8)]
    prog += [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=5), *body,  # prefix
             mk("LDIN", dst=6, src=5, lanes=2), *body,  # a gap at IN[5]
             mk("INCLR"), mk("LDIN", dst=2, src=3, lanes=6), *body,  # no prefix
             mk("LDIN", dst=0, src=8, lanes=2), *body, mk("HALT")]  # prefix again
    img = tiny_image(prog, dmem, dmem_words=1024)
    img.wmem[0] = [1, 0, 1, 1, 0, 0, 1, 0]
    same_runs(machines(img, 2), 0, "ideal cells")
    dev = sample_device_map(DeviceParams(8, 8, 1, 5.0, 50.0, 0.05, sigma_hrs_ua=2.0,
                                         sigma_lrs_ua=6.0, seed=3))
    same_runs(machines(dataclasses.replace(img, devmap=dev), 2), 0, "variable cells")


def fresh_run(comp: Compiled, q: np.ndarray, offset: int, m: Machine | None = None
              ) -> tuple[Machine, tuple[object, ...], tuple[object, ...]]:
    """Setup and inference on ``m`` (default: a new machine with its own plan cache)."""
    if m is None:
        m = Machine(dataclasses.replace(comp.image, plan_cache={}), comp.runs(q.shape[0]),
                    image_offset=offset)
    setup = m.run(comp.setup_entry)
    comp.load_inputs(m, q)
    res = m.run(comp.infer_entry)
    return m, result_tuple(setup), result_tuple(res)


@pytest.mark.parametrize("over", CONFIGS, ids=lambda o: ",".join(o) or "ideal")
def test_reused_machine_equals_new(over: dict[str, object]) -> None:
    """``Machine.reuse`` after ``release`` (what run_golden does) gives what a new
    machine gives: other inputs, another image offset (read noise), fewer inputs
    than the pooled machine's runs, the same machine twice in a row; run_golden too."""
    for seed in range(2):
        net = random_network(seed + 10, ternary=None)
        rng = np.random.default_rng(seed)
        cfg = make_config(None, {"mapping": "BNN_I" if seed else "TNN_I", "rows": 24,
                                 "cols": 20, "num_xbars": 6, "seed": seed, "batch": 3, **over})
        comp = compile_network(net, cfg)

        def inputs(n: int, net: Network = net, rng: np.random.Generator = rng) -> np.ndarray:
            return rng.choice(np.array(net.input.values.values), size=(n, *net.input.shape)
                              ).astype(np.int16)
        q7 = inputs(7)
        for q, offset in ((q7, 0), (inputs(7), 4), (q7, 0), (inputs(5), 2), (inputs(8), 0)):
            want_m, want_setup, want_res = fresh_run(comp, q, offset)
            m = Machine.reuse(comp.image, comp.runs(q.shape[0]), image_offset=offset)
            _, setup, res = fresh_run(comp, q, offset, m)
            what = f"seed {seed} {over} inputs {q.shape[0]} offset {offset}"
            assert setup == want_setup, what
            assert res == want_res, what
            np.testing.assert_array_equal(m.dmem, want_m.dmem, err_msg=what)
            np.testing.assert_array_equal(m.xbar_bits, want_m.xbar_bits, err_msg=what)
            m.release()
            run = run_golden(comp, q, offset)
            np.testing.assert_array_equal(run.logits, comp.output_logits(want_m.dmem, q.shape[0]))
            assert result_tuple(run.result) == want_res, what
            assert result_tuple(run.setup) == want_setup, what


def test_reused_machine_restores_dmem() -> None:
    """A reset machine's DMEM is the image's again: words a run wrote past the image
    (absolute, relative at the largest IB of a loop) and words loaded by the host."""
    dmem = np.zeros(40, np.int64)
    dmem[:4] = [3, -2, 5, 7]
    body = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=1, addr=60, lanes=2, rel=1),
            mk("ACC", src=int(Src.DMEM), mul=1, addr=0, lanes=2),
            mk("ACC", src=int(Src.DMEM), mul=1, addr=44, lanes=2),
            mk("STA", dst=60, lanes=2, rel=1)]
    prog = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=1, addr=50, lanes=3),
            mk("ACC", src=int(Src.DMEM), mul=1, addr=1, lanes=3), mk("STA", dst=50, lanes=3),
            mk("LOOP", count=4, len=len(body), stride=10), *body, mk("HALT")]
    img = tiny_image(prog, dmem)
    want = Machine(dataclasses.replace(img, plan_cache={}), 2)
    want.load_inputs(44, np.array([[1, 2], [3, 4]]))
    want.load_inputs(200, np.array([[9], [8]]))  # past every word the program writes
    rw = want.run(0)
    for _ in range(3):
        m = Machine.reuse(img, 2)
        m.load_inputs(44, np.array([[1, 2], [3, 4]]))
        m.load_inputs(200, np.array([[9], [8]]))
        assert result_tuple(m.run(0)) == result_tuple(rw)
        np.testing.assert_array_equal(m.dmem, want.dmem)
        m.release()
    m = Machine.reuse(img, 2)
    np.testing.assert_array_equal(m.dmem, Machine(img, 2).dmem)


def test_lifted_loops_sharing_registers() -> None:
    """Lifted loops with as many columns share registers: each starts from cleared
    ones, as the definition's lifted loop with its new registers (CODE lanes past a
    loop's READ read zero after it, whatever a wider loop before left there).

    The comparison is with the definition's lifted loops (``Machine(fast=False,
    lift=True)``): run iteration by iteration, those CODE lanes keep the wider
    loop's values (a known difference of lifting, which compiled programs never
    see: they read only CODE lanes a READ of the same body wrote)."""
    dmem = np.array([1, -1, 0, 1, 1, -1, 1, 0, -1, 1, 1, 1] * 4)

    def body(lanes: int, dst: int) -> list[isa.Instr]:
        return [mk("INCLR"), mk("LDIN", dst=0, src=0, lanes=8, rsrc=1),
                mk("READ", xbar=0, mask_a=isa.MASK_POS, sense=0, adc=0, bit=isa.BIT_SIGNED,
                   lanes=lanes),
                mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, lanes=lanes),
                mk("ACC", src=int(Src.NDRV), mul=3, lanes=lanes),
                mk("STA", dst=dst, lanes=lanes, rel=1)]
    wide, narrow = body(6, 8), body(2, 14)  # relative windows [0, 14), [0, 16)
    prog = [mk("PROG", xbar=0, row=r, wsrc=0) for r in range(8)]
    prog += [mk("LOOP", count=3, len=len(wide), stride=16), *wide,
             mk("LOOP", count=3, len=len(narrow), stride=16), *narrow,
             mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, lanes=6),
             mk("ACC", src=int(Src.NDRV), mul=1, lanes=6), mk("STA", dst=200, lanes=6),
             mk("HALT")]
    img = tiny_image(prog, dmem, dmem_words=1024)
    img.wmem[0] = [1, 0, 1, 1, 0, 0, 1, 0]
    ms = [Machine(dataclasses.replace(img, plan_cache={}), 2, fast=fast, lift=True)
          for fast in (True, False)]
    assert ms[0]._liftable(8, len(wide), 16, 3) is not None
    for m in ms:
        m.dmem[1, :40] = np.roll(dmem[:40], 3)
    same_runs(ms, 0, "shared lifted registers")
    same_runs(ms, 0, "shared lifted registers again")


CHAIN_ROWS = 16


def chain_image(prog: list[isa.Instr], dmem: np.ndarray, rng: np.random.Generator,
                variable: bool) -> ChipImage:
    """A 16x16 chip: ADC tables 0/1 ideal SYM/POS (the lanes of a READ are its codes),
    2 an ideal SYM table of 3 levels a side (clips), 3 a 3-bit uniform one."""
    n = CHAIN_ROWS
    cfg = make_config(None, {"rows": n, "cols": n, "num_xbars": 1, "dmem_words": 2048,
                             "vec_width": 4})
    di = cfg.lrs_units - cfg.hrs_units
    tables = [ideal_adc("SYM", n, di), ideal_adc("POS", n, di), ideal_adc("SYM", 3, di),
              uniform_adc("SYM", 3, -6.0 * di, 6.0 * di, di)]
    padded = [t.padded(2 * n) for t in tables]
    dev = sample_device_map(DeviceParams(n, n, 1, 5.0, 50.0, 0.05,
                                         sigma_hrs_ua=2.0 if variable else 0.0,
                                         sigma_lrs_ua=6.0 if variable else 0.0, seed=3))
    return ChipImage(machine_params(cfg), tuple(isa.encode(i) for i in prog),
                     rng.integers(0, 2, (n, n)).astype(np.uint8), dmem.astype(np.int32),
                     np.stack([t for t, _ in padded]), np.stack([r for _, r in padded]), dev)


def chain_section(rng: np.random.Generator, rel: int) -> list[isa.Instr]:
    """IN loaded (a prefix, at times with a gap), maybe ACC state first (lanes
    cleared lazily, a bound past 2^53 or 2^62), a run of (READ, ACC from CODE)
    pairs of one kind (bit planes, the sign pair, anything), then instructions that
    read CODE or NDRV as the last READ left them, or not; STA and ACT of the result.
    Relative words (``rel``): IN values at 0.., results at 16..; absolute: ACC
    operands at 900.., IN values at 940.., ACT tables at 1000.. (``act_table``)."""
    out = []
    pre = rng.integers(4)
    if pre == 0:
        out.append(mk("ACLR"))
    elif pre == 1:  # ACC lanes [0, 1) assigned: the chain adds to some lanes, assigns others
        out += [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=3, addr=900, lanes=1)]
    elif pre == 2:  # a bound past 2^53 (and at times past 2^62)
        out += [mk("ACLR")] + [mk("ACC", src=int(Src.DMEM), mul=127, sh=15, addr=900,
                                  lanes=8)] * int(rng.integers(1, 4))
    # IN: one prefix from one or more LDINs (relative or absolute words: the chain may
    # read them from DMEM), or with a gap (the general READ path).
    out.append(mk("INCLR"))
    end = 0
    for _ in range(int(rng.integers(1, 4))):
        lanes = int(rng.integers(1, 5))
        r = int(rng.integers(2)) * rel
        out.append(mk("LDIN", dst=end, src=(0 if r else 940) + end, lanes=lanes, rsrc=r))
        end += lanes
    if rng.random() < 0.2:
        out.append(mk("LDIN", dst=end + 1, src=3, lanes=3, rsrc=rel))
    if rng.random() < 0.3:  # between the LDINs and the chain: not read from DMEM
        out.append(mk("ACLR") if pre != 1 else mk("NOP"))
    lanes = int(rng.integers(2, 7))
    n = int(rng.integers(1, lanes + 1))
    a0 = int(rng.integers(0, lanes - n + 1))
    kind = rng.integers(3)
    sense, adc = int(rng.integers(2)), int(rng.integers(4))
    adc = adc if adc > 1 else (0 if sense else 1)  # the ideal table of the sense
    rd = {"xbar": 0, "row_off": int(rng.integers(0, 3)), "col": int(rng.integers(0, 3)),
          "sense": sense, "adc": adc, "lanes": lanes, "pair": 0}
    if kind == 0:  # bit planes: mask POS, k = c * 2^b
        c = int(rng.choice([1, 1, 2, -1, 3]))
        bits = rng.permutation(8)[:int(rng.integers(2, 6))]
        pairs = [({**rd, "mask_a": isa.MASK_POS, "bit": int(b)},
                  {"mul": c, "sh": int(b)}) for b in bits]
    elif kind == 1:  # the sign pair
        c = int(rng.choice([1, 2, -1]))
        pairs = [({**rd, "mask_a": isa.MASK_POS, "bit": isa.BIT_SIGNED}, {"mul": c}),
                 ({**rd, "mask_a": isa.MASK_NEG, "bit": isa.BIT_SIGNED}, {"mul": -c})]
        if rng.random() < 0.5:
            pairs.reverse()
    else:
        rd["pair"] = int(rng.integers(2))
        pairs = [({**rd, "mask_a": int(rng.integers(8)), "mask_b": int(rng.integers(8)),
                   "bit": int(rng.choice([0, 1, 3, isa.BIT_SIGNED]))},
                  {"mul": int(rng.integers(-4, 5)), "sh": int(rng.integers(3))})
                 for _ in range(int(rng.integers(2, 5)))]
    for r, acc in pairs:
        out += [mk("READ", **r), mk("ACC", src=int(Src.CODE), addr=a0, lanes=n, **acc)]
    post = rng.integers(5)
    if post == 0:  # CODE lanes of the last READ, past the ACCs' lanes
        out += [mk("ACC", src=int(Src.CODE), mul=1, addr=0, lanes=lanes)]
    elif post == 1:
        out += [mk("ACC", src=int(Src.NDRV), mul=5, lanes=n)]
    elif post == 2:  # overwritten first: the chain's CODE and NDRV are dead
        out += [mk("READ", **{**rd, "mask_a": isa.MASK_POS, "bit": isa.BIT_SIGNED}),
                mk("ACC", src=int(Src.CODE), mul=1, addr=0, lanes=lanes),
                mk("ACC", src=int(Src.NDRV), mul=1, lanes=1)]
    k = int(rng.integers(1, 4))
    out += [mk("STA", dst=16, lanes=8, rel=rel),
            mk("ACT", k=k, oscale=int(rng.integers(1, 4)), obias=int(rng.integers(-2, 2)),
               tbl=act_table(int(rng.integers(5)), k), dst=24, rdst=rel, lanes=8)]
    if not rel and rng.random() < 0.3:  # the result overwrites the table as it goes
        t = act_table(int(rng.integers(5)), k)
        out += [mk("ACT", k=k, oscale=1, obias=0, tbl=t, dst=t + int(rng.integers(1, 9)),
                   lanes=8)]
    return out


def group_section(rng: np.random.Generator, rel: int) -> list[isa.Instr]:
    """Runs of single (READ, ACC from CODE) pairs into the same ACC lanes, each with
    IN loaded right before it (one product for the run, machine_fast._group_fn),
    then STA: other crossbar windows, signed and bit-plane drives, ADC tables that
    do and do not allow the product."""
    n = int(rng.integers(2, 5))
    out = [mk("ACLR")]
    pre = rng.integers(4)
    if pre == 1:  # ACC lanes past 0 cleared lazily: assigned by the run
        out.append(mk("ACC", src=int(Src.DMEM), mul=1, addr=900, lanes=1))
    elif pre == 2:  # a bound past 2^62 at times: the pairs one by one
        out += [mk("ACC", src=int(Src.DMEM), mul=127, sh=15, addr=900,
                   lanes=n)] * int(rng.integers(1, 4))
    elif pre == 3:
        out.append(mk("ACC", src=int(Src.DMEM), mul=1, addr=900, lanes=n))
    for _ in range(int(rng.integers(2, 5))):
        end = 0
        out.append(mk("INCLR"))
        for _ in range(int(rng.integers(1, 3))):
            lanes = int(rng.integers(1, 6))
            r = int(rng.integers(2)) * rel
            out.append(mk("LDIN", dst=end, src=(0 if r else 940) + end, lanes=lanes, rsrc=r))
            end += lanes
        sense = int(rng.integers(2))
        adc = (0 if sense else 1) if rng.random() < 0.9 else int(rng.integers(2, 4))
        out += [mk("READ", xbar=0, row_off=int(rng.integers(0, 4)), col=int(rng.integers(0, 4)),
                   sense=sense, adc=adc, lanes=n + int(rng.integers(0, 3)), mask_a=isa.MASK_POS,
                   bit=int(rng.choice([isa.BIT_SIGNED, 0, 2]))),
                mk("ACC", src=int(Src.CODE), mul=int(rng.choice([1, 2, -1])), addr=0, lanes=n)]
    out.append(mk("STA", dst=32, lanes=n, rel=rel))
    return out


def act_table(kind: int, k: int) -> int:
    """DMEM address of the ACT table of a sign kind (``act_tables``) for k thresholds."""
    return 1000 + 40 * (3 * kind + k - 1)


def act_tables(rng: np.random.Generator, dmem: np.ndarray) -> None:
    """ACT tables (``act_table``; 8 lanes, k <= 3): signs all 1, all -1, mixed with
    zero, larger than one, of both kinds; thresholds small and at the int32 ends."""
    signs = [np.ones(8), -np.ones(8), rng.integers(-1, 2, 8), rng.integers(2, 5, 8),
             rng.choice([-3, -1, 1, 2], 8)]
    for kind, s in enumerate(signs):
        for k in (1, 2, 3):
            thr = rng.integers(-40, 40, (8, k))
            thr[rng.random((8, k)) < 0.15] = -(2**31)
            thr[rng.random((8, k)) < 0.15] = 2**31 - 1
            a = act_table(kind, k)
            dmem[a:a + 8 * (k + 1)] = np.column_stack([s, np.sort(thr, axis=1)]).ravel()


@pytest.mark.parametrize("chunk", range(4))
def test_read_chains_and_act_fast_equals_definition(chunk: int) -> None:
    """Runs of (READ, ACC from CODE) as one product (machine_fast.read_chains), in
    lifted loops and in straight code, and ACT by threshold comparison, against the
    definition: bit planes, sign pairs, other pairs; ideal ADCs (the product path),
    clipping and uniform ones, variable cells (the pairs one by one); CODE and NDRV
    read after the run or not; ACC lanes cleared lazily and bounds past 2^53 / 2^62."""
    for seed in range(chunk * 30, chunk * 30 + 30):
        section = group_section if seed % 3 == 2 else chain_section
        section_case(seed, section, words=120, stride=40, bias=2**31, variable=seed % 5 == 4)


def section_case(seed: int, section: Callable[[np.random.Generator, int], list[isa.Instr]],
                 words: int, stride: int, bias: int, variable: bool, probe: bool = False
                 ) -> Machine:
    """``section`` in a lifted loop (or not), then in straight code, on a chip of
    ``chain_image``: DMEM words [0, words) random per run, ACC operands at 900..
    within +-bias, IN values at 940.., ACT tables; run twice, the prepared machines
    against the definition (``probe``: also what a calibration probe sees). Returns
    the prepared, lifted machine."""
    rng = np.random.default_rng(seed)
    loop = bool(rng.integers(2))
    body = section(rng, int(loop))
    prog = [mk("PROG", xbar=0, row=r, wsrc=r) for r in range(CHAIN_ROWS)]
    if loop:
        prog.append(mk("LOOP", count=int(rng.integers(2, 4)), len=len(body), stride=stride))
    prog += [*body, *section(rng, 0), mk("HALT")]
    dmem = np.zeros(1700, np.int64)
    dmem[:words] = rng.integers(-3, 40, words)
    dmem[900:908] = rng.integers(-bias, bias, 8)
    dmem[940:960] = rng.integers(-3, 40, 20)
    act_tables(rng, dmem)
    img = chain_image(prog, dmem, rng, variable=variable)
    ms = machines(img, 3)
    runs = rng.integers(-3, 40, (2, words))
    for m in ms:
        m.dmem[1:, :words] = runs
    seen = probes(ms) if probe else None
    what = f"seed {seed} loop {loop}"
    print(what)
    same_runs(ms, 0, what)
    same_runs(ms, 0, what + " again")
    if seen is not None:
        same_probes(seen, what)
    return ms[0]


def shadow_section(rng: np.random.Generator, rel: int) -> list[isa.Instr]:
    """Positions of a convolution: each an ACLR, INCLR, LDINs of overlapping windows
    of the same words (relative ones, or absolute ones: at 940.. as padding), one
    READ and ACC from CODE, at times a bias ACC, then STA or ACT: most write past
    the words the positions load, some into them (the next position must see the
    new values: a new drive shadow, ``golden_model.shadow``). One driver (sign
    masks, bit planes) and ADC table for the section, ideal mostly."""
    out = []
    step = int(rng.integers(1, 3))
    mask = int(rng.choice([isa.MASK_POS, isa.MASK_NEG, isa.MASK_POS | isa.MASK_ZERO,
                           isa.MASK_NEG | isa.MASK_POS, isa.MASK_ZERO]))
    bit = int(rng.choice([isa.BIT_SIGNED, isa.BIT_SIGNED, 0, 2]))
    sense = int(rng.integers(2))
    adc = (0 if sense else 1) if rng.random() < 0.85 else int(rng.integers(2, 4))
    row_off = int(rng.integers(0, 3))
    lanes = int(rng.integers(2, 9))
    n = int(rng.integers(1, lanes + 1))
    for p in range(int(rng.integers(2, 9))):
        out += [mk("ACLR"), mk("INCLR")]
        end = 0
        for seg in range(int(rng.integers(1, 4))):
            k = int(rng.integers(1, 5))
            if rng.random() < 0.25:
                out.append(mk("LDIN", dst=end, src=940 + int(rng.integers(0, 3)), lanes=k))
            else:
                out.append(mk("LDIN", dst=end, src=p * step + 3 * seg, lanes=k, rsrc=rel))
            end += k
        out += [mk("READ", xbar=0, row_off=row_off, col=int(rng.integers(0, 3)), sense=sense,
                   adc=adc, lanes=lanes, mask_a=mask, bit=bit),
                mk("ACC", src=int(Src.CODE), mul=int(rng.choice([1, 2, -1, 3])), addr=0,
                   lanes=n)]
        if rng.random() < 0.5:
            out.append(mk("ACC", src=int(Src.DMEM), mul=1, addr=900, lanes=n))
        dst = 60 + 8 * (p % 3) if rng.random() < 0.85 else int(rng.integers(0, 30))
        if rng.random() < 0.5:
            out.append(mk("STA", dst=dst, lanes=n, rel=rel))
        else:
            k = int(rng.integers(1, 4))
            out.append(mk("ACT", k=k, oscale=int(rng.integers(1, 4)),
                          obias=int(rng.integers(-2, 2)), tbl=act_table(int(rng.integers(5)), k),
                          dst=dst, rdst=rel, lanes=n))
    return out


def shadows_used(m: Machine) -> int:
    """Drive shadows the prepared machine's closures mark stale (epochs that ran)."""
    engine = m._engine
    assert engine is not None
    fns = [f for lf in engine.lifted.values() for f in lf.fns]
    fns += [f for b in engine.blocks if isinstance(b, machine_fast.Block) for f in b.fns]
    return sum(getattr(f, "__name__", "") == "stale" for f in fns)


@pytest.mark.parametrize("blocks", ["auto", "gather", "blocks"])
def test_drive_shadows_fast_equals_definition(blocks: str, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Convolution-like runs of READs that load the same words (``shadow_section``),
    in lifted loops and in straight code, their drive made once per epoch
    (``golden_model.shadow``), read as row blocks or gathered rows: the same DMEM,
    counters and read charge as the definition, also when a position's STA or ACT
    writes the words a later one loads, and with the products packed."""
    monkeypatch.setattr(machine_fast, "STACK_MAX_N", 0)  # the units' own closures
    if blocks != "auto":
        monkeypatch.setattr(machine_fast, "SHADOW_BLOCKS", 0 if blocks == "gather" else 99)
        monkeypatch.setattr(machine_fast, "SHADOW_BLOCK_ROWS", 0)
    keep, pack = shadow.MIN_REUSE, machine_fast.PACK_MIN_ROWS
    used = 0
    for seed in range(40):
        if seed % 4 == 3:
            monkeypatch.setattr(machine_fast, "PACK_MIN_ROWS", 1)
        # Every epoch of two or more chains gets a shadow, however few words repeat.
        monkeypatch.setattr(shadow, "MIN_REUSE", 1 if seed % 2 else keep)
        m = section_case(1000 + seed, shadow_section, words=400, stride=100, bias=2**20,
                         variable=seed % 10 == 9)
        used += shadows_used(m)
        monkeypatch.setattr(machine_fast, "PACK_MIN_ROWS", pack)
    assert used >= 20, f"drive shadows in only {used} epochs"


def operand_loop(body: list[isa.Instr], pre: list[isa.Instr]) -> list[isa.Instr]:
    """``pre``, straight code that writes operand words (903, 904 from 940, 941) and
    a table word (1004, from 940) the loop reads, then ``body`` in a loop of 3
    iterations (stride 40)."""
    return [*pre, mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=1, addr=940, lanes=2),
            mk("STA", dst=903, lanes=2), mk("STA", dst=1004, lanes=1),
            mk("LOOP", count=3, len=len(body), stride=40), *body, mk("HALT")]


def new_operands(ms: list[Machine], rng: np.random.Generator, top: int, thr_top: int,
                 kind: int) -> None:
    """New operand words 900.. (within +-top; 940, 941 a third of the first two) and
    a new ACT table at 1000 (4 lanes; signs all 1, all -1 or mixed by ``kind``, two
    thresholds within +-thr_top, clipped to int32) in every run of the machines."""
    new = rng.integers(-top, top, (3, 8))
    signs = [np.ones((3, 4)), -np.ones((3, 4)), rng.choice([-2, -1, 1, 3], (3, 4))][kind]
    thr = np.sort(rng.integers(-thr_top, thr_top, (3, 4, 2)), axis=2)
    thr = np.clip(thr, -(2**31), 2**31 - 1)  # (the int32 ends at times)
    table = np.concatenate([signs[..., None], thr], axis=2).reshape(3, 12)
    for m in ms:
        m.dmem[:, 900:908] = new
        m.dmem[:, 940:942] = new[:, :2] // 3
        m.dmem[:, 1000:1012] = table


def test_tiled_acc_operands_follow_dmem() -> None:
    """ACC from absolute words in a lifted loop adds k * words tiled over the copies
    (``Ctx.tiled``), and ACT compares with its absolute table tiled likewise
    (``_act_fn``), both kept between runs: when the words change (the host, or the
    straight code before the loop), the next run uses the new ones."""
    body = [mk("ACLR"), mk("ACC", src=int(Src.DMEM), mul=3, addr=900, lanes=4),
            mk("ACC", src=int(Src.DMEM), mul=-2, sh=1, addr=902, lanes=4),
            mk("ACC", src=int(Src.DMEM), mul=1, addr=16, rel=1, lanes=4),
            mk("STA", dst=20, rel=1, lanes=4),
            mk("ACT", k=2, oscale=2, obias=-1, tbl=1000, dst=28, rdst=1, lanes=4)]
    prog = operand_loop(body, [])
    rng = np.random.default_rng(5)
    print("seed 5")
    dmem = np.zeros(1700, np.int64)
    dmem[:120] = rng.integers(-50, 50, 120)
    dmem[900:908] = rng.integers(-(2**20), 2**20, 8)
    img = chain_image(prog, dmem, rng, variable=False)
    ms = machines(img, 3)
    for it in range(6):
        new_operands(ms, rng, 2**31, 3 * 2**20, it % 3)
        same_runs(ms, 0, f"tiled operands, round {it}")
    assert ms[0]._engine is not None and ms[0]._engine.lifted


def epilogue_section(rng: np.random.Generator, rel: int, single: float = 1 / 3
                     ) -> list[isa.Instr]:
    """Units of ACLR (at times an ACC right after it: the chain then adds to lanes
    already set), INCLR, LDINs, a chain (one pair of any sign mask, bit planes, a
    sign pair), zero to two ACCs of absolute words (k of both signs; the words near 0,
    or anywhere in int32: a STA that wraps, an ACT that cannot take P + b as it is)
    and a STA or an ACT on the chain's lanes, at times into its own table. The next
    unit's ACLR clears ACC, or a STA reads it first (no ``Epilogue`` then).
    ``single``: the share of one-pair chains (the ones a packed product can take)."""
    out = []
    n = int(rng.integers(1, 7))
    lanes = int(rng.integers(n, 9))
    sense = int(rng.integers(2))
    adc = (0 if sense else 1) if rng.random() < 0.9 else int(rng.integers(2, 4))
    rd = {"xbar": 0, "row_off": int(rng.integers(0, 3)), "col": int(rng.integers(0, 3)),
          "sense": sense, "adc": adc, "lanes": lanes, "pair": 0}
    for u in range(int(rng.integers(1, 5))):
        out.append(mk("ACLR"))
        if rng.random() < 0.15:
            out.append(mk("ACC", src=int(Src.DMEM), mul=1, addr=904,
                          lanes=int(rng.integers(1, n + 1))))
        out.append(mk("INCLR"))
        end = 0
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(1, 6))
            r = int(rng.integers(2)) * rel
            out.append(mk("LDIN", dst=end, src=(8 * u if r else 940) + end, lanes=k, rsrc=r))
            end += k
        kind = 0 if rng.random() < single else rng.integers(1, 3)
        if kind == 0:
            mask = int(rng.choice([isa.MASK_POS, isa.MASK_NEG, isa.MASK_POS | isa.MASK_ZERO]))
            pairs = [({**rd, "mask_a": mask, "bit": int(rng.choice([isa.BIT_SIGNED, 0, 2]))},
                      {"mul": int(rng.choice([1, 2, -1, 3]))})]
        elif kind == 1:  # bit planes
            pairs = [({**rd, "mask_a": isa.MASK_POS, "bit": int(b)}, {"mul": 1, "sh": int(b)})
                     for b in rng.permutation(6)[:int(rng.integers(2, 4))]]
        else:  # the sign pair
            c = int(rng.choice([1, 2, -1]))
            pairs = [({**rd, "mask_a": isa.MASK_POS, "bit": isa.BIT_SIGNED}, {"mul": c}),
                     ({**rd, "mask_a": isa.MASK_NEG, "bit": isa.BIT_SIGNED}, {"mul": -c})]
        for r, acc in pairs:
            out += [mk("READ", **r), mk("ACC", src=int(Src.CODE), addr=0, lanes=n, **acc)]
        for _ in range(int(rng.choice([0, 1, 1, 2]))):
            out.append(mk("ACC", src=int(Src.DMEM), addr=int(rng.choice([900, 901, 908])),
                          mul=int(rng.choice([1, -1, 2, -3])), sh=int(rng.integers(0, 2)),
                          lanes=n))
        dst = 16 + 8 * (u % 2)
        if rng.random() < 0.4:
            out.append(mk("STA", dst=dst, lanes=n, rel=rel))
        else:
            k = int(rng.integers(1, 4))
            t = act_table(int(rng.integers(5)), k)
            if not rel and rng.random() < 0.2:
                dst = t + int(rng.integers(0, 8))  # into its own table
            out.append(mk("ACT", k=k, oscale=int(rng.integers(1, 4)),
                          obias=int(rng.integers(-2, 2)), tbl=t, dst=dst, rdst=rel, lanes=n))
        if rng.random() < 0.2:  # ACC read again: it is not dead after the STA or ACT
            out.append(mk("STA", dst=32, lanes=n, rel=rel))
    return out


class EpilogueCount:
    """Counts the products that went straight to an ``Epilogue`` and the times one
    could not take them (run as instructions)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.applied = self.declined = self.packed = 0
        ready, apply = machine_fast.Epilogue.ready, machine_fast.Epilogue.apply

        def counted_ready(epi: machine_fast.Epilogue, *a: object) -> object:
            got = ready(epi, *a)  # type: ignore[arg-type]
            self.declined += got is None
            return got

        def counted_apply(epi: machine_fast.Epilogue, got: object, p: np.ndarray,
                          *a: object) -> None:
            self.applied += 1
            self.packed += p.dtype == np.int32
            apply(epi, got, p, *a)  # type: ignore[arg-type]
        monkeypatch.setattr(machine_fast.Epilogue, "ready", counted_ready)
        monkeypatch.setattr(machine_fast.Epilogue, "apply", counted_apply)


@pytest.mark.parametrize("pack", [False, True], ids=["float", "packed"])
@pytest.mark.parametrize("chunk", range(2))
def test_epilogues_fast_equals_definition(chunk: int, pack: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain's product straight into its bias ACCs and STA or ACT
    (``machine_fast.Epilogue``; ``epilogue_section``), in lifted loops and straight
    code, biases near 0 (ties at the thresholds) or anywhere in int32 (wraps), every
    kind of ACT table, the float product or a packed one's int32 lanes (``pack``:
    every single READ packed when it can be): the same DMEM and counters as the
    definition."""
    monkeypatch.setattr(machine_fast, "STACK_MAX_N", 0)  # each chain with its epilogue
    if pack:
        monkeypatch.setattr(machine_fast, "PACK_MIN_ROWS", 1)
    count = EpilogueCount(monkeypatch)
    section = epilogue_section if not pack else partial(epilogue_section, single=0.8)
    for seed in range(2000 + 40 * chunk, 2040 + 40 * chunk):
        section_case(seed, section, words=120, stride=40,
                     bias=2**31 if seed % 3 == 0 else 50, variable=seed % 10 == 9)
    print(f"epilogues: {count.applied} applied ({count.packed} packed), "
          f"{count.declined} declined")
    assert count.applied >= 100 and count.declined >= 10
    assert count.packed >= 50 if pack else count.packed == 0


def test_epilogue_follows_dmem(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``Epilogue`` keeps its bias and ACT bounds between runs: when the bias
    words or the table change (the host, or the straight code before the loop), the
    next run uses the new ones; biases that P + b could carry out of int32 run the
    instructions (ACT), or wrap (STA)."""
    unit = [mk("INCLR"), mk("LDIN", dst=0, src=0, rsrc=1, lanes=6),
            mk("READ", xbar=0, row_off=0, col=0, sense=1, adc=0, lanes=4,
               mask_a=isa.MASK_POS, bit=isa.BIT_SIGNED),
            mk("ACC", src=int(Src.CODE), mul=2, addr=0, lanes=4)]
    body = [mk("ACLR"), *unit, mk("ACC", src=int(Src.DMEM), mul=3, addr=900, lanes=4),
            mk("ACC", src=int(Src.DMEM), mul=-2, sh=1, addr=902, lanes=4),
            mk("ACT", k=2, oscale=2, obias=-1, tbl=1000, dst=28, rdst=1, lanes=4),
            mk("ACLR"), *unit, mk("ACC", src=int(Src.DMEM), mul=1, addr=901, lanes=4),
            mk("STA", dst=20, rel=1, lanes=4)]
    prog = operand_loop(body, [mk("PROG", xbar=0, row=r, wsrc=r) for r in range(CHAIN_ROWS)])
    rng = np.random.default_rng(6)
    print("seed 6")
    dmem = np.zeros(1700, np.int64)
    dmem[:120] = rng.integers(-3, 3, 120)
    img = chain_image(prog, dmem, rng, variable=False)
    ms = machines(img, 3)
    monkeypatch.setattr(machine_fast, "STACK_MAX_N", 0)
    count = EpilogueCount(monkeypatch)
    for it in range(9):
        top = [40, 2**20, 2**31][it % 3]
        new_operands(ms, rng, top, 3 * top, it // 3)
        same_runs(ms, 0, f"epilogue operands, round {it}")
    print(f"epilogues: {count.applied} applied, {count.declined} declined")
    assert count.applied >= 10 and count.declined >= 2


def test_split_products_fast_equals_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every product split in halves of columns across the worker thread
    (``machine_fast.SPLIT_MACS``; by default only the large ones are): the same
    results."""
    monkeypatch.setattr(machine_fast, "SPLIT_MACS", 1)
    test_read_chains_and_act_fast_equals_definition(1)
    for mapping in ("BNN_I", "TNN_I", "BNN_III"):
        network_case(mapping, 1, {"num_xbars": 1})


def test_packed_products_fast_equals_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every single READ's product packed when it can be (``machine_fast.Packed``; by
    default only those of many rows are), also split in halves of columns: the same
    results as the definition."""
    monkeypatch.setattr(machine_fast, "PACK_MIN_ROWS", 1)
    for chunk in range(2):
        test_read_chains_and_act_fast_equals_definition(chunk)
    for mapping in ("BNN_I", "TNN_I", "BNN_III"):
        for over in ({}, {"num_xbars": 1}, {"stuck_lrs_rate": 0.05, "stuck_hrs_rate": 0.05}):
            network_case(mapping, 2, over)
    monkeypatch.setattr(machine_fast, "SPLIT_MACS", 1)
    test_read_chains_and_act_fast_equals_definition(2)
    network_case("BNN_I", 0, {})


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "units"])
def test_digits_cnn_batch16_fast_equals_definition(stack: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits CNN compiled at batch 16 (issue 18's benchmark: IN loaded by runs
    of LDINs of relative and absolute (padding) words) on 37 images (3 runs, the
    last one partly padding), fast and lifted against the definition: the positions
    of each convolution as one stack (``golden_model.stack``), or (``STACK_MAX_N``
    0, as for many columns) one by one, read from one drive shadow, each position's
    product straight into its bias and ACT or STA."""
    if not stack:
        monkeypatch.setattr(machine_fast, "STACK_MAX_N", 0)
    count = StackCount(monkeypatch)
    from cimgen.frontend.datasets import digits_for
    from cimgen.frontend.onnx_import import load_model
    from golden_model.reference import quantize_input

    root = Path(__file__).resolve().parents[1]
    net = load_model(root / "examples" / "bnn_cnn.onnx")
    q = quantize_input(net, digits_for(net.input.shape)[0][:37])
    comp = compile_network(net, make_config(None, {"batch": 16}))
    ms = machines(comp.image, comp.runs(q.shape[0]))
    same_runs(ms, comp.setup_entry, "digits CNN setup")
    for m in ms:
        comp.load_inputs(m, q)
    same_runs(ms, comp.infer_entry, "digits CNN batch 16")
    same_runs(ms, comp.infer_entry, "digits CNN batch 16 again")
    engine = ms[0]._engine
    assert engine is not None
    names = [f.__name__ for lf in engine.lifted.values() for f in lf.fns]
    if stack:
        # 63 positions a stack (48 columns: one stack takes them all), run as one
        # product in both inference runs; the last position, and the dense layer, as a
        # chain and its epilogue.
        assert (count.built, count.runs, count.fallbacks) == (2, 4, 0)
        assert names.count("f_chain_epi") == 2 + 1
        return
    assert names.count("stale") == 2  # each convolution's positions read a drive shadow
    # Every product (64 positions a convolution, the dense layer's) goes straight to
    # its bias ACC and ACT or STA (``Epilogue``).
    assert names.count("f_chain_epi") == 2 * 64 + 1


def stack_section(rng: np.random.Generator, rel: int) -> list[isa.Instr]:
    """Runs of like units (``golden_model.stack``): ACLR, INCLR, LDINs that split
    the IN rows differently in each unit (relative words, or absolute padding words
    at 940..), one READ (any sign mask or bit plane, at times a clipping or uniform
    ADC, rows past the array) and ACC from CODE, zero to two bias ACCs (near 0, or
    anywhere in int32), a STA or an ACT (every kind of table). Some sections have a
    hazard: a unit writes words a later one loads, two write the same words, an
    ACT writes its own table, a unit differs from the others or something stands
    between two units; after some, ACC, CODE or IN are read as the last unit left
    them."""
    out: list[isa.Instr] = []
    n = int(rng.integers(1, 7))
    lanes = int(rng.integers(n, 9))
    sense = int(rng.integers(2))
    # Mostly ideal; a fifth the table that clips (3 levels a side), some uniform.
    adc = int(rng.choice([0 if sense else 1, 2, 3], p=[0.7, 0.2, 0.1]))
    rd = {"xbar": 0, "row_off": int(rng.integers(0, 4)), "col": int(rng.integers(0, 3)),
          "sense": sense, "adc": adc, "lanes": lanes, "pair": 0,
          "mask_a": int(rng.choice([isa.MASK_POS, isa.MASK_NEG, isa.MASK_ZERO,
                                    isa.MASK_POS | isa.MASK_ZERO, isa.MASK_NEG | isa.MASK_POS])),
          "bit": int(rng.choice([isa.BIT_SIGNED, isa.BIT_SIGNED, 0, 2]))}
    acc = {"src": int(Src.CODE), "addr": 0, "lanes": n, "mul": int(rng.choice([1, 2, -1, 3, 0])),
           "sh": int(rng.integers(0, 2))}
    if rng.random() < 0.1:  # k * the lanes past 2^24: no exact float32 product
        acc.update(mul=int(rng.choice([127, -128])), sh=int(rng.integers(12, 16)))
    bias = [{"src": int(Src.DMEM), "addr": int(rng.choice([900, 901, 908])),
             "mul": int(rng.choice([1, -1, 2])), "sh": 0, "lanes": n}
            for _ in range(int(rng.choice([0, 1, 1, 2])))]
    k = int(rng.integers(1, 4))
    last = {"STA": {"rel": rel, "lanes": n}} if rng.random() < 0.4 else \
        {"ACT": {"k": k, "oscale": int(rng.integers(1, 4)), "obias": int(rng.integers(-2, 2)),
                 "tbl": act_table(int(rng.integers(5)), k), "rdst": rel, "lanes": n}}
    (op, args), = last.items()
    hi = int(rng.integers(1, 15))
    step = int(rng.integers(1, 4))
    units = int(rng.integers(2, 9))
    hazard = int(rng.integers(0, 6)) if rng.random() < 0.4 else -1
    bad = int(rng.integers(1, units))  # the unit of the hazard
    # Destinations in order (one strided store) or not (``strided_rows``: None).
    order = rng.permutation(units) if rng.random() < 0.3 else np.arange(units)
    for u in range(units):
        out += [mk("ACLR"), mk("INCLR")]
        end = 0
        while end < hi:
            w = min(int(rng.integers(1, 6)), hi - end)
            if rng.random() < 0.25:
                out.append(mk("LDIN", dst=end, src=940 + int(rng.integers(0, 3)), lanes=w))
            else:
                out.append(mk("LDIN", dst=end, src=u * step + end, lanes=w, rsrc=rel))
            end += w
        a = dict(acc, sh=acc["sh"] ^ 1) if hazard == 3 and u == bad else acc
        out += [mk("READ", **rd), mk("ACC", **a), *(mk("ACC", **b) for b in bias)]
        dst = 100 + 8 * int(order[u])
        if hazard == 0 and u == bad - 1:
            dst = bad * step  # a word the next unit loads
        elif hazard == 1 and u == bad:
            dst = 100 + 8 * (u - 1)  # the words of the unit before
        elif hazard == 2 and op == "ACT" and not rel:
            dst = args["tbl"] + int(rng.integers(0, 4))  # its own table
        out.append(mk(op, dst=dst, **args))
        if hazard == 4 and u == bad - 1:
            out.append(mk("NOP"))
    after = int(rng.integers(0, 4))
    if after == 1:  # ACC as the last unit left it
        out.append(mk("STA", dst=190, lanes=n, rel=rel))
    elif after == 2:  # CODE
        out += [mk("ACLR"), mk("ACC", src=int(Src.CODE), mul=1, addr=0, lanes=n),
                mk("STA", dst=190, lanes=n, rel=rel)]
    elif after == 3:  # IN
        out += [mk("ACLR"), mk("READ", **dict(rd, bit=isa.BIT_SIGNED, mask_a=isa.MASK_POS)),
                mk("ACC", src=int(Src.CODE), mul=1, addr=0, lanes=n),
                mk("STA", dst=190, lanes=n, rel=rel)]
    return out


class StackCount:
    """Counts the stacks built, declined when built (``_stack_fn`` gave None), run
    as one product and run as their units' own closures (``run_units``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built = self.declined = self.runs = self.fallbacks = 0
        make, fallback = machine_fast._stack_fn, machine_fast.run_units

        def counted_make(*a: object) -> object:
            f = make(*a)  # type: ignore[arg-type]
            if f is None:
                self.declined += 1
                return None
            self.built += 1

            def counted(ib: int) -> None:
                self.runs += 1
                f(ib)
            return counted

        def counted_fallback(*a: object) -> None:
            self.fallbacks += 1
            fallback(*a)  # type: ignore[arg-type]
        monkeypatch.setattr(machine_fast, "_stack_fn", counted_make)
        monkeypatch.setattr(machine_fast, "run_units", counted_fallback)


@pytest.mark.parametrize("chunk", range(3))
def test_stacked_units_fast_equals_definition(chunk: int, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Runs of like units as one product (``golden_model.stack``, ``_stack_fn``;
    ``stack_section``), in lifted loops and straight code, at times a few units per
    stack (``STACK_COLUMNS``): the same DMEM, counters and read charge as the
    definition, whether the stack runs, falls back at run time (a clipping ADC, an
    ACT table with mixed signs, a bias P + b could carry out of int32, a product past
    2^24, variable cells, a calibration probe) or is declined for a hazard."""
    count = StackCount(monkeypatch)
    for seed in range(3000 + 40 * chunk, 3040 + 40 * chunk):
        monkeypatch.setattr(machine_fast, "STACK_COLUMNS", 6 if seed % 4 == 3 else 16384)
        section_case(seed, stack_section, words=200, stride=200,
                     bias=2**31 if seed % 3 == 0 else 50, variable=seed % 10 == 9,
                     probe=seed % 8 == 5)
    print(f"stacks: {count.built} built, {count.declined} declined, {count.runs} runs, "
          f"{count.fallbacks} fallbacks")
    assert count.built >= 30 and count.declined >= 3
    assert count.runs - count.fallbacks >= 30 and count.fallbacks >= 5


def test_strided_rows() -> None:
    """``strided_rows``: rows that step evenly along every axis (steps of any size,
    axes of one) as a view of exactly those rows, writable; other rows None."""
    a = np.arange(400 * 3).reshape(400, 3)
    for rows in (np.arange(12).reshape(3, 4), 5 + 7 * np.arange(6)[:, None, None] +
                 np.arange(2)[None, :, None] + 100 * np.arange(3)[None, None, :],
                 np.full((1, 1, 1), 9), 3 + 2 * np.arange(5)[None, :]):
        v = machine_fast.strided_rows(a, rows)
        assert v is not None
        np.testing.assert_array_equal(v, a[rows])
        b = a.copy()
        w = machine_fast.strided_rows(b, rows)
        assert w is not None
        w[...] = -1
        assert (b[rows] == -1).all() and (b == -1).sum() == rows.size * 3
    for rows in (np.array([0, 1, 3]), np.array([[0, 1], [5, 7]]), np.array([4, 2, 0])):
        assert machine_fast.strided_rows(a, rows) is None


def packed_product(plan: machine_fast.Packed, d: np.ndarray, lanes: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """W @ d and the read charge per column from the packed product (fields by
    shifts and masks, slot s = field s // rows of row s % rows)."""
    prod = (plan.lhs @ d.astype(np.float32)).astype(np.int64)
    bits, mask = machine_fast.PACK_BITS, (1 << machine_fast.PACK_BITS) - 1
    slot = np.concatenate([(prod >> (bits * f)) & mask
                           for f in range(machine_fast.PACK_FIELDS)])
    cnt = sum(slot[lanes + i] for i in range(len(plan.charges)))
    charge = sum(v * ((prod[r] >> (bits * f)) & mask) for v, r, f in plan.charges)
    return plan.g * slot[:lanes] + plan.off[:, None] * cnt, charge


@pytest.mark.parametrize("lanes", [1, 2, 3, 16, 21, 22])
def test_pack_plan_bounds(lanes: int) -> None:
    """``pack_plan``: exact products for odd lane counts and sums up to the field
    bound 2^8 - 1 (and the largest packed value 2^24 - 1); None from 2^8 on, with
    more charge values or rows of one charge than a field holds, or more lanes and
    charge values than the packed rows hold."""
    rng = np.random.default_rng(lanes)
    rows = 255
    w = rng.choice(np.array([-1, 1]), (lanes, rows))
    charge = np.where(rng.random(rows) < 0.5, 7, 3 << 20)
    for k in (1, -2, 3):
        plan = machine_fast.pack_plan(w, k, charge)
        assert plan is not None
        assert plan.lhs.shape[0] % machine_fast.PACK_ROW_STEP == 0
        assert plan.lhs.shape[0] * machine_fast.PACK_FIELDS >= lanes + 2
        d = rng.integers(0, 2, (rows, 37))
        d[:, 0] = 1  # every row driven: every field at its bound
        d[:, 1] = 0
        prod, ch = packed_product(plan, d, lanes)
        np.testing.assert_array_equal(prod, k * w @ d)
        np.testing.assert_array_equal(ch, charge @ d)
    # Lanes whose sum reaches 255 (every field of an all-ones drive at 255: the packed
    # value 2^24 - 1) pack; 256, three charge values or 256 rows of one charge do not.
    ones = np.ones((lanes, rows), np.int64)
    plan = machine_fast.pack_plan(ones, 1, charge)
    assert plan is not None and plan.g == 1
    d = np.ones((rows, 3), np.int64)
    d[:, 1] = 0
    prod, ch = packed_product(plan, d, lanes)
    np.testing.assert_array_equal(prod, ones @ d)
    np.testing.assert_array_equal(ch, charge @ d)
    if lanes >= 2 * plan.rows + 1:  # three fields of one row at 255
        assert int((plan.lhs @ d[:, 0].astype(np.float32)).max()) == 2**24 - 1
    wide = np.ones((lanes, rows + 1), np.int64)
    assert machine_fast.pack_plan(wide, 1, np.append(charge, 7)) is None
    two = ones.copy()
    two[:, 0] = 2  # sums of 256
    assert machine_fast.pack_plan(two, 1, charge) is None
    assert machine_fast.pack_plan(two, -1, charge) is not None  # offset 2: 2 * 255 - 256
    assert machine_fast.pack_plan(w, 1, np.arange(rows) % 3) is None
    same = np.full(rows + 1, 5)
    assert machine_fast.pack_plan(np.zeros((lanes, rows + 1), np.int64), 1, same) is None
    slots = machine_fast.PACK_MAX_ROWS * machine_fast.PACK_FIELDS
    over = np.ones((slots - 1, rows), np.int64)
    assert machine_fast.pack_plan(over, 1, np.full(rows, 7)) is not None
    assert machine_fast.pack_plan(over, 1, charge) is None


def test_image_with_pooled_machines_pickles(monkeypatch: pytest.MonkeyPatch) -> None:
    """An image whose plan cache holds released machines and the worker thread still
    pickles and copies (without them), and its copy runs the same; a forked process
    (another pid) gets a worker thread of its own."""
    import copy
    import pickle

    monkeypatch.setattr(machine_fast, "SPLIT_MACS", 1)
    net = random_network(3, ternary=False)
    comp = compile_network(net, make_config(None, {"mapping": "BNN_I", "rows": 24, "cols": 20,
                                                   "num_xbars": 2, "batch": 3}))
    q = np.random.default_rng(0).choice(np.array(net.input.values.values),
                                        size=(7, *net.input.shape)).astype(np.int16)
    want = run_golden(comp, q)
    assert "pool" in comp.image.plan_cache and "worker" in comp.image.plan_cache
    for img in (pickle.loads(pickle.dumps(comp.image)), copy.deepcopy(comp.image)):
        assert "pool" not in img.plan_cache and "worker" not in img.plan_cache
        _, _, res = fresh_run(comp, q, 0, Machine(img, comp.runs(7)))
        assert res == result_tuple(want.result)
    engine = Machine.reuse(comp.image, comp.runs(7))._engine
    assert engine is not None
    pid, pool = comp.image.plan_cache["worker"]
    comp.image.plan_cache["worker"] = (pid + 1, pool)  # as a forked child sees it
    assert engine.worker() is not pool

"""Seeded random chip images: valid and invalid programs for RTL-vs-golden tests.

Every program is a line of instructions whose fields are drawn inside their
legal ranges, with (for about half the programs) invalid instructions mixed
in: unknown opcodes, reserved field values (ACC src 3, ACT k 0, READ bit
8..14, LOOP count 0 or len 0), zero or too many lanes, and every kind of
out-of-range address (crossbar, row, column, weight word, ADC table, DMEM,
IN). Most programs also hold chains that carry a READ's results to DMEM
(LDIN, READ, ACC from CODE or NDRV, STA). Most programs hold a hardware loop
(count 1..6, stride 0 to past the end of DMEM, bodies that run off the
program or hold a nested LOOP) and DMEM operands are often IB-relative, so
later iterations can leave DMEM. Some programs have no HALT and run off the
end (PC_RANGE); some start at a pc past the end. DMEM vector instructions
often get overlapping source and destination ranges.
All images of one suite share one device map (one chip) with variability and
stuck cells.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from golden_model import isa
from golden_model.crossbar import INT32_MAX, DeviceMap, DeviceParams, sample_device_map
from golden_model.isa import BIT_SIGNED, Sense, Src
from golden_model.machine import ChipImage, MachineParams

#: The small, deliberately odd-sized chip the random programs run on.
RANDOM_PARAMS = MachineParams(rows=12, cols=10, num_xbars=3, dmem_words=96, wmem_words=16,
                              adc_tables=3, vec_width=3, t_read=2, t_adc=2, t_write=3,
                              adcs_per_xbar=4, hrs_units=100, coef_bits=2)


def random_devmap(p: MachineParams, seed: int) -> DeviceMap:
    return sample_device_map(DeviceParams(
        rows=p.rows, cols=p.cols, num_xbars=p.num_xbars, hrs_ua=5.0, lrs_ua=50.0, lsb_ua=0.05,
        sigma_hrs_ua=2.0, sigma_lrs_ua=6.0, stuck_lrs_rate=0.05, stuck_hrs_rate=0.05,
        seed=seed))


class ProgramGen:
    def __init__(self, p: MachineParams, seed: int) -> None:
        self.p = p
        self.rng = np.random.default_rng(seed)

    def _int(self, lo: int, hi: int) -> int:
        """Uniform in [lo, hi] (inclusive)."""
        return int(self.rng.integers(lo, hi + 1))

    def _lanes(self, hi: int) -> int:
        r = self.rng.random()
        if r < 0.25:
            return hi
        if r < 0.5:
            return self._int(1, min(hi, 4))
        return self._int(1, hi)

    def _vec_pair(self, n: int) -> tuple[int, int]:
        """Source and destination of an n-lane DMEM -> DMEM op, often overlapping."""
        d = self.p.dmem_words
        src = self._int(0, d - n)
        if self.rng.random() < 0.35:
            dst = min(d - n, max(0, src + self._int(-n, n)))
        else:
            dst = self._int(0, d - n)
        return src, dst

    def valid(self, n_w: int, n_t: int) -> isa.Instr:
        p = self.p
        op = str(self.rng.choice(
            ["NOP", "PROG", "INCLR", "LDIN", "READ", "READ", "READ", "ACC", "ACC", "ACC",
             "ACLR", "STA", "ACT", "ACT", "VCOPY", "VMAX", "CMAC", "CMAC"]))
        if op in ("NOP", "INCLR", "ACLR"):
            return isa.make(op)
        if op == "PROG":
            return isa.make(op, xbar=self._int(0, p.num_xbars - 1), row=self._int(0, p.rows - 1),
                            wsrc=self._int(0, n_w - 1))
        if op == "LDIN":
            n = self._lanes(p.rows)
            return isa.make(op, dst=self._int(0, p.rows - n), src=self._int(0, p.dmem_words - n),
                            lanes=n)
        if op == "READ":
            sense = int(self.rng.random() < 0.5)
            n = self._lanes(p.cols // 2 if sense == Sense.SYM else p.cols)
            width = 2 * n if sense == Sense.SYM else n
            bit = BIT_SIGNED if self.rng.random() < 0.5 else self._int(0, 7)
            return isa.make(op, xbar=self._int(0, p.num_xbars - 1),
                            row_off=self._int(0, p.rows - 1), col=self._int(0, p.cols - width),
                            mask_a=self._int(0, 7), mask_b=self._int(0, 7),
                            pair=self._int(0, 1), sense=sense, adc=self._int(0, n_t - 1),
                            bit=bit, lanes=n)
        if op == "ACC":
            src = self._int(0, 2)
            n = self._lanes(p.cols)
            if src == Src.CODE:
                addr = self._int(0, p.cols - n)
            elif src == Src.DMEM:
                addr = self._int(0, p.dmem_words - n)
            else:
                addr = self._int(0, 1000)
            sh = self._int(0, 15) if self.rng.random() < 0.3 else self._int(0, 2)
            return isa.make(op, src=src, mul=self._int(-128, 127), sh=sh, addr=addr, lanes=n)
        if op == "STA":
            n = self._lanes(p.cols)
            return isa.make(op, dst=self._int(0, p.dmem_words - n), lanes=n)
        if op == "CMAC":
            n = self._lanes(p.cols)
            k = self._lanes(p.cols // p.coef_bits)
            return isa.make(op, src=self._int(0, p.dmem_words - k),
                            coef=self._int(0, max(0, n_w - n)), n=k, lanes=min(n, n_w))
        if op == "ACT":
            k = self._int(1, 3)
            n = self._lanes(min(p.cols, p.dmem_words // (k + 1)))
            tbl = self._int(0, p.dmem_words - n * (k + 1))
            if self.rng.random() < 0.3:
                dst = min(p.dmem_words - n, max(0, tbl + self._int(-n, n * (k + 1))))
            else:
                dst = self._int(0, p.dmem_words - n)
            return isa.make(op, k=k, oscale=self._int(-4, 3), obias=self._int(-4, 3), tbl=tbl,
                            dst=dst, lanes=n)
        n = self._lanes(p.cols)
        src, dst = self._vec_pair(n)
        return isa.make(op, dst=dst, src=src, lanes=n)

    def relative(self, ins: isa.Instr) -> isa.Instr:
        """Set each DMEM address field's relative bit with probability 1/2."""
        rel = [f.name for f in isa.BY_NAME[ins.op].fields if f.name in
               ("rsrc", "rdst", "rtbl", "rel")]
        if not rel:
            return ins
        a = dict(ins.args)
        for name in rel:
            a[name] = self._int(0, 1)
        return isa.make(ins.op, **a)

    def loop(self, body_max: int) -> isa.Instr:
        count = int(self.rng.choice([1, 2, 3, self._int(2, 6), 65535]))
        if count == 65535 and self.rng.random() < 0.8:
            count = 4
        stride = int(self.rng.choice([0, 1, self._int(1, 12), self._int(0, self.p.dmem_words),
                                      self._int(self.p.dmem_words, (1 << 18) - 1)]))
        return isa.make("LOOP", count=count, len=self._int(1, max(1, body_max)), stride=stride)

    def invalid(self, n_w: int, n_t: int) -> int:
        """An encoded word the machine must reject."""
        p = self.p
        kind = self._int(0, 11)
        if kind == 0:  # unknown opcode, random payload
            code = self._int(len(isa.OPS), (1 << isa.OPCODE_BITS) - 1)
            return (code << isa.OPCODE_LSB) | int(self.rng.integers(0, 1 << 58))
        ins = self.valid(n_w, n_t)
        while ins.op in ("NOP", "INCLR", "ACLR"):
            ins = self.valid(n_w, n_t)
        a = dict(ins.args)
        spec = isa.BY_NAME[ins.op]

        def fmax(name: str) -> int:
            return spec.field(name).hi

        if "lanes" in a and kind == 1:
            a["lanes"] = 0
        elif "lanes" in a and kind == 2:
            a["lanes"] = self._int((p.rows if ins.op == "LDIN" else p.cols) + 1, fmax("lanes"))
        elif ins.op == "ACC" and kind == 3:
            a["src"] = 3
        elif ins.op == "ACT" and kind == 3:
            a["k"] = 0
        elif ins.op == "READ" and kind == 3:
            a["bit"] = self._int(8, BIT_SIGNED - 1)
        elif ins.op in ("PROG", "READ") and kind == 4:
            a["xbar"] = self._int(p.num_xbars, fmax("xbar"))
        elif ins.op == "PROG" and kind == 5:
            a["row"] = self._int(p.rows, fmax("row"))
        elif ins.op == "PROG" and kind == 6:
            a["wsrc"] = self._int(n_w, p.wmem_words + 3)
        elif ins.op == "READ" and kind == 5:
            a["row_off"] = self._int(p.rows, fmax("row_off"))
        elif ins.op == "READ" and kind == 6:
            a["col"] = self._int(p.cols - a["lanes"] + 1, fmax("col"))
        elif ins.op == "READ" and kind == 7:
            a["adc"] = self._int(n_t, fmax("adc"))
        elif ins.op == "CMAC" and kind in (3, 4):
            a["n"] = 0 if kind == 3 else self._int(p.cols // p.coef_bits + 1, fmax("n"))
        elif ins.op == "CMAC" and kind == 5:
            a["coef"] = self._int(n_w - a["lanes"] + 1, n_w + 20)
        elif ins.op == "CMAC":
            a["src"] = self._int(p.dmem_words - a["n"] + 1, p.dmem_words + 40)
        elif ins.op == "ACC":
            if a["src"] == Src.NDRV:
                a["lanes"] = 0
            else:  # CODE offset or DMEM address past the end
                lim = p.cols if a["src"] == Src.CODE else p.dmem_words
                a["addr"] = self._int(lim - a["lanes"] + 1, lim + 40)
        elif "lanes" in a and not any(n in a for n in ("src", "dst", "tbl")):
            a["lanes"] = 0
        elif "lanes" in a:
            # A DMEM (or, for LDIN.dst, IN) range past the end.
            names = [n for n in ("src", "dst", "tbl") if n in a]
            name = names[self._int(0, len(names) - 1)]
            lim = p.rows if (ins.op == "LDIN" and name == "dst") else p.dmem_words
            a[name] = self._int(lim - a["lanes"] + 1, min(fmax(name), lim + 40))
        word = isa.OPS[[o.name for o in isa.OPS].index(ins.op)].code << isa.OPCODE_LSB
        for f in spec.fields:
            word |= (a[f.name] & ((1 << f.width) - 1)) << f.lsb
        return word

    def adc_tables(self, n_t: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        n_thr = 2 * p.rows
        thr = np.full((n_t, n_thr), INT32_MAX, np.int64)
        rec = np.zeros((n_t, n_thr + 1), np.int64)
        for t in range(n_t):
            m = self._int(1, n_thr)
            span = self._int(500, 12000)
            thr[t, :m] = np.sort(self.rng.integers(-span, span, m))
            levels = np.sort(self.rng.integers(-p.rows, p.rows + 1, m + 1))
            if self.rng.random() < 0.2:
                levels = self.rng.integers(-(2**31), 2**31, m + 1)  # arbitrary 32-bit levels
            rec[t, :m + 1] = levels
            rec[t, m + 1:] = levels[-1]
        return thr, rec

    def dmem(self, n: int) -> np.ndarray:
        r = self.rng.random(n)
        small = self.rng.integers(-3, 4, n)
        mid = self.rng.integers(-300, 300, n)
        big = self.rng.integers(-(2**31), 2**31, n)
        return np.where(r < 0.6, small, np.where(r < 0.85, mid, big)).astype(np.int32)

    def chain(self, n_w: int, n_t: int) -> list[isa.Instr]:
        """A READ whose results reach DMEM: IN loaded (twice, overlapping, at
        times), the READ, up to two other instructions, ACC from CODE or NDRV,
        STA. In purely random lines most READ results are overwritten before
        anything stores them, so datapath bugs of the row drive, the sense
        and ACC's CODE/NDRV paths would go unseen."""
        p = self.p
        out: list[isa.Instr] = []
        if self.rng.random() < 0.7:
            out.append(isa.make("INCLR"))
        for _ in range(self._int(1, 2)):
            n = self._lanes(p.rows)
            out.append(isa.make("LDIN", dst=self._int(0, p.rows - n),
                                src=self._int(0, p.dmem_words - n), lanes=n))
        read = self.valid(n_w, n_t)
        while read.op != "READ":
            read = self.valid(n_w, n_t)
        out.append(read)
        for _ in range(self._int(0, 2)):
            other = self.valid(n_w, n_t)
            if other.op not in ("READ", "INCLR", "ACLR", "STA"):
                out.append(other)
        if self.rng.random() < 0.5:
            out.append(isa.make("ACLR"))
        src = int(Src.CODE) if self.rng.random() < 0.7 else int(Src.NDRV)
        n = self._lanes(p.cols)
        addr = self._int(0, p.cols - n) if src == Src.CODE else 0
        out.append(isa.make("ACC", src=src, mul=self._int(-128, 127), sh=self._int(0, 2),
                            addr=addr, lanes=n))
        out.append(isa.make("STA", dst=self._int(0, p.dmem_words - n), lanes=n))
        return out

    def image(self, devmap: DeviceMap, n_instr: int | None = None) -> tuple[ChipImage, int]:
        """A random image and its entry pc."""
        p = self.p
        n_w = self._int(1, p.wmem_words)
        n_t = self._int(1, p.adc_tables)
        n = n_instr or self._int(5, 40)
        words = [isa.encode(self.relative(self.valid(n_w, n_t))) for _ in range(n)]
        if n_instr is None and self.rng.random() < 0.6:
            for _ in range(self._int(1, 3)):
                at = self._int(0, len(words))
                words[at:at] = [isa.encode(i) for i in self.chain(n_w, n_t)]
            n = len(words)
        if self.rng.random() < 0.7:
            at = self._int(0, n - 1)
            words[at] = isa.encode(self.loop(n - at + 2))
            if self.rng.random() < 0.1 and at + 1 < n:  # a LOOP in the body: ILLEGAL
                words[self._int(at + 1, n - 1)] = isa.encode(isa.make("LOOP", count=2, len=1))
            if self.rng.random() < 0.1:  # count 0 or len 0: ILLEGAL
                zero = isa.make("LOOP", count=self._int(0, 1), len=0, stride=3) \
                    if self.rng.random() < 0.5 else isa.make("LOOP", count=0, len=2)
                words[at] = isa.encode(zero)
        if self.rng.random() < 0.5:
            for _ in range(self._int(1, 2)):
                words[self._int(0, n - 1)] = self.invalid(n_w, n_t)
        if self.rng.random() < 0.8:
            words.append(isa.encode(isa.make("HALT")))
        entry = 0
        r = self.rng.random()
        if r < 0.1:
            entry = self._int(1, len(words) - 1)
        elif r < 0.13:
            entry = len(words) + self._int(0, 3)  # starts outside the program
        thr, rec = self.adc_tables(n_t)
        wmem = self.rng.integers(0, 2, (n_w, p.cols)).astype(np.uint8)
        return ChipImage(p, tuple(words), wmem, self.dmem(self._int(0, p.dmem_words)), thr, rec,
                         devmap), entry


def boundary_cases(p: MachineParams) -> list[tuple[str, list[isa.Instr]]]:
    """Directed range-check corners: for every checked field, the last legal
    value and the first illegal one, directly and as an IB-relative operand
    in the second iteration of a loop (IB = stride), so that an off-by-one in
    any check, or IB added to the wrong operand, changes the outcome. Each case
    is a short program (setup, the instruction under test, HALT); the golden
    machine says which ones fault and how."""
    d, r, c, x = p.dmem_words, p.rows, p.cols, p.num_xbars
    n = 3  # lanes of the vector cases
    ld = isa.make("LDIN", dst=0, src=0, lanes=min(r, 4))
    rd = isa.make("READ", xbar=0, row_off=0, col=0, mask_a=4, mask_b=1, sense=Sense.POS,
                  adc=0, bit=BIT_SIGNED, lanes=n)
    cases: list[tuple[str, list[isa.Instr]]] = []

    def add(name: str, *ins: isa.Instr) -> None:
        cases.append((name, [*ins, isa.make("HALT")]))

    for edge, ok in (("last", 0), ("past", 1)):
        add(f"prog-xbar-{edge}", isa.make("PROG", xbar=x - 1 + ok, row=0, wsrc=0))
        add(f"prog-row-{edge}", isa.make("PROG", xbar=0, row=r - 1 + ok, wsrc=0))
        add(f"ldin-dst-{edge}", isa.make("LDIN", dst=r - n + ok, src=0, lanes=n))
        add(f"ldin-src-{edge}", isa.make("LDIN", dst=0, src=d - n + ok, lanes=n))
        add(f"ldin-lanes-{edge}", isa.make("LDIN", dst=0, src=0, lanes=r + ok))
        add(f"read-xbar-{edge}", ld, isa.make("READ", **{**dict(rd.args), "xbar": x - 1 + ok}))
        add(f"read-row-{edge}", ld, isa.make("READ", **{**dict(rd.args), "row_off": r - 1 + ok}))
        add(f"read-col-pos-{edge}", ld, isa.make("READ", **{**dict(rd.args),
                                                          "col": c - n + ok}))
        add(f"read-col-sym-{edge}", ld, isa.make("READ", **{**dict(rd.args), "sense": Sense.SYM,
                                                          "col": c - 2 * n + ok}))
        add(f"read-lanes-{edge}", ld, isa.make("READ", **{**dict(rd.args), "lanes": c + ok}))
        add(f"read-bit-{edge}", ld, isa.make("READ", **{**dict(rd.args), "bit": 7 + ok}))
        add(f"acc-code-{edge}", ld, rd, isa.make("ACC", src=Src.CODE, mul=1, addr=c - n + ok,
                                                 lanes=n))
        add(f"acc-dmem-{edge}", isa.make("ACC", src=Src.DMEM, mul=-3, sh=2, addr=d - n + ok,
                                         lanes=n))
        add(f"acc-lanes-{edge}", isa.make("ACC", src=Src.NDRV, mul=2, lanes=c + ok))
        add(f"sta-{edge}", isa.make("ACC", src=Src.DMEM, mul=1, addr=0, lanes=n),
            isa.make("STA", dst=d - n + ok, lanes=n))
        for k in (1, 3):
            add(f"act{k}-tbl-{edge}", isa.make("ACT", k=k, oscale=1, tbl=d - n * (k + 1) + ok,
                                               dst=0, lanes=n))
        add(f"act-dst-{edge}", isa.make("ACT", k=1, oscale=1, tbl=0, dst=d - n + ok, lanes=n))
        for op in ("VCOPY", "VMAX"):
            add(f"{op.lower()}-dst-{edge}", isa.make(op, dst=d - n + ok, src=0, lanes=n))
            add(f"{op.lower()}-src-{edge}", isa.make(op, dst=0, src=d - n + ok, lanes=n))
        add(f"loop-count-{edge}", isa.make("LOOP", count=1 - ok, len=1, stride=1), isa.make("NOP"))
        add(f"loop-len-{edge}", isa.make("LOOP", count=2, len=1 - ok, stride=1), isa.make("NOP"))
        add(f"act-k-{edge}", isa.make("ACT", k=1 - ok, oscale=1, tbl=0, dst=0, lanes=n))
    # IB-relative operands: the second iteration of a stride-s loop reads or
    # writes field + s; the first iteration is in range either way.
    s = d // 2
    rel_ops = [("LDIN", "src", "rsrc", {"dst": 0}), ("ACC", "addr", "rel", {"src": Src.DMEM,
                                                                           "mul": 1}),
               ("STA", "dst", "rel", {}), ("ACT", "dst", "rdst", {"k": 1, "tbl": 0}),
               ("ACT", "tbl", "rtbl", {"k": 1, "dst": 0}),
               ("VCOPY", "dst", "rdst", {"src": 0}), ("VCOPY", "src", "rsrc", {"dst": 0}),
               ("VMAX", "dst", "rdst", {"src": 0}), ("VMAX", "src", "rsrc", {"dst": 0})]
    for op, fld, rel, other in rel_ops:
        width = n * 2 if (op == "ACT" and fld == "tbl") else n
        for edge, ok in (("last", 0), ("past", 1)):
            v = d - s - width + ok
            body = isa.make(op, **other, **{fld: v, rel: 1, "lanes": n})
            add(f"rel-{op.lower()}-{fld}-{edge}", isa.make("LOOP", count=2, len=1, stride=s),
                body)
            # The same field without its relative bit never leaves DMEM: IB
            # must be added only where the bit says so.
            flat = isa.make(op, **other, **{fld: d - width, rel: 0, "lanes": n})
            add(f"abs-{op.lower()}-{fld}-{edge}", isa.make("LOOP", count=2, len=1, stride=s + ok),
                flat)
    return cases


def boundary_sessions(p: MachineParams, devmap: DeviceMap, seed: int = 5) -> list[Any]:
    """The boundary cases as sessions of one simulation (random DMEM, ADC
    tables and weights from ``seed``); every case runs from pc 0."""
    from cimgen.hw.rtl_sim import RunSpec, Session

    gen = ProgramGen(p, seed)
    thr, rec = gen.adc_tables(p.adc_tables)
    wmem = gen.rng.integers(0, 2, (p.wmem_words, p.cols)).astype(np.uint8)
    dmem = gen.dmem(p.dmem_words)
    out = []
    for _, prog in boundary_cases(p):
        img = ChipImage(p, tuple(isa.encode(i) for i in prog), wmem, dmem, thr, rec, devmap)
        out.append(Session(img, [RunSpec(0, reads=[(0, p.dmem_words)])],
                           dmem_zero_to=p.dmem_words))
    # Weight-memory length: the last loaded row, and the first one not loaded.
    for rows in (p.wmem_words, 5):
        for wsrc in (rows - 1, rows):
            prog = (isa.make("PROG", xbar=1, row=2, wsrc=wsrc), isa.make("HALT"))
            img = ChipImage(p, tuple(isa.encode(i) for i in prog), wmem[:rows], dmem, thr, rec,
                            devmap)
            out.append(Session(img, [RunSpec(0, reads=[(0, 4)])]))
    # ADC table count: the last loaded table and the first one not loaded.
    for tables in (p.adc_tables, 2):
        for t in (tables - 1, tables):
            prog = (isa.make("LDIN", dst=0, src=0, lanes=4),
                    isa.make("READ", xbar=0, row_off=0, col=0, mask_a=4, sense=Sense.POS,
                             adc=t, bit=BIT_SIGNED, lanes=3),
                    isa.make("ACC", src=Src.CODE, mul=1, lanes=3),
                    isa.make("STA", dst=0, lanes=3), isa.make("HALT"))
            img = ChipImage(p, tuple(isa.encode(i) for i in prog), wmem, dmem, thr[:tables],
                            rec[:tables], devmap)
            out.append(Session(img, [RunSpec(0, reads=[(0, 4)])]))
    return out

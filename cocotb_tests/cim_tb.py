"""cocotb testbench of ``cim_top`` (runs inside the simulator).

The simulated toplevel is ``cim_cocotb_top`` (cocotb_tests/hdl/), a wrapper of
cim_top that generates the clock in HDL (Verilator --timing), so that cocotb
does not toggle it through VPI every half period (on a bare cim_top, CimTB
starts a cocotb Clock instead). ``CimTB`` owns the reset and a cocotbext-axi
``AxiLiteMaster`` on the slave port; it loads chip images through the AXI4-Lite
load path, starts the controller and sleeps until the done interrupt (no
Python and no VPI access per clock cycle while the controller runs). Tests:

* ``run_job``: executes the job file named by ``+CIM_JOB=`` (written by
  ``cimgen.hw.rtl_sim.simulate``) and pickles the results next to it; the
  comparison with the golden machine happens on the Python side
  (``cocotb_tests/scoreboard.py``).
* ``regmap``: register-map reset values, read-only fields, RW/W1C behaviour,
  error responses.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import random
import time
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiLiteReadBus, AxiLiteWriteBus, AxiResp
from cocotbext.axi.axil_channels import (
    AxiLiteARBus,
    AxiLiteAWBus,
    AxiLiteBBus,
    AxiLiteRBus,
    AxiLiteWBus,
)

from cimgen.hw.rtl_sim import (
    CIM_ID,
    CSR,
    RTL_VERSION,
    WIN_ADC_REC,
    WIN_ADC_THR,
    WIN_CSR,
    WIN_DMEM,
    WIN_PROG,
    WIN_WMEM,
    RtlParams,
)

# Slave port names: lowRISC suffixes (_i inputs, _o outputs of the DUT).
_OUTPUTS = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"}


def _bus(cls: type, dut: Any, prefix: str) -> Any:
    def names(sigs: Any) -> dict[str, str]:
        return {s: f"{s}_{'o' if s in _OUTPUTS else 'i'}" for s in sigs}

    sub = type(cls.__name__ + "Sfx", (cls,), {"_signals": names(cls._signals),
                                              "_optional_signals": names(cls._optional_signals)})
    return sub(dut, prefix)


def axil_bus(dut: Any, prefix: str = "s_axil") -> AxiLiteBus:
    write = AxiLiteWriteBus(_bus(AxiLiteAWBus, dut, prefix), _bus(AxiLiteWBus, dut, prefix),
                            _bus(AxiLiteBBus, dut, prefix))
    read = AxiLiteReadBus(_bus(AxiLiteARBus, dut, prefix), _bus(AxiLiteRBus, dut, prefix))
    return AxiLiteBus(write, read)


class AxiError(Exception):
    pass


class CimTB:
    """Clock, reset, AXI4-Lite master and the host-side driver of the chip."""

    def __init__(self, dut: Any, params: RtlParams, clock_ns: int = 10,
                 hdl_clock: bool | None = None) -> None:
        """``hdl_clock``: the toplevel generates clk_i itself (the wrapper
        cocotb_tests/hdl/cim_cocotb_top.sv, period ``clock_ns``); default: any
        toplevel but a bare cim_top. Otherwise a cocotb Clock drives clk_i."""
        self.dut = dut
        self.p = params
        self.clock_ns = clock_ns
        if hdl_clock is None:
            hdl_clock = dut._name != "cim_top"
        self.hdl_clock = hdl_clock
        if not hdl_clock:
            Clock(dut.clk_i, clock_ns, unit="ns").start()
        self.axil = AxiLiteMaster(axil_bus(dut), dut.clk_i, dut.rst_ni, reset_active_level=False)
        for name in (f"cocotb.{dut._name}.s_axil", f"cocotb.{dut._name}"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.sim_cycles = 0

    # ------------------------------------------------------------ basics
    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst_ni.value = 0
        await ClockCycles(self.dut.clk_i, cycles)
        self.dut.rst_ni.value = 1
        await ClockCycles(self.dut.clk_i, 2)

    def backpressure(self, seed: int) -> None:
        """Random pauses on all five AXI4-Lite channels (valid and ready)."""
        rng = random.Random(seed)

        def gen() -> Any:
            return itertools.cycle([rng.random() < 0.4 for _ in range(257)])

        w, r = self.axil.write_if, self.axil.read_if
        for ch in (w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel):
            ch.set_pause_generator(gen())

    def _bus_budget_ns(self, n_bytes: int) -> int:
        """Watchdog of one host access: 64 cycles per word plus 1000 (a word
        takes a few cycles even under backpressure)."""
        return (64 * (n_bytes // 4 + 1) + 1000) * self.clock_ns

    async def _guard(self, what: str, n_bytes: int, coro: Any) -> Any:
        try:
            return await with_timeout(coro, self._bus_budget_ns(n_bytes), "ns")
        except Exception as e:  # cocotb's SimTimeoutError
            if type(e).__name__ == "SimTimeoutError":
                raise AxiError(f"{what}: no response within "
                               f"{self._bus_budget_ns(n_bytes) // self.clock_ns} cycles: "
                               "bus hang") from None
            raise

    async def write(self, addr: int, data: bytes, check: bool = True) -> AxiResp:
        resp = await self._guard(f"write 0x{addr:08x}", len(data), self.axil.write(addr, data))
        if check and resp.resp != AxiResp.OKAY:
            raise AxiError(f"write 0x{addr:08x} ({len(data)} bytes): {resp.resp!r}")
        return resp.resp

    async def write32(self, addr: int, value: int, check: bool = True) -> AxiResp:
        return await self.write(addr, int(value & 0xFFFFFFFF).to_bytes(4, "little"), check)

    async def read(self, addr: int, n_bytes: int) -> tuple[bytes, AxiResp]:
        resp = await self._guard(f"read 0x{addr:08x}", n_bytes, self.axil.read(addr, n_bytes))
        return bytes(resp.data), resp.resp

    async def read32(self, addr: int, check: bool = True) -> int:
        data, resp = await self.read(addr, 4)
        if check and resp != AxiResp.OKAY:
            raise AxiError(f"read 0x{addr:08x}: {resp!r}")
        return int.from_bytes(data, "little")

    async def csr(self, name: str) -> int:
        return await self.read32(WIN_CSR + CSR[name])

    async def set_csr(self, name: str, value: int) -> None:
        await self.write32(WIN_CSR + CSR[name], value)

    # ------------------------------------------------------------ loading
    async def load(self, s: dict[str, Any]) -> None:
        p = self.p
        prog = np.asarray(s["program"], dtype="<u8")
        if prog.size:
            await self.write(WIN_PROG, prog.tobytes())
        wmem = np.asarray(s["wmem"], dtype=np.uint8)
        if wmem.size:
            chunks = -(-p.COLS // 32)
            packed = np.packbits(wmem, axis=1, bitorder="little")
            rows = np.zeros((wmem.shape[0], chunks * 4), np.uint8)
            rows[:, :packed.shape[1]] = packed
            if chunks == p.wmem_stride:
                await self.write(WIN_WMEM, rows.tobytes())
            else:
                for r in range(rows.shape[0]):
                    await self.write(WIN_WMEM + 4 * r * p.wmem_stride, rows[r].tobytes())
        dmem = np.asarray(s["dmem"], dtype="<i4")
        if dmem.size:
            await self.write(WIN_DMEM, dmem.tobytes())
        for base, stride, arr in ((WIN_ADC_THR, p.thr_stride, s["adc_thr"]),
                                  (WIN_ADC_REC, p.rec_stride, s["adc_rec"])):
            arr = np.asarray(arr, dtype="<i4")
            if arr.size and arr.shape[1] == stride:
                await self.write(base, arr.tobytes())
            else:
                for t in range(arr.shape[0]):
                    await self.write(base + 4 * t * stride, arr[t].tobytes())
        await self.set_lengths(s)

    async def set_lengths(self, s: dict[str, Any]) -> None:
        await self.set_csr("PROG_LEN", len(s["program"]))
        await self.set_csr("WMEM_LEN", int(np.asarray(s["wmem"]).shape[0]))
        await self.set_csr("ADC_LEN", int(np.asarray(s["adc_thr"]).shape[0]))
        await self.set_csr("IRQ_ENABLE", 1)

    # ------------------------------------------------------------ running
    async def start(self, entry: int) -> None:
        await self.set_csr("IRQ_STATUS", 1)
        await self.set_csr("ENTRY", entry)
        await self.set_csr("CTRL", 1)

    async def wait_done(self, timeout_cycles: int) -> bool:
        """Sleep until the done interrupt; False on timeout (a hang)."""
        if int(self.dut.irq_o.value) == 1:
            return True
        try:
            await with_timeout(RisingEdge(self.dut.irq_o), timeout_cycles * self.clock_ns, "ns")
        except Exception as e:  # cocotb's SimTimeoutError
            if type(e).__name__ == "SimTimeoutError":
                return False
            raise
        return True

    async def status(self) -> dict[str, int]:
        data, resp = await self.read(WIN_CSR, CSR["PROGS"] + 4)
        if resp != AxiResp.OKAY:
            raise AxiError(f"CSR block read: {resp!r}")
        w = np.frombuffer(data, dtype="<u4")

        def reg(name: str) -> int:
            return int(w[CSR[name] // 4])

        fault = reg("FAULT_PC")
        return {"status": reg("STATUS"), "error": reg("ERROR"),
                "fault_pc": -1 if fault == 0xFFFFFFFF else fault, "pc": reg("PC"),
                "cycles": reg("CYCLES_LO") | (reg("CYCLES_HI") << 32),
                "instructions": reg("INSTRET"), "reads": reg("READS"), "progs": reg("PROGS")}

    async def read_dmem(self, addr: int, n: int) -> np.ndarray:
        data, resp = await self.read(WIN_DMEM + 4 * addr, 4 * n)
        if resp != AxiResp.OKAY:
            raise AxiError(f"DMEM read {addr}+{n}: {resp!r}")
        return np.frombuffer(data, dtype="<i4").astype(np.int64)

    async def do_run(self, s: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        t0 = time.time()
        for addr, words in run["writes"]:
            await self.write(WIN_DMEM + 4 * addr, np.asarray(words, "<i4").tobytes())
        reset_checked = None
        if run.get("reset_after") is not None:
            await self.start(run["entry"])
            await Timer(int(run["reset_after"]) * self.clock_ns, "ns")
            busy = int(self.dut.busy_o.value)
            await self.reset()
            reset_checked = {"busy_before_reset": busy}
            for name in ("STATUS", "ERROR", "FAULT_PC", "CYCLES_LO", "CYCLES_HI", "INSTRET",
                         "IRQ_STATUS", "IRQ_ENABLE", "PROG_LEN", "WMEM_LEN", "ADC_LEN",
                         "ENTRY", "READS", "PROGS"):
                reset_checked[name] = await self.csr(name)
            await self.set_lengths(s)
            for addr, words in run["writes"]:
                await self.write(WIN_DMEM + 4 * addr, np.asarray(words, "<i4").tobytes())
        await self.start(run["entry"])
        t_start = cocotb.utils.get_sim_time("ns")
        if not await self.wait_done(int(run["timeout_cycles"])):
            raise AxiError(f"controller did not finish within {run['timeout_cycles']} cycles "
                           f"(entry {run['entry']}): hang")
        self.sim_cycles += int((cocotb.utils.get_sim_time("ns") - t_start) // self.clock_ns)
        st = await self.status()
        data = [await self.read_dmem(a, n) for a, n in run["reads"]]
        return {**st, "data": data, "wall_s": time.time() - t0, "reset_checked": reset_checked}


@cocotb.test()
async def run_job(dut: Any) -> None:
    """Execute the job file of cimgen.hw.rtl_sim.simulate and pickle the results."""
    path = cocotb.plusargs["CIM_JOB"]
    with open(path, "rb") as f:
        job = pickle.load(f)
    out: dict[str, Any] = {"sessions": []}
    t0 = time.time()
    try:
        tb = CimTB(dut, RtlParams(**job["params"]), job.get("clock_ns", 10))
        await tb.reset()
        if job.get("backpressure"):
            tb.backpressure(int(job.get("seed", 0)))
        load_s = 0.0
        for s in job["sessions"]:
            t1 = time.time()
            await tb.load(s)
            load_s += time.time() - t1
            out["sessions"].append([await tb.do_run(s, r) for r in s["runs"]])
        out["load_s"] = round(load_s, 3)
        out["sim_cycles"] = tb.sim_cycles
    except AxiError as e:
        out["error"] = str(e)
    out["tb_wall_s"] = round(time.time() - t0, 3)
    with open(job["result"], "wb") as f:
        pickle.dump(out, f)
    assert "error" not in out, out["error"]


@cocotb.test()
async def regmap(dut: Any) -> None:
    """Reset values, read-only fields, RW/W1C registers and error responses."""
    with open(cocotb.plusargs["CIM_JOB"], "rb") as f:
        job = pickle.load(f)
    p = RtlParams(**job["params"])
    tb = CimTB(dut, p)
    await tb.reset()
    expect = {"ID": CIM_ID, "VERSION": (RTL_VERSION << 16) | 1, "CTRL": 0, "ENTRY": 0,
              "STATUS": 0, "ERROR": 0, "FAULT_PC": 0xFFFFFFFF, "PC": 0, "CYCLES_LO": 0,
              "CYCLES_HI": 0, "INSTRET": 0, "IRQ_ENABLE": 0, "IRQ_STATUS": 0, "PROG_LEN": 0,
              "WMEM_LEN": 0, "ADC_LEN": 0, "READS": 0, "PROGS": 0,
              "P_ROWS": p.ROWS, "P_COLS": p.COLS, "P_NUM_XBARS": p.NUM_XBARS,
              "P_PROG_WORDS": p.PROG_WORDS, "P_DMEM_WORDS": p.DMEM_WORDS,
              "P_WMEM_WORDS": p.WMEM_WORDS, "P_ADC_TABLES": p.ADC_TABLES,
              "P_VEC_WIDTH": p.VEC_WIDTH, "P_ADCS": p.ADCS, "P_T_READ": p.T_READ,
              "P_T_ADC": p.T_ADC, "P_T_WRITE": p.T_WRITE, "P_HRS_UNITS": p.HRS_UNITS,
              "P_CUR_W": p.CUR_W, "P_WMEM_STRIDE": p.wmem_stride,
              "P_THR_STRIDE": p.thr_stride, "P_REC_STRIDE": p.rec_stride}
    from golden_model.isa import ISA_VERSION
    expect["VERSION"] = (RTL_VERSION << 16) | ISA_VERSION
    for name, value in expect.items():
        got = await tb.csr(name)
        assert got == value, f"reset value of {name}: 0x{got:08x} != 0x{value:08x}"
    # Read-only registers ignore writes.
    ro = [n for n in expect if n not in ("CTRL", "ENTRY", "IRQ_ENABLE", "IRQ_STATUS",
                                         "PROG_LEN", "WMEM_LEN", "ADC_LEN")]
    for name in ro:
        await tb.set_csr(name, 0xA5A5A5A5)
        got = await tb.csr(name)
        assert got == expect[name], f"read-only {name} changed to 0x{got:08x}"
    # Read/write registers, with byte strobes.
    for name in ("ENTRY", "PROG_LEN", "WMEM_LEN", "ADC_LEN"):
        await tb.set_csr(name, 0x12345678)
        assert await tb.csr(name) == 0x12345678, name
        await tb.write(WIN_CSR + CSR[name] + 1, b"\xab")  # byte lane 1 only
        assert await tb.csr(name) == 0x1234AB78, name
        await tb.set_csr(name, 0)
    await tb.set_csr("IRQ_ENABLE", 0xFFFFFFFF)
    assert await tb.csr("IRQ_ENABLE") == 1
    # Unknown CSR offsets read as zero and ignore writes.
    await tb.write32(WIN_CSR + 0x7F0, 0xFFFFFFFF)
    assert await tb.read32(WIN_CSR + 0x7F0) == 0
    # A run with an empty program faults at once (PC_RANGE) and raises the interrupt.
    await tb.set_csr("PROG_LEN", 0)
    assert int(dut.irq_o.value) == 0
    await tb.start(0)
    assert await tb.wait_done(100)
    st = await tb.status()
    assert st["error"] == 7 and st["fault_pc"] == 0 and st["cycles"] == 1, st
    assert st["status"] == 0b110, st  # DONE | ERROR, not BUSY
    assert await tb.csr("IRQ_STATUS") == 1 and int(dut.irq_o.value) == 1
    await tb.set_csr("IRQ_STATUS", 1)  # write 1 to clear
    assert await tb.csr("IRQ_STATUS") == 0 and int(dut.irq_o.value) == 0
    # Error responses: unknown window DECERR, write-only windows and past-the-end SLVERR.
    _, resp = await tb.read(0x6000_0000, 4)
    assert resp == AxiResp.DECERR, resp
    assert await tb.write32(0x6000_0000, 1, check=False) == AxiResp.DECERR
    for win in (WIN_PROG, WIN_WMEM, WIN_ADC_THR, WIN_ADC_REC):
        _, resp = await tb.read(win, 4)
        assert resp == AxiResp.SLVERR, (hex(win), resp)
    assert await tb.write32(WIN_DMEM + 4 * p.DMEM_WORDS, 1, check=False) == AxiResp.SLVERR
    assert await tb.write32(WIN_PROG + 8 * p.PROG_WORDS, 1, check=False) == AxiResp.SLVERR
    _, resp = await tb.read(WIN_DMEM + 4 * p.DMEM_WORDS, 4)
    assert resp == AxiResp.SLVERR
    # DMEM read-back with byte strobes.
    await tb.write32(WIN_DMEM + 8, 0x11223344)
    await tb.write(WIN_DMEM + 8 + 2, b"\x99")
    assert await tb.read32(WIN_DMEM + 8) == 0x11993344
    # While busy: memory windows and START answer SLVERR, STATUS shows BUSY.
    n_nop = 300
    prog = np.zeros(n_nop + 1, dtype="<u8")
    prog[-1] = 1 << 58  # HALT
    await tb.write(WIN_PROG, prog.tobytes())
    await tb.set_csr("PROG_LEN", n_nop + 1)
    await tb.start(0)
    assert (await tb.csr("STATUS")) & 1 == 1
    assert await tb.write32(WIN_DMEM + 8, 5, check=False) == AxiResp.SLVERR
    assert await tb.write32(WIN_PROG, 5, check=False) == AxiResp.SLVERR
    _, resp = await tb.read(WIN_DMEM + 8, 4)
    assert resp == AxiResp.SLVERR
    assert await tb.write32(WIN_CSR + CSR["CTRL"], 1, check=False) == AxiResp.SLVERR
    assert await tb.write32(WIN_CSR + CSR["PROG_LEN"], 1, check=False) == AxiResp.SLVERR
    assert await tb.wait_done(10 * n_nop)
    st = await tb.status()
    assert st == {"status": 0b010, "error": 0, "fault_pc": -1, "pc": n_nop,
                  "cycles": n_nop + 1, "instructions": n_nop + 1, "reads": 0, "progs": 0}, st
    assert await tb.read32(WIN_DMEM + 8) == 0x11993344
    assert await tb.csr("PROG_LEN") == n_nop + 1


class RawAxiLite:
    """A bare AXI4-Lite master that drives the port signals itself, so that a
    test can break the protocol on purpose (cocotbext-axi never does)."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut
        for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
            getattr(dut, f"s_axil_{name}_i").value = 0
        for name in ("awaddr", "wdata", "araddr", "awprot", "arprot"):
            getattr(dut, f"s_axil_{name}_i").value = 0
        dut.s_axil_wstrb_i.value = 0

    async def edge(self, n: int = 1) -> None:
        await ClockCycles(self.dut.clk_i, n)

    def out(self, name: str) -> int:
        return int(getattr(self.dut, f"s_axil_{name}_o").value)

    async def aw(self, addr: int) -> None:
        """Present a write address and hold it until accepted."""
        self.dut.s_axil_awaddr_i.value = addr
        self.dut.s_axil_awvalid_i.value = 1
        await self.edge()
        while not self.out("awready"):
            await self.edge()
        self.dut.s_axil_awvalid_i.value = 0

    async def w(self, data: int) -> None:
        self.dut.s_axil_wdata_i.value = data
        self.dut.s_axil_wstrb_i.value = 0xF
        self.dut.s_axil_wvalid_i.value = 1
        await self.edge()
        while not self.out("wready"):
            await self.edge()
        self.dut.s_axil_wvalid_i.value = 0

    async def b(self) -> int:
        self.dut.s_axil_bready_i.value = 1
        await self.edge()
        while not self.out("bvalid"):
            await self.edge()
        resp = self.out("bresp")
        self.dut.s_axil_bready_i.value = 0
        return resp


@cocotb.test()
async def axil_violation(dut: Any) -> None:
    """Drive the slave port with a raw master that follows (kind ``legal``) or
    breaks one AXI4-Lite rule; the assertions bound into cim_axil_regs must stop
    the simulation on the broken ones (the pytest side checks which fired).

    The slave's awready is low while it holds an address whose data has not
    come, and arready is low while a read response waits: that is when the
    master's valid and payload must stay put."""
    with open(cocotb.plusargs["CIM_JOB"], "rb") as f:
        job = pickle.load(f)
    kind = job["kind"]
    # No CimTB: its cocotbext-axi master would drive the same signals.
    raw = RawAxiLite(dut)
    dut.rst_ni.value = 0
    await raw.edge(4)
    dut.rst_ni.value = 1
    await raw.edge(2)
    entry = WIN_CSR + CSR["ENTRY"]
    if kind in ("legal", "aw_drop", "aw_change"):
        await raw.aw(entry)  # accepted; no data yet, so awready stays low
        await raw.edge()
        assert raw.out("awready") == 0
        # A second address, not accepted until the first write completes; a
        # rule-abiding master holds it (raw.aw) until the handshake.
        dut.s_axil_awaddr_i.value = WIN_CSR + CSR["PROG_LEN"]
        if kind == "legal":
            second = cocotb.start_soon(raw.aw(WIN_CSR + CSR["PROG_LEN"]))
        else:
            dut.s_axil_awvalid_i.value = 1
        await raw.edge()
        assert raw.out("awready") == 0
        if kind == "aw_drop":
            dut.s_axil_awvalid_i.value = 0
        elif kind == "aw_change":
            dut.s_axil_awaddr_i.value = WIN_CSR + CSR["ADC_LEN"]
        await raw.edge(2)
        await raw.w(0x1234)  # completes the first write
        assert await raw.b() == 0
        if kind == "legal":
            await second
            await raw.w(0x56)
            assert await raw.b() == 0
            await raw.edge(2)
            # Both writes landed where they were addressed.
            dut.s_axil_araddr_i.value = entry
            dut.s_axil_arvalid_i.value = 1
            dut.s_axil_rready_i.value = 1
            await raw.edge()
            while not raw.out("arready"):
                await raw.edge()
            dut.s_axil_arvalid_i.value = 0
            while not raw.out("rvalid"):
                await raw.edge()
            assert raw.out("rdata") == 0x1234, hex(raw.out("rdata"))
    elif kind in ("w_drop", "w_change"):
        await raw.w(0x77)  # data first: wready stays low until an address comes
        dut.s_axil_wdata_i.value = 0x88
        dut.s_axil_wvalid_i.value = 1
        await raw.edge()
        assert raw.out("wready") == 0
        if kind == "w_drop":
            dut.s_axil_wvalid_i.value = 0
        else:
            dut.s_axil_wdata_i.value = 0x99
        await raw.edge(2)
        await raw.aw(entry)
        await raw.b()
    elif kind in ("ar_drop", "ar_change"):
        dut.s_axil_araddr_i.value = WIN_CSR + CSR["ID"]
        dut.s_axil_arvalid_i.value = 1
        await raw.edge()
        while not raw.out("arready"):
            await raw.edge()
        dut.s_axil_araddr_i.value = WIN_CSR + CSR["VERSION"]  # second read, rready low
        await raw.edge(2)
        assert raw.out("arready") == 0 and raw.out("rvalid") == 1
        if kind == "ar_drop":
            dut.s_axil_arvalid_i.value = 0
        else:
            dut.s_axil_araddr_i.value = WIN_CSR + CSR["STATUS"]
        await raw.edge(2)
    else:
        raise ValueError(f"unknown violation kind {kind}")
    await raw.edge(4)


@cocotb.test()
async def windows(dut: Any) -> None:
    """Every memory window's bounds: the last legal word answers OKAY, the
    first word past the memory, past a weight row's chunks or past a table's
    entries answers SLVERR (and, for DMEM, does not wrap onto word 0)."""
    with open(cocotb.plusargs["CIM_JOB"], "rb") as f:
        p = RtlParams(**pickle.load(f)["params"])
    tb = CimTB(dut, p)
    await tb.reset()
    chunks = -(-p.COLS // 32)
    ok, bad = AxiResp.OKAY, AxiResp.SLVERR
    cases = [(WIN_PROG, 2 * p.PROG_WORDS - 1, ok), (WIN_PROG, 2 * p.PROG_WORDS, bad),
             (WIN_DMEM, p.DMEM_WORDS - 1, ok), (WIN_DMEM, p.DMEM_WORDS, bad),
             (WIN_WMEM, (p.WMEM_WORDS - 1) * p.wmem_stride + chunks - 1, ok),
             (WIN_WMEM, p.WMEM_WORDS * p.wmem_stride, bad),
             (WIN_ADC_THR, (p.ADC_TABLES - 1) * p.thr_stride + 2 * p.ROWS - 1, ok),
             (WIN_ADC_THR, p.ADC_TABLES * p.thr_stride, bad),
             (WIN_ADC_REC, (p.ADC_TABLES - 1) * p.rec_stride + 2 * p.ROWS, ok),
             (WIN_ADC_REC, p.ADC_TABLES * p.rec_stride, bad)]
    if chunks < p.wmem_stride:
        cases.append((WIN_WMEM, chunks, bad))
    if p.thr_stride > 2 * p.ROWS:
        cases.append((WIN_ADC_THR, 2 * p.ROWS, bad))
    if p.rec_stride > 2 * p.ROWS + 1:
        cases.append((WIN_ADC_REC, 2 * p.ROWS + 1, bad))
    await tb.write32(WIN_DMEM, 0x5A5A5A5A)
    for base, word, want in cases:
        got = await tb.write32(base + 4 * word, 0x0F0F0F0F, check=False)
        assert got == want, f"write 0x{base + 4 * word:08x} (word {word}): {got!r} != {want!r}"
    assert await tb.read32(WIN_DMEM + 4 * (p.DMEM_WORDS - 1)) == 0x0F0F0F0F
    _, resp = await tb.read(WIN_DMEM + 4 * p.DMEM_WORDS, 4)
    assert resp == bad, resp
    assert await tb.read32(WIN_DMEM) == 0x5A5A5A5A  # no wrap-around onto word 0

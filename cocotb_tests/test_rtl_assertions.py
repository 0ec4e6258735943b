"""The SystemVerilog assertions (rtl/assert/) are live: a raw AXI4-Lite master
that breaks one handshake rule stops the simulation with that rule's message,
and the same driver following the rules passes (so the checks are not
vacuous and the driver itself is sound)."""

from __future__ import annotations

import pytest
from progs import RANDOM_PARAMS

from cimgen.hw import rtl_sim
from cimgen.hw.rtl_sim import RtlParams

pytestmark = pytest.mark.rtl

PARAMS = RtlParams.from_machine(RANDOM_PARAMS, 1024)

VIOLATIONS = {
    "aw_drop": ("u_axil_regs_sva.a_aw_valid_held", "awvalid dropped before awready"),
    "aw_change": ("u_axil_regs_sva.a_aw_stable", "awaddr changed while awvalid"),
    "w_drop": ("u_axil_regs_sva.a_w_valid_held", "wvalid dropped before wready"),
    "w_change": ("u_axil_regs_sva.a_w_stable", "wdata/wstrb changed while wvalid"),
    "ar_drop": ("u_axil_regs_sva.a_ar_valid_held", "arvalid dropped before arready"),
    "ar_change": ("u_axil_regs_sva.a_ar_stable", "araddr changed while arvalid"),
}


def test_legal_raw_master_passes() -> None:
    rtl_sim.run_testcase("axil_violation", PARAMS, "axil-legal", {"kind": "legal"})


@pytest.mark.parametrize("kind", VIOLATIONS)
def test_protocol_violation_fails_the_run(kind: str) -> None:
    label, message = VIOLATIONS[kind]
    with pytest.raises(AssertionError) as info:
        rtl_sim.run_testcase("axil_violation", PARAMS, f"axil-{kind}", {"kind": kind})
    text = str(info.value)
    assert "assertion failed: " in text, text[-2000:]
    first = text.split("assertion failed: ", 1)[1].splitlines()[0]
    assert label in first and message in first, first

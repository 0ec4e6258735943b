"""Hardware side: the ISA's SystemVerilog package and docs, and the RTL simulation runner.

Takes the golden model's ISA and a compiled chip image; gives generated
collateral (``rtl/cim_isa_pkg.sv``, ``docs/isa.md``) and RTL runs under
Verilator and cocotb.
"""

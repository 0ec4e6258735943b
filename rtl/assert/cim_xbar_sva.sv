// cim_xbar_sva: the crossbar cells are never written while a READ senses,
// and sensing happens only in a READ.
// Bound into every cim_xbar; verification only, built with --assert
// (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_xbar_sva
  import cim_isa_pkg::*;
(
  input wire logic clk_i,
  input wire logic rst_ni,
  input wire logic exec_i,
  input wire opcode_e op_i,
  input wire logic do_prog,
  input wire logic do_sense
);
  a_no_write_while_read: assert property (@(posedge clk_i) disable iff (!rst_ni)
      do_prog |-> !(exec_i && op_i == OP_READ))
    else $error("cim_xbar: crossbar row written while a READ senses");
  a_sense_in_read: assert property (@(posedge clk_i) disable iff (!rst_ni)
      do_sense |-> exec_i && op_i == OP_READ && !do_prog)
    else $error("cim_xbar: sensing outside a READ");
endmodule : cim_xbar_sva

bind cim_xbar cim_xbar_sva u_xbar_sva (.*);

`default_nettype wire

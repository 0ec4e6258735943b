// cim_vpu_sva: the vector unit writes DMEM only in the lane steps of an
// executing instruction, and its lanes stay inside the accumulators and IN.
// Bound into every cim_vpu; verification only, built with --assert
// (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_vpu_sva
  import cim_isa_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned VEC_WIDTH = 8
) (
  input wire logic                 clk_i,
  input wire logic                 rst_ni,
  input wire logic                 exec_i,
  input wire opcode_e              op_i,
  input wire logic [31:0]          step_i,
  input wire logic [31:0]          dst_base,
  input wire logic [31:0]          lane [VEC_WIDTH],
  input wire logic [VEC_WIDTH-1:0] lane_on,
  input wire logic [VEC_WIDTH-1:0] wr_en_o
);
  a_writes_in_lane_steps: assert property (@(posedge clk_i) disable iff (!rst_ni)
      wr_en_o != '0 |-> exec_i && step_i != 32'd0)
    else $error("cim_vpu: DMEM write outside the lane steps of an instruction");
  for (genvar i = 0; i < VEC_WIDTH; i++) begin : g_lane
    a_lane_acc: assert property (@(posedge clk_i) disable iff (!rst_ni)
        lane_on[i] && op_i != OP_LDIN |-> lane[i] < COLS)
      else $error("cim_vpu: lane %0d past the %0d accumulators", lane[i], COLS);
    a_lane_in: assert property (@(posedge clk_i) disable iff (!rst_ni)
        lane_on[i] && op_i == OP_LDIN |-> dst_base + lane[i] < ROWS)
      else $error("cim_vpu: LDIN writes IN[%0d] of %0d", dst_base + lane[i], ROWS);
  end
endmodule : cim_vpu_sva

bind cim_vpu cim_vpu_sva #(.ROWS(ROWS), .COLS(COLS), .VEC_WIDTH(VEC_WIDTH)) u_vpu_sva (.*);

`default_nettype wire

// cim_top_sva: the host reaches the memories only while the controller is
// idle, one memory per host write, and a start only while idle.
// Bound into every cim_top; verification only, built with --assert
// (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_top_sva (
  input wire logic clk_i,
  input wire logic rst_ni,
  input wire logic busy,
  input wire logic start,
  input wire logic prog_we,
  input wire logic dmem_we,
  input wire logic wmem_we,
  input wire logic thr_we,
  input wire logic rec_we
);
  a_host_writes_idle: assert property (@(posedge clk_i) disable iff (!rst_ni)
      prog_we || dmem_we || wmem_we || thr_we || rec_we |-> !busy)
    else $error("cim_top: host memory write while the controller runs");
  a_host_one_window: assert property (@(posedge clk_i) disable iff (!rst_ni)
      $onehot0({prog_we, dmem_we, wmem_we, thr_we, rec_we}))
    else $error("cim_top: one host write enables two memories");
  a_start_idle: assert property (@(posedge clk_i) disable iff (!rst_ni)
      start |-> !busy)
    else $error("cim_top: start while the controller runs");
endmodule : cim_top_sva

bind cim_top cim_top_sva u_top_sva (.*);

`default_nettype wire

// cim_ctrl_sva: controller invariants, bound into every cim_ctrl.
//
// FSM legality (idle -> run only on start, run -> idle only with stop), step
// and pc in range while an instruction executes, the counters, and the
// hardware-loop state: IB = 0 outside a loop, iterations left < the loop's
// count, the pc inside the body, and IB = (iterations done) * stride.
// Verification only: built with
// --assert (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_ctrl_sva
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned PROG_WORDS = 1024
) (
  input wire logic        clk_i,
  input wire logic        rst_ni,
  input wire logic        start_i,
  input wire logic [31:0] prog_len_i,
  input wire logic [63:0] instr_i,
  input wire logic        state_q,  // cim_ctrl's state_e: 0 idle, 1 run
  input wire logic [31:0] pc_q,
  input wire logic [31:0] step_q,
  input wire logic [31:0] cost,
  input wire logic        last,
  input wire err_e        err,
  input wire err_e        err_q,
  input wire opcode_e     op,
  input wire logic        exec_o,
  input wire logic        busy_o,
  input wire logic        stop_o,
  input wire logic        done_q,
  input wire logic [31:0] fault_pc_q,
  input wire logic [63:0] cycles_q,
  input wire logic [31:0] instret_q,
  input wire logic        loop_on_q,
  input wire logic [31:0] loop_start_q,
  input wire logic [31:0] loop_end_q,
  input wire logic [31:0] loop_left_q,
  input wire logic [31:0] loop_stride_q,
  input wire logic [31:0] ib_q
);

  // The count of the loop being run, latched when its LOOP executes.
  logic [31:0] loop_count_q;
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      loop_count_q <= 32'd0;
    end else if (exec_o && op == OP_LOOP && last) begin
      loop_count_q <= insn_field(instr_i, LOOP_COUNT_LSB, LOOP_COUNT_W);
    end
  end

  // ------------------------------------------------------------------ FSM
  a_fsm_busy: assert property (@(posedge clk_i) disable iff (!rst_ni)
      busy_o == state_q)
    else $error("cim_ctrl: busy_o (%0d) != run state (%0d)", busy_o, state_q);
  a_fsm_idle_stays: assert property (@(posedge clk_i) disable iff (!rst_ni)
      !state_q && !start_i |=> !state_q)
    else $error("cim_ctrl: left idle without a start");
  a_fsm_start: assert property (@(posedge clk_i) disable iff (!rst_ni)
      !state_q && start_i |=> state_q)
    else $error("cim_ctrl: a start in idle did not start a run");
  a_fsm_stop_in_run: assert property (@(posedge clk_i) disable iff (!rst_ni)
      stop_o |-> state_q)
    else $error("cim_ctrl: stop while idle");
  a_fsm_run_stays: assert property (@(posedge clk_i) disable iff (!rst_ni)
      state_q && !stop_o |=> state_q)
    else $error("cim_ctrl: a run ended without stop (pc %0d)", $past(pc_q));
  a_fsm_stop: assert property (@(posedge clk_i) disable iff (!rst_ni)
      stop_o |=> !state_q && done_q)
    else $error("cim_ctrl: stop did not end the run with DONE");
  a_fault_stops: assert property (@(posedge clk_i) disable iff (!rst_ni)
      state_q && err != ERR_NONE |-> stop_o && !exec_o)
    else $error("cim_ctrl: instruction at pc %0d faults (%0d) but executes", pc_q, err);

  // ------------------------------------------------------------ counters
  a_exec_in_range: assert property (@(posedge clk_i) disable iff (!rst_ni)
      exec_o |-> state_q && pc_q < prog_len_i && pc_q < PROG_WORDS)
    else $error("cim_ctrl: executes pc %0d outside the program (%0d words)", pc_q, prog_len_i);
  a_step_range: assert property (@(posedge clk_i) disable iff (!rst_ni)
      exec_o |-> cost != 32'd0 && step_q < cost)
    else $error("cim_ctrl: step %0d out of range (cost %0d, op %0d)", step_q, cost, op);
  a_cycles_count: assert property (@(posedge clk_i) disable iff (!rst_ni)
      state_q |=> cycles_q == $past(cycles_q) + 64'd1)
    else $error("cim_ctrl: the cycle counter did not count a run cycle");
  a_instret_le_cycles: assert property (@(posedge clk_i) disable iff (!rst_ni)
      64'(instret_q) <= cycles_q)
    else $error("cim_ctrl: INSTRET %0d > CYCLES %0d", instret_q, cycles_q);
  a_fault_pc: assert property (@(posedge clk_i) disable iff (!rst_ni)
      !state_q && err_q != ERR_NONE |-> fault_pc_q == pc_q)
    else $error("cim_ctrl: FAULT_PC %0d != pc %0d after a fault", fault_pc_q, pc_q);

  // ---------------------------------------------------------------- loops
  a_ib_zero_outside_loops: assert property (@(posedge clk_i) disable iff (!rst_ni)
      !loop_on_q |-> ib_q == 32'd0)
    else $error("cim_ctrl: IB = %0d outside a loop", ib_q);
  a_loop_left_lt_count: assert property (@(posedge clk_i) disable iff (!rst_ni)
      loop_on_q |-> loop_left_q < loop_count_q)
    else $error("cim_ctrl: %0d iterations left of a %0d-count loop", loop_left_q, loop_count_q);
  a_loop_pc_in_body: assert property (@(posedge clk_i) disable iff (!rst_ni)
      state_q && loop_on_q |-> loop_start_q <= pc_q && pc_q <= loop_end_q)
    else $error("cim_ctrl: pc %0d outside the loop body [%0d, %0d]", pc_q, loop_start_q,
                loop_end_q);
  a_loop_ib: assert property (@(posedge clk_i) disable iff (!rst_ni)
      loop_on_q |-> ib_q == (loop_count_q - 32'd1 - loop_left_q) * loop_stride_q)
    else $error("cim_ctrl: IB %0d != iterations done * stride (%0d left of %0d, stride %0d)",
                ib_q, loop_left_q, loop_count_q, loop_stride_q);

endmodule : cim_ctrl_sva

bind cim_ctrl cim_ctrl_sva #(.PROG_WORDS(PROG_WORDS)) u_ctrl_sva (.*);

`default_nettype wire

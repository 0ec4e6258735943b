// cim_cov_monitor: testbench-only monitors bound into the RTL that write the
// trace the cocotb testbench bins into functional coverage
// (cimgen.hw.coverage): every executed instruction with its pc and image base,
// every fault, every start; per ADC conversion group, how many lanes landed
// on the table's lowest or highest level; per run of the simulator, the
// cycles each AXI4-Lite channel waited and the error responses. Enabled by
// the plusarg +CIM_TRACE=<prefix> (files <prefix>.ctrl, .adc, .bus); without
// it nothing is written. Not RTL: only the cocotb builds include it.

`default_nettype none

module cim_cov_ctrl
  import cim_isa_pkg::*;
(
  input wire logic        clk_i,
  input wire logic        start_i,
  input wire logic [31:0] entry_i,
  input wire logic        state_q,
  input wire logic        exec_o,
  input wire logic [31:0] step_q,
  input wire logic [31:0] pc_q,
  input wire logic [31:0] ib_q,
  input wire logic [63:0] instr_i,
  input wire err_e        err
);
  int fd = 0;
  initial begin : open_trace
    string prefix;
    if ($value$plusargs("CIM_TRACE=%s", prefix)) begin
      fd = $fopen({prefix, ".ctrl"}, "w");
    end
  end
  always @(posedge clk_i) begin
    if (fd != 0) begin
      if (!state_q && start_i) $fdisplay(fd, "S %0d", entry_i);
      if (exec_o && step_q == 32'd0) $fdisplay(fd, "I %0d %0d %016h", pc_q, ib_q, instr_i);
      if (state_q && err != ERR_NONE) $fdisplay(fd, "F %0d %0d", pc_q, err);
    end
  end
  final if (fd != 0) $fclose(fd);
endmodule : cim_cov_ctrl

module cim_cov_adc #(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned ADC_TABLES = 4,
  parameter int unsigned ADCS = 256
) (
  input wire logic        clk_i,
  input wire logic        convert,
  input wire logic [31:0] group,
  input wire logic [31:0] lanes,
  input wire logic [31:0] table_sel,
  input wire logic [31:0] code_q [COLS],
  input wire logic [31:0] rec_q [ADC_TABLES * (2 * ROWS + 1)]
);
  localparam int unsigned REC_N = 2 * ROWS + 1;
  int fd = 0;
  initial begin : open_trace
    string prefix;
    if ($value$plusargs("CIM_TRACE=%s", prefix)) begin
      fd = $fopen({prefix, ".adc"}, "w");
    end
  end
  // The codes of a group are in code_q the cycle after its conversion.
  logic        conv_q = 1'b0;
  logic [31:0] group_q, table_q, lanes_q;
  always @(posedge clk_i) begin
    conv_q <= convert;
    group_q <= group;
    table_q <= table_sel;
    lanes_q <= lanes;
    if (fd != 0 && conv_q) begin
      int n, lo, hi;
      n = 0;
      lo = 0;
      hi = 0;
      for (int unsigned i = 0; i < ADCS; i++) begin
        if (group_q * ADCS + i < lanes_q && group_q * ADCS + i < COLS) begin
          n++;
          if (code_q[group_q * ADCS + i] == rec_q[table_q * REC_N]) lo++;
          if (code_q[group_q * ADCS + i] == rec_q[table_q * REC_N + REC_N - 1]) hi++;
        end
      end
      $fdisplay(fd, "A %0d %0d %0d %0d", table_q, n, lo, hi);
    end
  end
  final if (fd != 0) $fclose(fd);
endmodule : cim_cov_adc

module cim_cov_bus (
  input wire logic       clk_i,
  input wire logic       rst_ni,
  input wire logic       awvalid_i,
  input wire logic       awready_o,
  input wire logic       wvalid_i,
  input wire logic       wready_o,
  input wire logic       bvalid_o,
  input wire logic       bready_i,
  input wire logic [1:0] bresp_o,
  input wire logic       arvalid_i,
  input wire logic       arready_o,
  input wire logic       rvalid_o,
  input wire logic       rready_i,
  input wire logic [1:0] rresp_o,
  input wire logic       aw_valid_q,
  input wire logic       w_valid_q
);
  int fd = 0;
  initial begin : open_trace
    string prefix;
    if ($value$plusargs("CIM_TRACE=%s", prefix)) begin
      fd = $fopen({prefix, ".bus"}, "w");
    end
  end
  // Waits per channel, responses by kind, and the write-path orders seen
  // (address before data, data before address, both in one cycle).
  longint aw_wait = 0, w_wait = 0, b_wait = 0, ar_wait = 0, r_wait = 0;
  longint b_slv = 0, b_dec = 0, r_slv = 0, r_dec = 0;
  longint aw_first = 0, w_first = 0, aw_w_same = 0;
  always @(posedge clk_i) begin
    if (rst_ni) begin
      if (awvalid_i && !awready_o) aw_wait++;
      if (wvalid_i && !wready_o) w_wait++;
      if (bvalid_o && !bready_i) b_wait++;
      if (arvalid_i && !arready_o) ar_wait++;
      if (rvalid_o && !rready_i) r_wait++;
      if (bvalid_o && bready_i && bresp_o == 2'b10) b_slv++;
      if (bvalid_o && bready_i && bresp_o == 2'b11) b_dec++;
      if (rvalid_o && rready_i && rresp_o == 2'b10) r_slv++;
      if (rvalid_o && rready_i && rresp_o == 2'b11) r_dec++;
      if (awvalid_i && awready_o && wvalid_i && wready_o) aw_w_same++;
      else if (awvalid_i && awready_o && !w_valid_q) aw_first++;
      else if (wvalid_i && wready_o && !aw_valid_q) w_first++;
    end
  end
  final begin
    if (fd != 0) begin
      $fdisplay(fd, "B aw_wait=%0d w_wait=%0d b_wait=%0d ar_wait=%0d r_wait=%0d",
                aw_wait, w_wait, b_wait, ar_wait, r_wait);
      $fdisplay(fd, "B bresp_slverr=%0d bresp_decerr=%0d rresp_slverr=%0d rresp_decerr=%0d",
                b_slv, b_dec, r_slv, r_dec);
      $fdisplay(fd, "B aw_before_w=%0d w_before_aw=%0d aw_with_w=%0d",
                aw_first, w_first, aw_w_same);
      $fclose(fd);
    end
  end
endmodule : cim_cov_bus

bind cim_ctrl cim_cov_ctrl u_cov_ctrl (.*);
bind cim_adc cim_cov_adc #(.ROWS(ROWS), .COLS(COLS), .ADC_TABLES(ADC_TABLES), .ADCS(ADCS))
    u_cov_adc (.*);
bind cim_axil_regs cim_cov_bus u_cov_bus (.*);

`default_nettype wire

// cim_adc: ADC tables and conversions of the crossbar periphery.
//
// Table t holds 2*ROWS ascending integer thresholds T and 2*ROWS+1 output
// levels R (32-bit, loaded by the host). A conversion of x gives
// R[#{i : T[i] <= x}], found by successive approximation (binary search over
// the thresholds), as numpy's searchsorted(T, x, side="right") does for an
// ascending T. A READ converts its lanes in groups of ADCS, one group every
// T_ADC cycles after the T_READ sensing cycles; CODE holds the results.

`default_nettype none

module cim_adc
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned ADC_TABLES = 4,
  parameter int unsigned ADCS = 256,
  parameter int unsigned T_READ = 2,
  parameter int unsigned T_ADC = 1,
  localparam int unsigned THR_N = 2 * ROWS,
  localparam int unsigned REC_N = 2 * ROWS + 1,
  localparam int unsigned STEPS = $clog2(THR_N + 1) + 1
) (
  input  wire logic               clk_i,
  input  wire logic               rst_ni,
  input  wire logic               clear_i,
  input  wire logic               exec_i,
  input  wire opcode_e            op_i,
  input  wire logic [31:0]        step_i,
  input  wire logic [63:0]        instr_i,
  input  wire logic signed [63:0] sense_i [COLS],
  output logic [31:0]             code_o [COLS],
  // Host writes: table index and entry within the table.
  input  wire logic               thr_we_i,
  input  wire logic               rec_we_i,
  input  wire logic [31:0]        htable_i,
  input  wire logic [31:0]        hentry_i,
  input  wire logic [31:0]        hwdata_i,
  input  wire logic [31:0]        hwmask_i
);

  logic [31:0] thr_q [ADC_TABLES * THR_N];
  logic [31:0] rec_q [ADC_TABLES * REC_N];
  logic [31:0] code_q [COLS];

  always_ff @(posedge clk_i) begin
    if (thr_we_i) begin
      thr_q[htable_i * THR_N + hentry_i] <=
          (thr_q[htable_i * THR_N + hentry_i] & ~hwmask_i) | (hwdata_i & hwmask_i);
    end
    if (rec_we_i) begin
      rec_q[htable_i * REC_N + hentry_i] <=
          (rec_q[htable_i * REC_N + hentry_i] & ~hwmask_i) | (hwdata_i & hwmask_i);
    end
  end

  // Successive approximation: number of thresholds <= x (ascending table).
  function automatic int unsigned level(int unsigned t, logic signed [63:0] x);
    int unsigned lo, hi, mid;
    lo = 0;
    hi = THR_N;
    for (int unsigned s = 0; s < STEPS; s++) begin
      if (lo < hi) begin
        mid = (lo + hi) >> 1;
        if (64'(signed'(thr_q[t * THR_N + mid])) <= x) begin
          lo = mid + 1;
        end else begin
          hi = mid;
        end
      end
    end
    return lo;
  endfunction

  logic [31:0] table_sel, lanes, group, phase;
  logic        convert;
  assign table_sel = insn_field(instr_i, READ_ADC_LSB, READ_ADC_W);
  assign lanes = insn_field(instr_i, READ_LANES_LSB, READ_LANES_W);
  assign phase = step_i - T_READ;
  assign group = phase / T_ADC;
  assign convert = exec_i && (op_i == OP_READ) && (step_i >= T_READ)
                   && (phase % T_ADC == T_ADC - 1);

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      for (int unsigned l = 0; l < COLS; l++) begin
        code_q[l] <= 32'd0;
      end
    end else if (clear_i) begin
      for (int unsigned l = 0; l < COLS; l++) begin
        code_q[l] <= 32'd0;
      end
    end else if (convert) begin
      /*verilator unroll_disable*/
      for (int unsigned i = 0; i < ADCS; i++) begin
        if (group * ADCS + i < lanes) begin
          code_q[group * ADCS + i] <=
              rec_q[table_sel * REC_N + level(table_sel, sense_i[group * ADCS + i])];
        end
      end
    end
  end

  assign code_o = code_q;

endmodule : cim_adc

`default_nettype wire

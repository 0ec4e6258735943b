// cim_xbar: behavioral model of NUM_XBARS binary RRAM crossbars (ROWS x COLS).
//
// Cell bits change only through PROG (controller, from weight memory). The
// device map is physics, not state the controller can touch: per cell an HRS
// and an LRS read current (integer units, CUR_W bits) and a stuck-at flag
// (0 none, 1 stuck at LRS, 2 stuck at HRS), loaded by the testbench at time 0
// with $readmemh from the file named by the plusarg +CIM_DEVMAP=<file>: one
// hex word per cell, cell (x, r, c) at line (x * ROWS + r) * COLS + c, packed
// {stuck[1:0], lrs[CUR_W-1:0], hrs[CUR_W-1:0]}. Without the plusarg every cell
// is ideal (HRS_UNITS / LRS_UNITS, not stuck). Cells start in HRS (bit 0) and
// keep their bits across rst_ni (non-volatile).
//
// READ: in step T_READ - 1 the model sums the read currents of the driven rows
// per column and holds, per lane, the signal the ADC sees: column c0 + l minus
// the HRS floor HRS_UNITS * (driven rows) for POS, or column c0 + 2l minus
// column c0 + 2l + 1 for SYM. The driven-row count is NDRV.

`default_nettype none

module cim_xbar
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned NUM_XBARS = 16,
  parameter int unsigned WMEM_WORDS = 1024,
  parameter int unsigned CUR_W = 16,
  parameter int unsigned HRS_UNITS = 100,
  parameter int unsigned LRS_UNITS = 1000,
  parameter int unsigned T_READ = 2,
  localparam int unsigned WAW = (WMEM_WORDS > 1) ? $clog2(WMEM_WORDS) : 1,
  localparam int unsigned DEV_W = 2 + 2 * CUR_W,
  localparam int unsigned NCELLS = NUM_XBARS * ROWS * COLS
) (
  input  wire logic                clk_i,
  input  wire logic                rst_ni,
  input  wire logic                clear_i,
  input  wire logic                exec_i,
  input  wire opcode_e             op_i,
  input  wire logic [31:0]         step_i,
  input  wire logic [63:0]         instr_i,
  input  wire logic [ROWS-1:0]     drive_i,
  // Weight memory read (PROG source row).
  output logic [WAW-1:0]           wmem_raddr_o,
  input  wire logic [COLS-1:0]     wmem_rdata_i,
  // Sense outputs.
  output logic signed [63:0]       sense_o [COLS],
  output logic [31:0]              ndrv_o
);

  logic [COLS-1:0]   cell_q [NUM_XBARS * ROWS];
  logic [DEV_W-1:0]  dev_q [NCELLS];
  logic signed [63:0] sense_q [COLS];
  logic [31:0]       ndrv_q;

  // ------------------------------------------------------------ device map
  // verilator lint_off MULTIDRIVEN
  // Justification: behavioral model; initial blocks give the time-0 state
  // (device physics, erased cells), always_ff the PROG writes.
  initial begin : init_cells
    string path;
    for (int unsigned i = 0; i < NCELLS; i++) begin
      dev_q[i] = {STUCK_NONE, CUR_W'(LRS_UNITS), CUR_W'(HRS_UNITS)};
    end
    if ($value$plusargs("CIM_DEVMAP=%s", path)) begin
      $readmemh(path, dev_q);
    end
    for (int unsigned i = 0; i < NUM_XBARS * ROWS; i++) begin
      cell_q[i] = '0;
    end
  end
  // verilator lint_on MULTIDRIVEN

  // Read current of cell (x, r, c) given its programmed bit and stuck flag.
  function automatic logic signed [63:0] cell_current(int unsigned x, int unsigned r,
                                                     int unsigned c);
    logic [DEV_W-1:0] d;
    logic [1:0] stuck;
    logic lrs;
    d = dev_q[(x * ROWS + r) * COLS + c];
    stuck = d[2 * CUR_W +: 2];
    lrs = (stuck == STUCK_LRS) || (stuck != STUCK_HRS && cell_q[x * ROWS + r][c]);
    return lrs ? $signed(64'(d[CUR_W +: CUR_W])) : $signed(64'(d[0 +: CUR_W]));
  endfunction

  // Bit-line current of column c of crossbar x under the row drive.
  function automatic logic signed [63:0] column_current(int unsigned x, int unsigned c,
                                                       logic [ROWS-1:0] drive);
    logic signed [63:0] s;
    s = 64'sd0;
    /*verilator unroll_disable*/
    for (int unsigned r = 0; r < ROWS; r++) begin
      if (drive[r]) begin
        s = s + cell_current(x, r, c);
      end
    end
    return s;
  endfunction

  // ------------------------------------------------------------ fields
  logic [31:0] xbar, row, col, lanes, nd;
  logic        sym;
  logic        do_prog, do_sense;

  assign lanes = insn_field(instr_i, READ_LANES_LSB, READ_LANES_W);
  assign col = insn_field(instr_i, READ_COL_LSB, READ_COL_W);
  assign sym = instr_i[READ_SENSE_LSB];
  assign row = insn_field(instr_i, PROG_ROW_LSB, PROG_ROW_W);
  assign xbar = (op_i == OP_PROG) ? insn_field(instr_i, PROG_XBAR_LSB, PROG_XBAR_W)
                                  : insn_field(instr_i, READ_XBAR_LSB, READ_XBAR_W);
  assign wmem_raddr_o = WAW'(insn_field(instr_i, PROG_WSRC_LSB, PROG_WSRC_W));
  assign nd = $unsigned($countones(drive_i));
  assign do_prog = exec_i && (op_i == OP_PROG) && (step_i == 32'd0);
  assign do_sense = exec_i && (op_i == OP_READ) && (step_i == T_READ - 1);

  // PROG: write one row of cell bits (the remaining T_WRITE - 1 cycles model
  // the write-verify time).
  always_ff @(posedge clk_i) begin
    if (do_prog) begin
      cell_q[xbar * ROWS + row] <= wmem_rdata_i;
    end
  end

  // READ: sample-and-hold of the ADC inputs.
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      ndrv_q <= 32'd0;
      for (int unsigned l = 0; l < COLS; l++) begin
        sense_q[l] <= 64'sd0;
      end
    end else if (clear_i) begin
      ndrv_q <= 32'd0;
    end else if (do_sense) begin
      ndrv_q <= nd;
      /*verilator unroll_disable*/
      for (int unsigned l = 0; l < COLS; l++) begin
        if (l < lanes) begin
          if (sym) begin
            sense_q[l] <= column_current(xbar, col + 2 * l, drive_i)
                          - column_current(xbar, col + 2 * l + 1, drive_i);
          end else begin
            sense_q[l] <= column_current(xbar, col + l, drive_i)
                          - $signed(64'(HRS_UNITS) * 64'(nd));
          end
        end
      end
    end
  end

  assign sense_o = sense_q;
  assign ndrv_o = ndrv_q;

endmodule : cim_xbar

`default_nettype wire

// cim_pkg: register map and address windows of the cimgen accelerator.
//
// Hand-written (the ISA itself lives in the generated cim_isa_pkg). Documented
// in docs/rtl.md.

`default_nettype none

package cim_pkg;

  // Shared constants; each module uses a subset of them.
  // verilator lint_off UNUSEDPARAM

  // Identification.
  localparam logic [31:0] CIM_ID = 32'h4349_4d31;  // "CIM1"
  localparam logic [15:0] RTL_VERSION = 16'd1;

  // AXI4-Lite responses.
  localparam logic [1:0] RESP_OKAY = 2'b00;
  localparam logic [1:0] RESP_SLVERR = 2'b10;
  localparam logic [1:0] RESP_DECERR = 2'b11;

  // Address windows: byte address bits [31:28] select the window, [27:0] the offset.
  localparam int unsigned WIN_LSB = 28;
  localparam logic [3:0] WIN_CSR = 4'h0;
  localparam logic [3:0] WIN_PROG = 4'h1;  // 64-bit words: low half at 8i, high half at 8i+4
  localparam logic [3:0] WIN_DMEM = 4'h2;  // 32-bit words, read/write
  localparam logic [3:0] WIN_WMEM = 4'h3;  // row r, 32-column chunk j at 4*(r*stride + j)
  localparam logic [3:0] WIN_ADC_THR = 4'h4;  // table t, threshold i at 4*(t*stride + i)
  localparam logic [3:0] WIN_ADC_REC = 4'h5;  // table t, level i at 4*(t*stride + i)

  // Control and status registers: byte offsets in the CSR window.
  localparam logic [11:0] CSR_ID = 12'h000;  // RO
  localparam logic [11:0] CSR_VERSION = 12'h004;  // RO: [31:16] RTL, [15:0] ISA version
  localparam logic [11:0] CSR_CTRL = 12'h008;  // WO: bit 0 START
  localparam logic [11:0] CSR_ENTRY = 12'h00c;  // RW: entry pc of the next start
  localparam logic [11:0] CSR_STATUS = 12'h010;  // RO: bit 0 BUSY, 1 DONE, 2 ERROR
  localparam logic [11:0] CSR_ERROR = 12'h014;  // RO: error code of the last run
  localparam logic [11:0] CSR_FAULT_PC = 12'h018;  // RO: faulting pc, all ones if none
  localparam logic [11:0] CSR_PC = 12'h01c;  // RO: pc (HALT or fault pc after a run)
  localparam logic [11:0] CSR_CYCLES_LO = 12'h020;  // RO: cycles of the last run [31:0]
  localparam logic [11:0] CSR_CYCLES_HI = 12'h024;  // RO: [63:32]
  localparam logic [11:0] CSR_INSTRET = 12'h028;  // RO: instructions executed
  localparam logic [11:0] CSR_IRQ_ENABLE = 12'h02c;  // RW: bit 0 DONE
  localparam logic [11:0] CSR_IRQ_STATUS = 12'h030;  // RW1C: bit 0 DONE
  localparam logic [11:0] CSR_PROG_LEN = 12'h034;  // RW: loaded program words
  localparam logic [11:0] CSR_WMEM_LEN = 12'h038;  // RW: loaded weight-memory rows
  localparam logic [11:0] CSR_ADC_LEN = 12'h03c;  // RW: loaded ADC tables
  localparam logic [11:0] CSR_READS = 12'h040;  // RO: READ instructions executed
  localparam logic [11:0] CSR_PROGS = 12'h044;  // RO: PROG instructions executed
  // Read-only configuration (the RTL parameters).
  localparam logic [11:0] CSR_P_ROWS = 12'h080;
  localparam logic [11:0] CSR_P_COLS = 12'h084;
  localparam logic [11:0] CSR_P_NUM_XBARS = 12'h088;
  localparam logic [11:0] CSR_P_PROG_WORDS = 12'h08c;
  localparam logic [11:0] CSR_P_DMEM_WORDS = 12'h090;
  localparam logic [11:0] CSR_P_WMEM_WORDS = 12'h094;
  localparam logic [11:0] CSR_P_ADC_TABLES = 12'h098;
  localparam logic [11:0] CSR_P_VEC_WIDTH = 12'h09c;
  localparam logic [11:0] CSR_P_ADCS = 12'h0a0;
  localparam logic [11:0] CSR_P_T_READ = 12'h0a4;
  localparam logic [11:0] CSR_P_T_ADC = 12'h0a8;
  localparam logic [11:0] CSR_P_T_WRITE = 12'h0ac;
  localparam logic [11:0] CSR_P_HRS_UNITS = 12'h0b0;
  localparam logic [11:0] CSR_P_CUR_W = 12'h0b4;
  localparam logic [11:0] CSR_P_WMEM_STRIDE = 12'h0b8;  // 32-bit words per WMEM row
  localparam logic [11:0] CSR_P_THR_STRIDE = 12'h0bc;  // words per threshold table
  localparam logic [11:0] CSR_P_REC_STRIDE = 12'h0c0;  // words per recon table

  // Device-map stuck-at flags (golden_model.crossbar).
  localparam logic [1:0] STUCK_NONE = 2'd0;
  localparam logic [1:0] STUCK_LRS = 2'd1;
  localparam logic [1:0] STUCK_HRS = 2'd2;

  // Window geometry: 32-bit words per WMEM row / per ADC table (powers of two).
  function automatic int unsigned wmem_stride(int unsigned cols);
    return 32'd1 << $clog2((cols + 31) / 32);
  endfunction
  function automatic int unsigned thr_stride(int unsigned rows);
    return 32'd1 << $clog2(2 * rows);
  endfunction
  function automatic int unsigned rec_stride(int unsigned rows);
    return 32'd1 << $clog2(2 * rows + 1);
  endfunction

  // Zero-extended instruction field [lsb +: width] (width <= 32).
  function automatic logic [31:0] insn_field(logic [63:0] w, int unsigned lsb,
                                             int unsigned width);
    logic [63:0] m;
    m = (64'd1 << width) - 64'd1;
    return 32'((w >> lsb) & m);
  endfunction

  // Sign-extended instruction field [lsb +: width] (1 <= width <= 32).
  function automatic logic signed [31:0] insn_sfield(logic [63:0] w, int unsigned lsb,
                                                     int unsigned width);
    logic [31:0] u;
    u = insn_field(w, lsb, width);
    return signed'(u << (32 - width)) >>> (32 - width);
  endfunction

  // verilator lint_on UNUSEDPARAM

endpackage : cim_pkg

`default_nettype wire

// cim_axil_regs: AXI4-Lite slave with the control/status registers and the
// memory-mapped load path (see cim_pkg and docs/rtl.md for the map).
//
// One write and one read in flight; every access takes one beat. Memory
// windows accept host accesses only while the controller is idle (SLVERR while
// busy); only the data memory is readable, the other windows are write-only.
// Offsets past a memory's size answer SLVERR, unknown windows DECERR; unknown
// CSR offsets read as zero and ignore writes.

`default_nettype none

module cim_axil_regs
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned NUM_XBARS = 16,
  parameter int unsigned PROG_WORDS = 1024,
  parameter int unsigned DMEM_WORDS = 1024,
  parameter int unsigned WMEM_WORDS = 1024,
  parameter int unsigned ADC_TABLES = 4,
  parameter int unsigned VEC_WIDTH = 8,
  parameter int unsigned ADCS = 256,
  parameter int unsigned T_READ = 2,
  parameter int unsigned T_ADC = 1,
  parameter int unsigned T_WRITE = 100,
  parameter int unsigned HRS_UNITS = 100,
  parameter int unsigned CUR_W = 16
) (
  input  wire logic        clk_i,
  input  wire logic        rst_ni,
  // AXI4-Lite slave.
  input  wire logic [31:0] awaddr_i,
  input  wire logic        awvalid_i,
  output logic             awready_o,
  input  wire logic [31:0] wdata_i,
  input  wire logic [3:0]  wstrb_i,
  input  wire logic        wvalid_i,
  output logic             wready_o,
  output logic [1:0]       bresp_o,
  output logic             bvalid_o,
  input  wire logic        bready_i,
  // Bits [1:0] of the addresses are ignored: every access is one aligned word.
  // verilator lint_off UNUSEDSIGNAL
  input  wire logic [31:0] araddr_i,
  // verilator lint_on UNUSEDSIGNAL
  input  wire logic        arvalid_i,
  output logic             arready_o,
  output logic [31:0]      rdata_o,
  output logic [1:0]       rresp_o,
  output logic             rvalid_o,
  input  wire logic        rready_i,
  // Controller.
  output logic             start_o,
  output logic [31:0]      entry_o,
  output logic [31:0]      prog_len_o,
  output logic [31:0]      wmem_len_o,
  output logic [31:0]      adc_len_o,
  input  wire logic        busy_i,
  input  wire logic        done_i,
  input  wire logic        stop_i,
  input  wire err_e        err_i,
  input  wire logic [31:0] fault_pc_i,
  input  wire logic [31:0] pc_i,
  input  wire logic [63:0] cycles_i,
  input  wire logic [31:0] instret_i,
  input  wire logic [31:0] reads_i,
  input  wire logic [31:0] progs_i,
  output logic             irq_o,
  // Memory load path: word offset (byte offset / 4) inside the window.
  output logic [25:0]      mem_word_o,
  output logic [31:0]      mem_wdata_o,
  output logic [31:0]      mem_wmask_o,
  output logic             prog_we_o,
  output logic             dmem_we_o,
  output logic             wmem_we_o,
  output logic             thr_we_o,
  output logic             rec_we_o,
  output logic [25:0]      dmem_rword_o,
  input  wire logic [31:0] dmem_rdata_i
);

  localparam int unsigned WMEM_CHUNKS = (COLS + 31) / 32;
  localparam int unsigned WMEM_STRIDE = wmem_stride(COLS);
  localparam int unsigned THR_STRIDE = thr_stride(ROWS);
  localparam int unsigned REC_STRIDE = rec_stride(ROWS);

  // Is word offset w inside window win?
  function automatic logic mem_in_range(logic [3:0] win, logic [25:0] w);
    logic ok;
    unique case (win)
      WIN_PROG: ok = 32'(w) < 2 * PROG_WORDS;
      WIN_DMEM: ok = 32'(w) < DMEM_WORDS;
      WIN_WMEM: ok = (32'(w) / WMEM_STRIDE < WMEM_WORDS) && (32'(w) % WMEM_STRIDE < WMEM_CHUNKS);
      WIN_ADC_THR: ok = (32'(w) / THR_STRIDE < ADC_TABLES) && (32'(w) % THR_STRIDE < 2 * ROWS);
      WIN_ADC_REC: ok = (32'(w) / REC_STRIDE < ADC_TABLES)
                        && (32'(w) % REC_STRIDE < 2 * ROWS + 1);
      default: ok = 1'b0;
    endcase
    return ok;
  endfunction

  function automatic logic [31:0] strb_mask(logic [3:0] strb);
    return {{8{strb[3]}}, {8{strb[2]}}, {8{strb[1]}}, {8{strb[0]}}};
  endfunction

  // ------------------------------------------------------------ registers
  logic [31:0] entry_q, prog_len_q, wmem_len_q, adc_len_q;
  logic        irq_en_q, irq_st_q;

  // ------------------------------------------------------------ write path
  logic        aw_valid_q, w_valid_q, b_valid_q;
  // verilator lint_off UNUSEDSIGNAL
  logic [31:0] aw_addr_q;  // bits [1:0] ignored (aligned words)
  // verilator lint_on UNUSEDSIGNAL
  logic [31:0] w_data_q;
  logic [3:0]  w_strb_q;
  logic [1:0]  b_resp_q, b_resp_d;
  logic        do_write;
  logic [3:0]  wwin;
  logic [11:0] wcsr;
  logic [31:0] wmask;

  assign awready_o = !aw_valid_q;
  assign wready_o = !w_valid_q;
  assign bvalid_o = b_valid_q;
  assign bresp_o = b_resp_q;
  assign do_write = aw_valid_q && w_valid_q && !b_valid_q;
  assign wwin = aw_addr_q[31:WIN_LSB];
  assign wcsr = {aw_addr_q[11:2], 2'b00};
  assign wmask = strb_mask(w_strb_q);

  assign mem_word_o = aw_addr_q[27:2];
  assign mem_wdata_o = w_data_q;
  assign mem_wmask_o = wmask;

  logic mem_ok;
  assign mem_ok = !busy_i && mem_in_range(wwin, aw_addr_q[27:2]);

  always_comb begin
    prog_we_o = 1'b0;
    dmem_we_o = 1'b0;
    wmem_we_o = 1'b0;
    thr_we_o = 1'b0;
    rec_we_o = 1'b0;
    start_o = 1'b0;
    b_resp_d = RESP_OKAY;
    if (do_write) begin
      unique case (wwin)
        WIN_CSR: begin
          unique case (wcsr)
            CSR_CTRL: begin
              if (w_strb_q[0] && w_data_q[0]) begin
                if (busy_i) begin
                  b_resp_d = RESP_SLVERR;
                end else begin
                  start_o = 1'b1;
                end
              end
            end
            CSR_ENTRY, CSR_PROG_LEN, CSR_WMEM_LEN, CSR_ADC_LEN: begin
              if (busy_i) begin
                b_resp_d = RESP_SLVERR;
              end
            end
            default: b_resp_d = RESP_OKAY;
          endcase
        end
        WIN_PROG, WIN_DMEM, WIN_WMEM, WIN_ADC_THR, WIN_ADC_REC: begin
          if (!mem_ok) begin
            b_resp_d = RESP_SLVERR;
          end else begin
            prog_we_o = (wwin == WIN_PROG);
            dmem_we_o = (wwin == WIN_DMEM);
            wmem_we_o = (wwin == WIN_WMEM);
            thr_we_o = (wwin == WIN_ADC_THR);
            rec_we_o = (wwin == WIN_ADC_REC);
          end
        end
        default: b_resp_d = RESP_DECERR;
      endcase
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      aw_valid_q <= 1'b0;
      w_valid_q <= 1'b0;
      b_valid_q <= 1'b0;
      aw_addr_q <= 32'd0;
      w_data_q <= 32'd0;
      w_strb_q <= 4'd0;
      b_resp_q <= RESP_OKAY;
    end else begin
      if (awvalid_i && awready_o) begin
        aw_valid_q <= 1'b1;
        aw_addr_q <= awaddr_i;
      end
      if (wvalid_i && wready_o) begin
        w_valid_q <= 1'b1;
        w_data_q <= wdata_i;
        w_strb_q <= wstrb_i;
      end
      if (do_write) begin
        aw_valid_q <= 1'b0;
        w_valid_q <= 1'b0;
        b_valid_q <= 1'b1;
        b_resp_q <= b_resp_d;
      end else if (b_valid_q && bready_i) begin
        b_valid_q <= 1'b0;
      end
    end
  end

  // CSR state.
  logic csr_we;
  assign csr_we = do_write && (wwin == WIN_CSR) && !busy_i;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      entry_q <= 32'd0;
      prog_len_q <= 32'd0;
      wmem_len_q <= 32'd0;
      adc_len_q <= 32'd0;
      irq_en_q <= 1'b0;
      irq_st_q <= 1'b0;
    end else begin
      if (csr_we) begin
        unique case (wcsr)
          CSR_ENTRY: entry_q <= (entry_q & ~wmask) | (w_data_q & wmask);
          CSR_PROG_LEN: prog_len_q <= (prog_len_q & ~wmask) | (w_data_q & wmask);
          CSR_WMEM_LEN: wmem_len_q <= (wmem_len_q & ~wmask) | (w_data_q & wmask);
          CSR_ADC_LEN: adc_len_q <= (adc_len_q & ~wmask) | (w_data_q & wmask);
          default: ;
        endcase
      end
      // IRQ registers may be written while busy.
      if (do_write && wwin == WIN_CSR && wcsr == CSR_IRQ_ENABLE && w_strb_q[0]) begin
        irq_en_q <= w_data_q[0];
      end
      if (stop_i) begin
        irq_st_q <= 1'b1;
      end else if (do_write && wwin == WIN_CSR && wcsr == CSR_IRQ_STATUS && w_strb_q[0]
                   && w_data_q[0]) begin
        irq_st_q <= 1'b0;
      end
    end
  end

  assign entry_o = entry_q;
  assign prog_len_o = prog_len_q;
  assign wmem_len_o = wmem_len_q;
  assign adc_len_o = adc_len_q;
  assign irq_o = irq_en_q && irq_st_q;

  // ------------------------------------------------------------ read path
  logic        r_valid_q;
  logic [31:0] r_data_q, r_data_d;
  logic [1:0]  r_resp_q, r_resp_d;
  logic [3:0]  rwin;
  logic [11:0] rcsr;
  logic [31:0] csr_rdata;

  assign arready_o = !r_valid_q;
  assign rvalid_o = r_valid_q;
  assign rdata_o = r_data_q;
  assign rresp_o = r_resp_q;
  assign rwin = araddr_i[31:WIN_LSB];
  assign rcsr = {araddr_i[11:2], 2'b00};
  assign dmem_rword_o = araddr_i[27:2];

  always_comb begin
    unique case (rcsr)
      CSR_ID: csr_rdata = CIM_ID;
      CSR_VERSION: csr_rdata = {RTL_VERSION, 16'(ISA_VERSION)};
      CSR_CTRL: csr_rdata = 32'd0;
      CSR_ENTRY: csr_rdata = entry_q;
      CSR_STATUS: csr_rdata = {29'd0, err_i != ERR_NONE, done_i, busy_i};
      CSR_ERROR: csr_rdata = 32'(err_i);
      CSR_FAULT_PC: csr_rdata = fault_pc_i;
      CSR_PC: csr_rdata = pc_i;
      CSR_CYCLES_LO: csr_rdata = cycles_i[31:0];
      CSR_CYCLES_HI: csr_rdata = cycles_i[63:32];
      CSR_INSTRET: csr_rdata = instret_i;
      CSR_IRQ_ENABLE: csr_rdata = {31'd0, irq_en_q};
      CSR_IRQ_STATUS: csr_rdata = {31'd0, irq_st_q};
      CSR_PROG_LEN: csr_rdata = prog_len_q;
      CSR_WMEM_LEN: csr_rdata = wmem_len_q;
      CSR_ADC_LEN: csr_rdata = adc_len_q;
      CSR_READS: csr_rdata = reads_i;
      CSR_PROGS: csr_rdata = progs_i;
      CSR_P_ROWS: csr_rdata = ROWS;
      CSR_P_COLS: csr_rdata = COLS;
      CSR_P_NUM_XBARS: csr_rdata = NUM_XBARS;
      CSR_P_PROG_WORDS: csr_rdata = PROG_WORDS;
      CSR_P_DMEM_WORDS: csr_rdata = DMEM_WORDS;
      CSR_P_WMEM_WORDS: csr_rdata = WMEM_WORDS;
      CSR_P_ADC_TABLES: csr_rdata = ADC_TABLES;
      CSR_P_VEC_WIDTH: csr_rdata = VEC_WIDTH;
      CSR_P_ADCS: csr_rdata = ADCS;
      CSR_P_T_READ: csr_rdata = T_READ;
      CSR_P_T_ADC: csr_rdata = T_ADC;
      CSR_P_T_WRITE: csr_rdata = T_WRITE;
      CSR_P_HRS_UNITS: csr_rdata = HRS_UNITS;
      CSR_P_CUR_W: csr_rdata = CUR_W;
      CSR_P_WMEM_STRIDE: csr_rdata = WMEM_STRIDE;
      CSR_P_THR_STRIDE: csr_rdata = THR_STRIDE;
      CSR_P_REC_STRIDE: csr_rdata = REC_STRIDE;
      default: csr_rdata = 32'd0;
    endcase
  end

  always_comb begin
    r_data_d = 32'd0;
    r_resp_d = RESP_OKAY;
    unique case (rwin)
      WIN_CSR: r_data_d = csr_rdata;
      WIN_DMEM: begin
        if (!busy_i && mem_in_range(WIN_DMEM, araddr_i[27:2])) begin
          r_data_d = dmem_rdata_i;
        end else begin
          r_resp_d = RESP_SLVERR;
        end
      end
      WIN_PROG, WIN_WMEM, WIN_ADC_THR, WIN_ADC_REC: r_resp_d = RESP_SLVERR;
      default: r_resp_d = RESP_DECERR;
    endcase
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      r_valid_q <= 1'b0;
      r_data_q <= 32'd0;
      r_resp_q <= RESP_OKAY;
    end else if (arvalid_i && arready_o) begin
      r_valid_q <= 1'b1;
      r_data_q <= r_data_d;
      r_resp_q <= r_resp_d;
    end else if (r_valid_q && rready_i) begin
      r_valid_q <= 1'b0;
    end
  end

endmodule : cim_axil_regs

`default_nettype wire

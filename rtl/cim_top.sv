// cim_top: the cimgen compute-in-memory accelerator.
//
// An AXI4-Lite slave (control/status registers and the load path for the
// program, data, weight and ADC-table memories), the controller, the vector
// unit, the ADC periphery and NUM_XBARS behavioral RRAM crossbars. Parameters
// come from the crossbar config (cimgen.config.XbarConfig; cimgen.hw.rtl_sim).
// The register map is documented in docs/rtl.md.

`default_nettype none

module cim_top
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned NUM_XBARS = 16,
  parameter int unsigned PROG_WORDS = 1024,
  parameter int unsigned DMEM_WORDS = 4096,
  parameter int unsigned WMEM_WORDS = 1024,
  parameter int unsigned ADC_TABLES = 8,
  parameter int unsigned VEC_WIDTH = 8,
  parameter int unsigned ADCS = 256,
  parameter int unsigned T_READ = 2,
  parameter int unsigned T_ADC = 1,
  parameter int unsigned T_WRITE = 100,
  parameter int unsigned HRS_UNITS = 100,
  parameter int unsigned LRS_UNITS = 1000,
  parameter int unsigned CUR_W = 16,
  parameter int unsigned COEF_BITS = 8
) (
  input  wire logic        clk_i,
  input  wire logic        rst_ni,
  // AXI4-Lite slave.
  input  wire logic [31:0] s_axil_awaddr_i,
  input  wire logic [2:0]  s_axil_awprot_i,
  input  wire logic        s_axil_awvalid_i,
  output logic             s_axil_awready_o,
  input  wire logic [31:0] s_axil_wdata_i,
  input  wire logic [3:0]  s_axil_wstrb_i,
  input  wire logic        s_axil_wvalid_i,
  output logic             s_axil_wready_o,
  output logic [1:0]       s_axil_bresp_o,
  output logic             s_axil_bvalid_o,
  input  wire logic        s_axil_bready_i,
  input  wire logic [31:0] s_axil_araddr_i,
  input  wire logic [2:0]  s_axil_arprot_i,
  input  wire logic        s_axil_arvalid_i,
  output logic             s_axil_arready_o,
  output logic [31:0]      s_axil_rdata_o,
  output logic [1:0]       s_axil_rresp_o,
  output logic             s_axil_rvalid_o,
  input  wire logic        s_axil_rready_i,
  // Done interrupt (level, IRQ_STATUS & IRQ_ENABLE) and busy.
  output logic             irq_o,
  output logic             busy_o
);

  localparam int unsigned PAW = (PROG_WORDS > 1) ? $clog2(PROG_WORDS) : 1;
  localparam int unsigned DAW = (DMEM_WORDS > 1) ? $clog2(DMEM_WORDS) : 1;
  localparam int unsigned WAW = (WMEM_WORDS > 1) ? $clog2(WMEM_WORDS) : 1;
  localparam int unsigned WMEM_CHUNKS = (COLS + 31) / 32;
  localparam int unsigned WCW = (WMEM_CHUNKS > 1) ? $clog2(WMEM_CHUNKS) : 1;
  localparam int unsigned NR = 4 * VEC_WIDTH;

  // Elaboration checks: every window fits its 256 MiB of address space.
  if (PROG_WORDS * 8 > (1 << WIN_LSB) || DMEM_WORDS * 4 > (1 << WIN_LSB)
      || WMEM_WORDS * wmem_stride(COLS) * 4 > (1 << WIN_LSB)
      || ADC_TABLES * rec_stride(ROWS) * 4 > (1 << WIN_LSB)) begin : g_bad_size
    $error("cim_top: a memory does not fit its 256 MiB address window");
  end
  if (VEC_WIDTH < 1 || ADCS < 1 || ADCS > COLS || T_READ < 1 || T_ADC < 1 || T_WRITE < 1
      || ROWS < 2 || COLS < 2) begin : g_bad_param
    $error("cim_top: parameter out of range");
  end

  // AXPROT carries no meaning for this slave.
  logic unused_prot;
  assign unused_prot = ^{s_axil_awprot_i, s_axil_arprot_i};

  // ------------------------------------------------------------ registers
  logic        start, busy, done, stop;
  logic [31:0] entry, prog_len, wmem_len, adc_len;
  err_e        err;
  logic [31:0] fault_pc, pc, instret, reads, progs;
  logic [63:0] cycles;
  logic [25:0] mem_word;
  // The data memory uses the low DAW bits of the read offset (range checked in u_regs).
  // verilator lint_off UNUSEDSIGNAL
  logic [25:0] dmem_rword;
  // verilator lint_on UNUSEDSIGNAL
  logic [31:0] mem_wdata, mem_wmask, dmem_hrdata;
  logic        prog_we, dmem_we, wmem_we, thr_we, rec_we;

  cim_axil_regs #(
    .ROWS(ROWS), .COLS(COLS), .NUM_XBARS(NUM_XBARS), .PROG_WORDS(PROG_WORDS),
    .DMEM_WORDS(DMEM_WORDS), .WMEM_WORDS(WMEM_WORDS), .ADC_TABLES(ADC_TABLES),
    .VEC_WIDTH(VEC_WIDTH), .ADCS(ADCS), .T_READ(T_READ), .T_ADC(T_ADC), .T_WRITE(T_WRITE),
    .HRS_UNITS(HRS_UNITS), .CUR_W(CUR_W)
  ) u_regs (
    .clk_i, .rst_ni,
    .awaddr_i(s_axil_awaddr_i), .awvalid_i(s_axil_awvalid_i), .awready_o(s_axil_awready_o),
    .wdata_i(s_axil_wdata_i), .wstrb_i(s_axil_wstrb_i), .wvalid_i(s_axil_wvalid_i),
    .wready_o(s_axil_wready_o),
    .bresp_o(s_axil_bresp_o), .bvalid_o(s_axil_bvalid_o), .bready_i(s_axil_bready_i),
    .araddr_i(s_axil_araddr_i), .arvalid_i(s_axil_arvalid_i), .arready_o(s_axil_arready_o),
    .rdata_o(s_axil_rdata_o), .rresp_o(s_axil_rresp_o), .rvalid_o(s_axil_rvalid_o),
    .rready_i(s_axil_rready_i),
    .start_o(start), .entry_o(entry), .prog_len_o(prog_len), .wmem_len_o(wmem_len),
    .adc_len_o(adc_len),
    .busy_i(busy), .done_i(done), .stop_i(stop), .err_i(err), .fault_pc_i(fault_pc),
    .pc_i(pc), .cycles_i(cycles), .instret_i(instret), .reads_i(reads), .progs_i(progs),
    .irq_o,
    .mem_word_o(mem_word), .mem_wdata_o(mem_wdata), .mem_wmask_o(mem_wmask),
    .prog_we_o(prog_we), .dmem_we_o(dmem_we), .wmem_we_o(wmem_we), .thr_we_o(thr_we),
    .rec_we_o(rec_we), .dmem_rword_o(dmem_rword), .dmem_rdata_i(dmem_hrdata)
  );

  // ------------------------------------------------------------ controller
  logic [PAW-1:0] prog_raddr;
  logic [63:0]    instr;
  logic           clear, exec;
  opcode_e        op;
  logic [31:0]    step;
  logic [31:0]    ib;

  cim_ctrl #(
    .ROWS(ROWS), .COLS(COLS), .NUM_XBARS(NUM_XBARS), .PROG_WORDS(PROG_WORDS),
    .DMEM_WORDS(DMEM_WORDS), .WMEM_WORDS(WMEM_WORDS), .ADC_TABLES(ADC_TABLES),
    .VEC_WIDTH(VEC_WIDTH), .ADCS(ADCS), .T_READ(T_READ), .T_ADC(T_ADC), .T_WRITE(T_WRITE),
    .COEF_BITS(COEF_BITS)
  ) u_ctrl (
    .clk_i, .rst_ni,
    .start_i(start), .entry_i(entry), .prog_len_i(prog_len), .wmem_len_i(wmem_len),
    .adc_len_i(adc_len),
    .prog_raddr_o(prog_raddr), .instr_i(instr),
    .clear_o(clear), .exec_o(exec), .op_o(op), .step_o(step), .ib_o(ib),
    .busy_o(busy), .done_o(done), .stop_o(stop), .err_o(err), .fault_pc_o(fault_pc),
    .pc_o(pc), .cycles_o(cycles), .instret_o(instret), .reads_o(reads), .progs_o(progs)
  );

  assign busy_o = busy;

  // ------------------------------------------------------------ memories
  cim_ram #(
    .WIDTH(64), .DEPTH(PROG_WORDS), .SYNC_READ(1'b1)
  ) u_prog_mem (
    .clk_i,
    .raddr_i(prog_raddr), .rdata_o(instr),
    .hwe_i(prog_we), .haddr_i(PAW'(mem_word >> 1)), .hchunk_i(mem_word[0]),
    .hwdata_i(mem_wdata), .hwmask_i(mem_wmask)
  );

  // The weight memory's read port serves PROG (the crossbars) and CMAC (the
  // vector unit's coefficient rows); one instruction runs at a time.
  logic [WAW-1:0]  wmem_raddr, wmem_raddr_xbar, wmem_raddr_vpu;
  logic [COLS-1:0] wmem_rdata;
  assign wmem_raddr = (op == OP_CMAC) ? wmem_raddr_vpu : wmem_raddr_xbar;

  cim_ram #(
    .WIDTH(COLS), .DEPTH(WMEM_WORDS), .SYNC_READ(1'b0)
  ) u_wmem (
    .clk_i,
    .raddr_i(wmem_raddr), .rdata_o(wmem_rdata),
    .hwe_i(wmem_we), .haddr_i(WAW'(32'(mem_word) / wmem_stride(COLS))),
    .hchunk_i(WCW'(32'(mem_word) % wmem_stride(COLS))),
    .hwdata_i(mem_wdata), .hwmask_i(mem_wmask)
  );

  logic [DAW-1:0]       dm_raddr [NR];
  logic [31:0]          dm_rdata [NR];
  logic [VEC_WIDTH-1:0] dm_we;
  logic [DAW-1:0]       dm_waddr [VEC_WIDTH];
  logic [31:0]          dm_wdata [VEC_WIDTH];

  cim_dmem #(
    .DEPTH(DMEM_WORDS), .NR(NR), .NW(VEC_WIDTH)
  ) u_dmem (
    .clk_i,
    .rd_addr_i(dm_raddr), .rd_data_o(dm_rdata),
    .wr_en_i(dm_we), .wr_addr_i(dm_waddr), .wr_data_i(dm_wdata),
    .hraddr_i(DAW'(dmem_rword)), .hrdata_o(dmem_hrdata),
    .hwe_i(dmem_we), .hwaddr_i(DAW'(mem_word)), .hwdata_i(mem_wdata), .hwmask_i(mem_wmask)
  );

  // ------------------------------------------------------------ datapath
  logic [31:0]        code [COLS];
  logic [31:0]        ndrv;
  logic [ROWS-1:0]    drive;
  logic signed [63:0] sense [COLS];

  cim_vpu #(
    .ROWS(ROWS), .COLS(COLS), .DMEM_WORDS(DMEM_WORDS), .VEC_WIDTH(VEC_WIDTH),
    .WMEM_WORDS(WMEM_WORDS), .COEF_BITS(COEF_BITS)
  ) u_vpu (
    .clk_i, .rst_ni,
    .clear_i(clear), .exec_i(exec), .op_i(op), .step_i(step), .instr_i(instr), .ib_i(ib),
    .code_i(code), .ndrv_i(ndrv), .drive_o(drive),
    .rd_addr_o(dm_raddr), .rd_data_i(dm_rdata),
    .wr_en_o(dm_we), .wr_addr_o(dm_waddr), .wr_data_o(dm_wdata),
    .wmem_raddr_o(wmem_raddr_vpu), .wmem_rdata_i(wmem_rdata)
  );

  cim_xbar #(
    .ROWS(ROWS), .COLS(COLS), .NUM_XBARS(NUM_XBARS), .WMEM_WORDS(WMEM_WORDS), .CUR_W(CUR_W),
    .HRS_UNITS(HRS_UNITS), .LRS_UNITS(LRS_UNITS), .T_READ(T_READ)
  ) u_xbar (
    .clk_i, .rst_ni,
    .clear_i(clear), .exec_i(exec), .op_i(op), .step_i(step), .instr_i(instr),
    .drive_i(drive),
    .wmem_raddr_o(wmem_raddr_xbar), .wmem_rdata_i(wmem_rdata),
    .sense_o(sense), .ndrv_o(ndrv)
  );

  logic [31:0] adc_table, adc_entry;
  always_comb begin
    if (thr_we) begin
      adc_table = 32'(mem_word) / thr_stride(ROWS);
      adc_entry = 32'(mem_word) % thr_stride(ROWS);
    end else begin
      adc_table = 32'(mem_word) / rec_stride(ROWS);
      adc_entry = 32'(mem_word) % rec_stride(ROWS);
    end
  end

  cim_adc #(
    .ROWS(ROWS), .COLS(COLS), .ADC_TABLES(ADC_TABLES), .ADCS(ADCS), .T_READ(T_READ),
    .T_ADC(T_ADC)
  ) u_adc (
    .clk_i, .rst_ni,
    .clear_i(clear), .exec_i(exec), .op_i(op), .step_i(step), .instr_i(instr),
    .sense_i(sense), .code_o(code),
    .thr_we_i(thr_we), .rec_we_i(rec_we), .htable_i(adc_table), .hentry_i(adc_entry),
    .hwdata_i(mem_wdata), .hwmask_i(mem_wmask)
  );

endmodule : cim_top

`default_nettype wire

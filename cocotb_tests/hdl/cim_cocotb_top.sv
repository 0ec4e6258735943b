// cim_cocotb_top: testbench-only top of the cocotb flow (cimgen.hw.rtl_sim).
//
// Generates the clock in HDL (built with --timing) instead of cocotb toggling
// clk_i through VPI every half period, and forwards every other port and
// every parameter of cim_top unchanged. cocotb drives rst_ni and the AXI4-Lite
// slave port, watches irq_o and busy_o, and awaits edges of clk_i (the clock
// of cim_top). Testbench code, not RTL: the lint tests check cim_top alone.

`timescale 1ns / 1ps
`default_nettype none

module cim_cocotb_top #(
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
  parameter int unsigned COEF_BITS = 8,
  // Half clock period in ns (cimgen.hw.rtl_sim.CLOCK_NS / 2).
  parameter int unsigned CLK_HALF_NS = 5,
  // Delay of every output towards cocotb (below); far below a half period.
  parameter realtime OUT_DELAY = 1ps
) (
  input  wire logic        rst_ni,

  input  wire logic [31:0] s_axil_awaddr_i,
  input  wire logic [2:0]  s_axil_awprot_i,
  input  wire logic        s_axil_awvalid_i,
  output wire logic        s_axil_awready_o,
  input  wire logic [31:0] s_axil_wdata_i,
  input  wire logic [3:0]  s_axil_wstrb_i,
  input  wire logic        s_axil_wvalid_i,
  output wire logic        s_axil_wready_o,
  output wire logic [1:0]  s_axil_bresp_o,
  output wire logic        s_axil_bvalid_o,
  input  wire logic        s_axil_bready_i,
  input  wire logic [31:0] s_axil_araddr_i,
  input  wire logic [2:0]  s_axil_arprot_i,
  input  wire logic        s_axil_arvalid_i,
  output wire logic        s_axil_arready_o,
  output wire logic [31:0] s_axil_rdata_o,
  output wire logic [1:0]  s_axil_rresp_o,
  output wire logic        s_axil_rvalid_o,
  input  wire logic        s_axil_rready_i,

  output wire logic        irq_o,
  output wire logic        busy_o
);

  // Free-running clock, period 2 * CLK_HALF_NS; first rising edge at
  // CLK_HALF_NS (the testbench only counts edges).
  logic clk_i = 1'b0;
  always #(CLK_HALF_NS * 1ns) clk_i = ~clk_i;

  // cim_top's outputs.
  logic        awready, wready, bvalid, arready, rvalid, irq, busy;
  logic [1:0]  bresp, rresp;
  logic [31:0] rdata;

  cim_top #(
    .ROWS(ROWS), .COLS(COLS), .NUM_XBARS(NUM_XBARS), .PROG_WORDS(PROG_WORDS),
    .DMEM_WORDS(DMEM_WORDS), .WMEM_WORDS(WMEM_WORDS), .ADC_TABLES(ADC_TABLES),
    .VEC_WIDTH(VEC_WIDTH), .ADCS(ADCS), .T_READ(T_READ), .T_ADC(T_ADC), .T_WRITE(T_WRITE),
    .HRS_UNITS(HRS_UNITS), .LRS_UNITS(LRS_UNITS), .CUR_W(CUR_W), .COEF_BITS(COEF_BITS)
  ) u_cim_top (
    .clk_i, .rst_ni,
    .s_axil_awaddr_i, .s_axil_awprot_i, .s_axil_awvalid_i, .s_axil_awready_o(awready),
    .s_axil_wdata_i, .s_axil_wstrb_i, .s_axil_wvalid_i, .s_axil_wready_o(wready),
    .s_axil_bresp_o(bresp), .s_axil_bvalid_o(bvalid), .s_axil_bready_i,
    .s_axil_araddr_i, .s_axil_arprot_i, .s_axil_arvalid_i, .s_axil_arready_o(arready),
    .s_axil_rdata_o(rdata), .s_axil_rresp_o(rresp), .s_axil_rvalid_o(rvalid),
    .s_axil_rready_i,
    .irq_o(irq), .busy_o(busy)
  );

  // The outputs reach cocotb OUT_DELAY after they change. Verilator evaluates
  // a whole time step, the clock edge included, before cocotb's callbacks
  // run: without the delay, cocotb would see, in its RisingEdge(clk_i)
  // callbacks, the outputs after the edge and their changes at the same
  // moment as the edge. With cocotb's own clock (a VPI write at the start of
  // the time step), it sees the values before the edge there, and their
  // changes after it; the delay restores that view (cocotbext-axi relies on
  // it: its sinks sleep until valid rises, then sample at the next edge).
  // Inputs need nothing: cocotb's writes in its callbacks apply after the
  // edge, so cim_top samples them at the next edge, as with cocotb's clock.
  // The delay adds a time step only when an output changes (host traffic,
  // the end of a run), none while the controller runs.
  assign #(OUT_DELAY) s_axil_awready_o = awready;
  assign #(OUT_DELAY) s_axil_wready_o = wready;
  assign #(OUT_DELAY) s_axil_bresp_o = bresp;
  assign #(OUT_DELAY) s_axil_bvalid_o = bvalid;
  assign #(OUT_DELAY) s_axil_arready_o = arready;
  assign #(OUT_DELAY) s_axil_rdata_o = rdata;
  assign #(OUT_DELAY) s_axil_rresp_o = rresp;
  assign #(OUT_DELAY) s_axil_rvalid_o = rvalid;
  assign #(OUT_DELAY) irq_o = irq;
  assign #(OUT_DELAY) busy_o = busy;

endmodule : cim_cocotb_top

`default_nettype wire

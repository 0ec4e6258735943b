// cim_dmem: behavioral multi-port data memory (32-bit words).
//
// NR combinational read ports and NW write ports serve the vector unit, whose
// vector instructions touch up to VEC_WIDTH lanes per cycle (ACT reads up to 4
// words per lane). A host port (AXI window) reads and writes single words;
// the host may only use it while the controller is idle, so host and vector
// writes never collide. No reset: contents survive rst_ni.

`default_nettype none

module cim_dmem #(
  parameter int unsigned DEPTH = 1024,
  parameter int unsigned NR = 4,
  parameter int unsigned NW = 1,
  localparam int unsigned AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
  input  wire logic        clk_i,
  // Vector unit ports.
  input  wire logic [AW-1:0] rd_addr_i [NR],
  output logic      [31:0]   rd_data_o [NR],
  input  wire logic [NW-1:0] wr_en_i,
  input  wire logic [AW-1:0] wr_addr_i [NW],
  input  wire logic [31:0]   wr_data_i [NW],
  // Host port.
  input  wire logic [AW-1:0] hraddr_i,
  output logic      [31:0]   hrdata_o,
  input  wire logic          hwe_i,
  input  wire logic [AW-1:0] hwaddr_i,
  input  wire logic [31:0]   hwdata_i,
  input  wire logic [31:0]   hwmask_i
);

  logic [31:0] mem_q [DEPTH];

  always_comb begin
    for (int unsigned i = 0; i < NR; i++) begin
      rd_data_o[i] = mem_q[rd_addr_i[i]];
    end
  end

  assign hrdata_o = mem_q[hraddr_i];

  always_ff @(posedge clk_i) begin
    for (int unsigned i = 0; i < NW; i++) begin
      if (wr_en_i[i]) begin
        mem_q[wr_addr_i[i]] <= wr_data_i[i];
      end
    end
    if (hwe_i) begin
      mem_q[hwaddr_i] <= (mem_q[hwaddr_i] & ~hwmask_i) | (hwdata_i & hwmask_i);
    end
  end

endmodule : cim_dmem

`default_nettype wire

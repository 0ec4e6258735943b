// cim_ram: behavioral single-port-read RAM with a 32-bit host write port.
//
// WIDTH-bit words, DEPTH deep. The host writes one 32-bit chunk of a word at a
// time (chunk j holds bits [32j +: 32], bits past WIDTH are dropped), under a
// bit mask. The read port is synchronous (SYNC_READ = 1: data one cycle after
// the address) or combinational (SYNC_READ = 0). No reset: RAM contents survive
// rst_ni, like the SRAM macros this models.

`default_nettype none

module cim_ram #(
  parameter int unsigned WIDTH = 64,
  parameter int unsigned DEPTH = 1024,
  parameter bit SYNC_READ = 1'b1,
  localparam int unsigned AW = (DEPTH > 1) ? $clog2(DEPTH) : 1,
  localparam int unsigned CHUNKS = (WIDTH + 31) / 32,
  localparam int unsigned CW = (CHUNKS > 1) ? $clog2(CHUNKS) : 1
) (
  input  wire logic              clk_i,
  // Read port.
  input  wire logic [AW-1:0]     raddr_i,
  output logic      [WIDTH-1:0]  rdata_o,
  // Host write port.
  input  wire logic              hwe_i,
  input  wire logic [AW-1:0]     haddr_i,
  input  wire logic [CW-1:0]     hchunk_i,
  input  wire logic [31:0]       hwdata_i,
  input  wire logic [31:0]       hwmask_i
);

  logic [WIDTH-1:0] mem_q [DEPTH];

  always_ff @(posedge clk_i) begin
    if (hwe_i) begin
      for (int unsigned b = 0; b < 32; b++) begin
        if (hwmask_i[b] && (32'(hchunk_i) * 32 + b < WIDTH)) begin
          mem_q[haddr_i][32'(hchunk_i) * 32 + b] <= hwdata_i[b];
        end
      end
    end
  end

  if (SYNC_READ) begin : g_sync
    always_ff @(posedge clk_i) begin
      rdata_o <= mem_q[raddr_i];
    end
  end else begin : g_async
    assign rdata_o = mem_q[raddr_i];
  end

endmodule : cim_ram

`default_nettype wire

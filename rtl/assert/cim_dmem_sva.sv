// cim_dmem_sva: host and vector unit never write in the same cycle, and no
// two vector write ports hit one word in a cycle.
// Bound into every cim_dmem; verification only, built with --assert
// (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_dmem_sva #(
  parameter int unsigned NW = 1,
  parameter int unsigned AW = 10
) (
  input wire logic          clk_i,
  input wire logic [NW-1:0] wr_en_i,
  input wire logic [AW-1:0] wr_addr_i [NW],
  input wire logic          hwe_i
);
  a_host_or_vector: assert property (@(posedge clk_i) !(hwe_i && wr_en_i != '0))
    else $error("cim_dmem: host and vector unit write in the same cycle");
  for (genvar i = 0; i < NW; i++) begin : g_i
    for (genvar j = i + 1; j < NW; j++) begin : g_j
      a_distinct: assert property (@(posedge clk_i)
          wr_en_i[i] && wr_en_i[j] |-> wr_addr_i[i] != wr_addr_i[j])
        else $error("cim_dmem: write ports %0d and %0d hit word %0d in one cycle", i, j,
                    wr_addr_i[i]);
    end
  end
endmodule : cim_dmem_sva

bind cim_dmem cim_dmem_sva #(.NW(NW), .AW(AW)) u_dmem_sva (.*);

`default_nettype wire

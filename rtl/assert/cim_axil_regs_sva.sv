// cim_axil_regs_sva: AXI4-Lite handshake rules on the slave port of
// cim_axil_regs, bound into every instance (`bind` at the end of the file).
//
// Master-side rules (the host must keep valid and the payload until ready)
// are checked too: a bus master that breaks them makes the slave latch a
// payload the master no longer means, so the run fails loudly instead of
// carrying on with a torn transfer. Slave-side rules: a response stays valid
// and stable until it is taken, and there is never a response without a
// request. Verification only: built with
// --assert (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_axil_regs_sva (
  input wire logic        clk_i,
  input wire logic        rst_ni,
  input wire logic [31:0] awaddr_i,
  input wire logic        awvalid_i,
  input wire logic        awready_o,
  input wire logic [31:0] wdata_i,
  input wire logic [3:0]  wstrb_i,
  input wire logic        wvalid_i,
  input wire logic        wready_o,
  input wire logic [1:0]  bresp_o,
  input wire logic        bvalid_o,
  input wire logic        bready_i,
  input wire logic [31:0] araddr_i,
  input wire logic        arvalid_i,
  input wire logic        arready_o,
  input wire logic [31:0] rdata_o,
  input wire logic [1:0]  rresp_o,
  input wire logic        rvalid_o,
  input wire logic        rready_i
);

  // Outstanding transactions seen on the port: accepted addresses minus
  // responses taken. The slave buffers one write address while a write
  // response waits, so up to 2 writes, and 1 read.
  logic [1:0] wr_out_q, rd_out_q;
  logic       aw_hs, b_hs, ar_hs, r_hs;
  assign aw_hs = awvalid_i && awready_o;
  assign b_hs = bvalid_o && bready_i;
  assign ar_hs = arvalid_i && arready_o;
  assign r_hs = rvalid_o && rready_i;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      wr_out_q <= 2'd0;
      rd_out_q <= 2'd0;
    end else begin
      wr_out_q <= wr_out_q + 2'(aw_hs) - 2'(b_hs);
      rd_out_q <= rd_out_q + 2'(ar_hs) - 2'(r_hs);
    end
  end

  // ---------------------------------------------------------- master rules
  a_aw_valid_held: assert property (@(posedge clk_i) disable iff (!rst_ni)
      awvalid_i && !awready_o |=> awvalid_i)
    else $error("AXI4-Lite: awvalid dropped before awready (master broke the handshake)");
  a_aw_stable: assert property (@(posedge clk_i) disable iff (!rst_ni)
      awvalid_i && !awready_o |=> $stable(awaddr_i))
    else $error("AXI4-Lite: awaddr changed while awvalid and not awready");
  a_w_valid_held: assert property (@(posedge clk_i) disable iff (!rst_ni)
      wvalid_i && !wready_o |=> wvalid_i)
    else $error("AXI4-Lite: wvalid dropped before wready (master broke the handshake)");
  a_w_stable: assert property (@(posedge clk_i) disable iff (!rst_ni)
      wvalid_i && !wready_o |=> $stable(wdata_i) && $stable(wstrb_i))
    else $error("AXI4-Lite: wdata/wstrb changed while wvalid and not wready");
  a_ar_valid_held: assert property (@(posedge clk_i) disable iff (!rst_ni)
      arvalid_i && !arready_o |=> arvalid_i)
    else $error("AXI4-Lite: arvalid dropped before arready (master broke the handshake)");
  a_ar_stable: assert property (@(posedge clk_i) disable iff (!rst_ni)
      arvalid_i && !arready_o |=> $stable(araddr_i))
    else $error("AXI4-Lite: araddr changed while arvalid and not arready");

  // ----------------------------------------------------------- slave rules
  a_b_valid_held: assert property (@(posedge clk_i) disable iff (!rst_ni)
      bvalid_o && !bready_i |=> bvalid_o && $stable(bresp_o))
    else $error("AXI4-Lite: bvalid dropped or bresp changed before bready");
  a_r_valid_held: assert property (@(posedge clk_i) disable iff (!rst_ni)
      rvalid_o && !rready_i |=> rvalid_o && $stable(rdata_o) && $stable(rresp_o))
    else $error("AXI4-Lite: rvalid dropped or rdata/rresp changed before rready");
  a_b_has_request: assert property (@(posedge clk_i) disable iff (!rst_ni)
      bvalid_o |-> wr_out_q != 2'd0)
    else $error("AXI4-Lite: write response without an accepted write address");
  a_r_has_request: assert property (@(posedge clk_i) disable iff (!rst_ni)
      rvalid_o |-> rd_out_q == 2'd1)
    else $error("AXI4-Lite: read response without exactly one accepted read address");
  a_wr_outstanding: assert property (@(posedge clk_i) disable iff (!rst_ni)
      wr_out_q <= 2'd2)
    else $error("AXI4-Lite: more than two writes outstanding");
  a_rd_outstanding: assert property (@(posedge clk_i) disable iff (!rst_ni)
      rd_out_q <= 2'd1)
    else $error("AXI4-Lite: more than one read outstanding");

endmodule : cim_axil_regs_sva

bind cim_axil_regs cim_axil_regs_sva u_axil_regs_sva (.*);

`default_nettype wire

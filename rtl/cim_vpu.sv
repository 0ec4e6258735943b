// cim_vpu: the digital periphery's vector unit.
//
// Holds the input register IN (per logical row: 8 low bits, a negative and a
// zero flag, and a valid bit set by LDIN and cleared by INCLR) and the
// accumulators ACC (32-bit, wrapping). It drives the crossbar rows for READ
// (value masks, bit-planes, pair layout) and executes LDIN, ACC, ACLR, STA,
// ACT, VCOPY and VMAX. DMEM vector instructions handle VEC_WIDTH lanes per
// cycle in steps 1..ceil(lanes / VEC_WIDTH) after the decode cycle; each step
// reads its source words, then writes its destination words (at the clock
// edge), so a step sees the writes of the steps before it. ACC from CODE or
// NDRV updates every lane in the decode cycle. CMAC (BasisN) loads its n basis
// products from DMEM into a buffer (VEC_WIDTH per step), then combines them
// with one output lane's coefficient row of the weight memory per step.

`default_nettype none

module cim_vpu
  import cim_isa_pkg::*;
  import cim_pkg::*;
#(
  parameter int unsigned ROWS = 256,
  parameter int unsigned COLS = 256,
  parameter int unsigned DMEM_WORDS = 1024,
  parameter int unsigned VEC_WIDTH = 8,
  parameter int unsigned WMEM_WORDS = 1024,
  parameter int unsigned COEF_BITS = 8,
  localparam int unsigned WAW = (WMEM_WORDS > 1) ? $clog2(WMEM_WORDS) : 1,
  localparam int unsigned DAW = (DMEM_WORDS > 1) ? $clog2(DMEM_WORDS) : 1,
  localparam int unsigned RW = $clog2(ROWS),
  localparam int unsigned NR = 4 * VEC_WIDTH
) (
  input  wire logic              clk_i,
  input  wire logic              rst_ni,
  input  wire logic              clear_i,
  input  wire logic              exec_i,
  input  wire opcode_e           op_i,
  input  wire logic [31:0]       step_i,
  input  wire logic [63:0]       instr_i,
  input  wire logic [31:0]       ib_i,  // image base: added to relative DMEM addresses
  // ADC codes and driven-row count of the last READ.
  input  wire logic [31:0]       code_i [COLS],
  input  wire logic [31:0]       ndrv_i,
  // Row drive for READ.
  output logic [ROWS-1:0]        drive_o,
  // Data memory.
  output logic [DAW-1:0]         rd_addr_o [NR],
  input  wire logic [31:0]       rd_data_i [NR],
  output logic [VEC_WIDTH-1:0]   wr_en_o,
  output logic [DAW-1:0]         wr_addr_o [VEC_WIDTH],
  output logic [31:0]            wr_data_o [VEC_WIDTH],
  // Weight memory (CMAC coefficient rows).
  output logic [WAW-1:0]         wmem_raddr_o,
  input  wire logic [COLS-1:0]   wmem_rdata_i
);

  // ------------------------------------------------------------ state
  logic [7:0]      in_bits_q [ROWS];
  logic [ROWS-1:0] in_neg_q, in_zero_q, in_valid_q;
  logic [31:0]     acc_q [COLS];

  // ------------------------------------------------------------ fields
  logic [31:0] lanes;
  assign lanes = insn_field(instr_i, LDIN_LANES_LSB, LDIN_LANES_W);

  // ------------------------------------------------------------ row drive
  logic [31:0] row_off;
  logic        pair;
  logic [2:0]  mask_a, mask_b;
  logic [31:0] bit_sel;
  assign row_off = insn_field(instr_i, READ_ROW_OFF_LSB, READ_ROW_OFF_W);
  assign pair = instr_i[READ_PAIR_LSB];
  assign mask_a = instr_i[READ_MASK_A_LSB +: 3];
  assign mask_b = instr_i[READ_MASK_B_LSB +: 3];
  assign bit_sel = insn_field(instr_i, READ_BIT_LSB, READ_BIT_W);

  always_comb begin
    logic [31:0] rel;
    logic [RW-1:0] j;
    logic [2:0] m;
    logic neg, zero, pos;
    drive_o = '0;
    for (int unsigned r = 0; r < ROWS; r++) begin
      rel = r - row_off;
      j = RW'(pair ? (rel >> 1) : rel);
      m = (pair && rel[0]) ? mask_b : mask_a;
      if (bit_sel == BIT_SIGNED) begin
        neg = in_neg_q[j];
        zero = in_zero_q[j];
        pos = !in_neg_q[j] && !in_zero_q[j];
      end else begin
        neg = 1'b0;
        pos = in_bits_q[j][bit_sel[2:0]];
        zero = !pos;
      end
      drive_o[r] = (r >= row_off) && in_valid_q[j]
                   && ((m[0] && neg) || (m[1] && zero) || (m[2] && pos));
    end
  end

  // ------------------------------------------------------------ vector lanes
  logic        vec_op;  // a DMEM vector instruction is in one of its lane steps
  logic [31:0] src_base, dst_base;
  logic [31:0] act_k;
  logic [31:0] lane [VEC_WIDTH];
  logic [VEC_WIDTH-1:0] lane_on;
  logic [31:0] acc_src;
  logic signed [31:0] acc_mul;
  logic [31:0] acc_k;  // (mul << sh) as a 32-bit pattern: products wrap like the ACC lanes

  assign acc_src = insn_field(instr_i, ACC_SRC_LSB, ACC_SRC_W);
  assign acc_mul = insn_sfield(instr_i, ACC_MUL_LSB, ACC_MUL_W)
                   <<< insn_field(instr_i, ACC_SH_LSB, ACC_SH_W);
  assign acc_k = $unsigned(acc_mul);
  assign act_k = insn_field(instr_i, ACT_K_LSB, ACT_K_W);

  // IB when the instruction's relative bit at ``lsb`` is set.
  function automatic logic [31:0] rel(int unsigned lsb);
    return (insn_field(instr_i, lsb, 1) != 32'd0) ? ib_i : 32'd0;
  endfunction

  always_comb begin
    vec_op = 1'b0;
    src_base = 32'd0;
    dst_base = 32'd0;
    unique case (op_i)
      OP_LDIN: begin
        vec_op = 1'b1;
        src_base = insn_field(instr_i, LDIN_SRC_LSB, LDIN_SRC_W) + rel(LDIN_RSRC_LSB);
        dst_base = insn_field(instr_i, LDIN_DST_LSB, LDIN_DST_W);
      end
      OP_ACC: begin
        vec_op = (acc_src == 32'(SRC_DMEM));
        src_base = insn_field(instr_i, ACC_ADDR_LSB, ACC_ADDR_W) + rel(ACC_REL_LSB);
      end
      OP_STA: begin
        vec_op = 1'b1;
        dst_base = insn_field(instr_i, STA_DST_LSB, STA_DST_W) + rel(STA_REL_LSB);
      end
      OP_ACT: begin
        vec_op = 1'b1;
        src_base = insn_field(instr_i, ACT_TBL_LSB, ACT_TBL_W) + rel(ACT_RTBL_LSB);
        dst_base = insn_field(instr_i, ACT_DST_LSB, ACT_DST_W) + rel(ACT_RDST_LSB);
      end
      OP_VCOPY, OP_VMAX: begin
        // VCOPY and VMAX share their field layout.
        vec_op = 1'b1;
        src_base = insn_field(instr_i, VCOPY_SRC_LSB, VCOPY_SRC_W) + rel(VCOPY_RSRC_LSB);
        dst_base = insn_field(instr_i, VCOPY_DST_LSB, VCOPY_DST_W) + rel(VCOPY_RDST_LSB);
      end
      default: vec_op = 1'b0;
    endcase
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      lane[i] = (step_i - 32'd1) * VEC_WIDTH + i;
      lane_on[i] = exec_i && vec_op && (step_i != 32'd0) && (lane[i] < lanes);
    end
  end

  // ------------------------------------------------------------ CMAC
  logic [31:0] cm_n, cm_src, cm_load_steps, cm_lane;
  logic [31:0] cm_idx [VEC_WIDTH];
  logic [VEC_WIDTH-1:0] cm_load_on;
  logic        cm_mac;  // a coefficient-row step: lane cm_lane
  logic [31:0] y_q [COLS];
  logic [31:0] cm_dot;  // sum_j C[lane][j] * y[j], low 32 bits (ACC wraps)

  assign cm_n = insn_field(instr_i, CMAC_N_LSB, CMAC_N_W);
  assign cm_src = insn_field(instr_i, CMAC_SRC_LSB, CMAC_SRC_W) + rel(CMAC_RSRC_LSB);
  assign cm_load_steps = (cm_n + VEC_WIDTH - 1) / VEC_WIDTH;
  assign cm_lane = step_i - 32'd1 - cm_load_steps;
  assign cm_mac = exec_i && (op_i == OP_CMAC) && (step_i > cm_load_steps);
  assign wmem_raddr_o = WAW'(insn_field(instr_i, CMAC_COEF_LSB, CMAC_COEF_W) + cm_lane);

  always_comb begin
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      cm_idx[i] = (step_i - 32'd1) * VEC_WIDTH + i;
      cm_load_on[i] = exec_i && (op_i == OP_CMAC) && (step_i != 32'd0)
                      && (step_i <= cm_load_steps) && (cm_idx[i] < cm_n);
    end
  end

  always_comb begin
    logic [COEF_BITS-1:0] c;
    logic [31:0] ck;  // the sign-extended coefficient as a 32-bit pattern (products wrap)
    cm_dot = 32'd0;
    for (int unsigned j = 0; j < COLS / COEF_BITS; j++) begin
      c = wmem_rdata_i[j * COEF_BITS +: COEF_BITS];
      ck = $unsigned(32'(signed'(c)));
      if (j < cm_n) begin
        cm_dot = cm_dot + ck * y_q[j];
      end
    end
  end

  always_ff @(posedge clk_i) begin
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      if (cm_load_on[i]) begin
        y_q[cm_idx[i]] <= rd_data_i[i];
      end
    end
  end

  // DMEM read addresses: port i (+ VEC_WIDTH * j) serves lane slot i.
  always_comb begin
    for (int unsigned p = 0; p < NR; p++) begin
      rd_addr_o[p] = '0;
    end
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      if (cm_load_on[i]) begin
        rd_addr_o[i] = DAW'(cm_src + cm_idx[i]);
      end
    end
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      if (lane_on[i]) begin
        unique case (op_i)
          OP_ACT: begin
            for (int unsigned j = 0; j < 4; j++) begin
              if (j <= act_k) begin
                rd_addr_o[j * VEC_WIDTH + i] = DAW'(src_base + lane[i] * (act_k + 32'd1) + j);
              end
            end
          end
          OP_VMAX: begin
            rd_addr_o[i] = DAW'(src_base + lane[i]);
            rd_addr_o[VEC_WIDTH + i] = DAW'(dst_base + lane[i]);
          end
          default: rd_addr_o[i] = DAW'(src_base + lane[i]);
        endcase
      end
    end
  end

  // ACT: obias + oscale * #{j: sign * ACC >= t_j}.
  function automatic logic [31:0] act_value(logic [31:0] acc, logic [31:0] s, logic [31:0] t1,
                                            logic [31:0] t2, logic [31:0] t3, logic [31:0] k,
                                            logic signed [31:0] oscale,
                                            logic signed [31:0] obias);
    logic signed [63:0] v;
    logic signed [31:0] cnt;
    v = 64'(signed'(s)) * 64'(signed'(acc));
    cnt = 32'd0;
    if (v >= 64'(signed'(t1))) cnt = cnt + 32'sd1;
    if (k >= 32'd2 && v >= 64'(signed'(t2))) cnt = cnt + 32'sd1;
    if (k >= 32'd3 && v >= 64'(signed'(t3))) cnt = cnt + 32'sd1;
    return $unsigned(obias + oscale * cnt);
  endfunction

  // DMEM writes.
  always_comb begin
    logic signed [31:0] a, b;
    for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
      wr_en_o[i] = 1'b0;
      wr_addr_o[i] = DAW'(dst_base + lane[i]);
      wr_data_o[i] = 32'd0;
      a = signed'(rd_data_i[i]);
      b = signed'(rd_data_i[VEC_WIDTH + i]);
      if (lane_on[i]) begin
        unique case (op_i)
          OP_STA: begin
            wr_en_o[i] = 1'b1;
            wr_data_o[i] = acc_q[lane[i]];
          end
          OP_VCOPY: begin
            wr_en_o[i] = 1'b1;
            wr_data_o[i] = rd_data_i[i];
          end
          OP_VMAX: begin
            wr_en_o[i] = 1'b1;
            wr_data_o[i] = (a > b) ? rd_data_i[i] : rd_data_i[VEC_WIDTH + i];
          end
          OP_ACT: begin
            wr_en_o[i] = 1'b1;
            wr_data_o[i] = act_value(acc_q[lane[i]], rd_data_i[i], rd_data_i[VEC_WIDTH + i],
                                     rd_data_i[2 * VEC_WIDTH + i],
                                     rd_data_i[3 * VEC_WIDTH + i], act_k,
                                     insn_sfield(instr_i, ACT_OSCALE_LSB, ACT_OSCALE_W),
                                     insn_sfield(instr_i, ACT_OBIAS_LSB, ACT_OBIAS_W));
          end
          default: wr_en_o[i] = 1'b0;
        endcase
      end
    end
  end

  // ------------------------------------------------------------ registers
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      in_valid_q <= '0;
      for (int unsigned l = 0; l < COLS; l++) begin
        acc_q[l] <= 32'd0;
      end
    end else if (clear_i) begin
      in_valid_q <= '0;
      for (int unsigned l = 0; l < COLS; l++) begin
        acc_q[l] <= 32'd0;
      end
    end else if (exec_i) begin
      unique case (op_i)
        OP_INCLR: in_valid_q <= '0;
        OP_LDIN: begin
          for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
            if (lane_on[i]) begin
              in_valid_q[dst_base + lane[i]] <= 1'b1;
            end
          end
        end
        OP_ACLR: begin
          for (int unsigned l = 0; l < COLS; l++) begin
            acc_q[l] <= 32'd0;
          end
        end
        OP_ACC: begin
          if (acc_src == 32'(SRC_DMEM)) begin
            for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
              if (lane_on[i]) begin
                acc_q[lane[i]] <= acc_q[lane[i]] + acc_k * rd_data_i[i];
              end
            end
          end else if (step_i == 32'd0) begin
            /*verilator unroll_disable*/
            for (int unsigned l = 0; l < COLS; l++) begin
              if (l < lanes) begin
                if (acc_src == 32'(SRC_CODE)) begin
                  acc_q[l] <= acc_q[l]
                      + acc_k * code_i[insn_field(instr_i, ACC_ADDR_LSB, ACC_ADDR_W) + l];
                end else begin
                  acc_q[l] <= acc_q[l] + acc_k * ndrv_i;
                end
              end
            end
          end
        end
        OP_CMAC: begin
          if (cm_mac) begin
            acc_q[cm_lane] <= acc_q[cm_lane] + cm_dot;
          end
        end
        default: ;
      endcase
    end
  end

  // IN values (no reset needed: an entry only drives once LDIN marks it valid).
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      in_neg_q <= '0;
      in_zero_q <= '0;
    end else if (exec_i && op_i == OP_LDIN) begin
      for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
        if (lane_on[i]) begin
          in_neg_q[dst_base + lane[i]] <= rd_data_i[i][31];
          in_zero_q[dst_base + lane[i]] <= (rd_data_i[i] == 32'd0);
        end
      end
    end
  end

  always_ff @(posedge clk_i) begin
    if (exec_i && op_i == OP_LDIN) begin
      for (int unsigned i = 0; i < VEC_WIDTH; i++) begin
        if (lane_on[i]) begin
          in_bits_q[dst_base + lane[i]] <= rd_data_i[i][7:0];
        end
      end
    end
  end

endmodule : cim_vpu

`default_nettype wire

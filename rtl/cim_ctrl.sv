// cim_ctrl: fetch, decode, range checks and sequencing of the cimgen ISA.
//
// The program memory is read synchronously at the next pc (prog_raddr_o), so
// instr_i always holds the word at pc_q. Every instruction starts with its
// decode cycle (step 0), in which the range checks of cim_isa_pkg run in the
// order of golden_model.machine.Machine._check; a failing instruction stops the
// controller after that one cycle with the error code and the faulting pc, and
// is not counted as executed. A passing instruction stays for exactly its cost
// (golden_model.isa.cost) in cycles; the datapath units act on (op_o, step_o) while
// exec_o is high. The only control flow is LOOP, a zero-overhead hardware loop
// with a bounded iteration count that cannot nest, so a run ends at HALT, at a
// fault, or when the pc leaves the loaded program (PC_RANGE): the controller
// cannot hang. The image base IB (ib_o) is 0 outside loops and grows by the
// loop's stride per iteration; DMEM address fields with their relative bit
// set are checked (and used by the vector unit) as field + IB.

`default_nettype none

module cim_ctrl
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
  parameter int unsigned COEF_BITS = 8,
  localparam int unsigned PAW = (PROG_WORDS > 1) ? $clog2(PROG_WORDS) : 1
) (
  input  wire logic          clk_i,
  input  wire logic          rst_ni,
  // Host control.
  input  wire logic          start_i,
  input  wire logic [31:0]   entry_i,
  input  wire logic [31:0]   prog_len_i,
  input  wire logic [31:0]   wmem_len_i,
  input  wire logic [31:0]   adc_len_i,
  // Program memory.
  output logic [PAW-1:0]     prog_raddr_o,
  input  wire logic [63:0]   instr_i,
  // Datapath control.
  output logic               clear_o,
  output logic               exec_o,
  output opcode_e            op_o,
  output logic [31:0]        step_o,
  output logic [31:0]        ib_o,
  // Status.
  output logic               busy_o,
  output logic               done_o,
  output logic               stop_o,
  output err_e               err_o,
  output logic [31:0]        fault_pc_o,
  output logic [31:0]        pc_o,
  output logic [63:0]        cycles_o,
  output logic [31:0]        instret_o,
  output logic [31:0]        reads_o,
  output logic [31:0]        progs_o
);

  function automatic logic [31:0] fld(logic [63:0] w, int unsigned lsb, int unsigned width);
    return insn_field(w, lsb, width);
  endfunction

  typedef enum logic {
    StIdle,
    StRun
  } state_e;

  state_e      state_q, state_d;
  logic [31:0] pc_q, pc_d;
  logic [31:0] step_q, step_d;
  logic [63:0] cycles_q, cycles_d;
  logic [31:0] instret_q, instret_d;
  logic [31:0] reads_q, reads_d;
  logic [31:0] progs_q, progs_d;
  err_e        err_q, err_d;
  logic [31:0] fault_pc_q, fault_pc_d;
  logic        done_q, done_d;
  // Hardware loop: body [loop_start_q, loop_end_q], iterations left after the current.
  logic        loop_on_q, loop_on_d;
  logic [31:0] loop_start_q, loop_start_d;
  logic [31:0] loop_end_q, loop_end_d;
  logic [31:0] loop_left_q, loop_left_d;
  logic [31:0] loop_stride_q, loop_stride_d;
  logic [31:0] ib_q, ib_d;

  // ---------------------------------------------------------------- decode
  opcode_e     op;
  logic        known;
  logic        has_lanes;
  logic [31:0] lanes;
  logic [31:0] cost;
  logic [31:0] vec_steps, adc_groups;
  err_e        err;
  logic        running;

  assign op = opcode_e'(instr_i[OPCODE_LSB +: OPCODE_BITS]);
  assign running = (state_q == StRun);

  always_comb begin
    known = 1'b1;
    has_lanes = 1'b1;
    unique case (op)
      OP_NOP, OP_HALT, OP_INCLR, OP_ACLR, OP_PROG, OP_LOOP: has_lanes = 1'b0;
      OP_LDIN, OP_READ, OP_ACC, OP_STA, OP_ACT, OP_VCOPY, OP_VMAX, OP_CMAC: has_lanes = 1'b1;
      default: begin
        known = 1'b0;
        has_lanes = 1'b0;
      end
    endcase
    // Every op with a lanes field has it at the same place (checked by the
    // pyslang test against golden_model/isa.py).
    lanes = has_lanes ? fld(instr_i, LDIN_LANES_LSB, LDIN_LANES_W) : 32'd0;
    vec_steps = (lanes + VEC_WIDTH - 1) / VEC_WIDTH;
    adc_groups = (lanes + ADCS - 1) / ADCS;
  end

  // Cycle cost (golden_model.isa.cost).
  always_comb begin
    unique case (op)
      OP_PROG: cost = T_WRITE;
      OP_READ: cost = T_READ + T_ADC * adc_groups;
      OP_ACC: begin
        cost = (fld(instr_i, ACC_SRC_LSB, ACC_SRC_W) == 32'(SRC_DMEM)) ? 32'd1 + vec_steps
                                                                       : 32'd1;
      end
      OP_LDIN, OP_STA, OP_ACT, OP_VCOPY, OP_VMAX: cost = 32'd1 + vec_steps;
      // CMAC: load the n basis products, then one output lane per cycle.
      OP_CMAC: cost = 32'd1 + (fld(instr_i, CMAC_N_LSB, CMAC_N_W) + VEC_WIDTH - 1) / VEC_WIDTH
                      + lanes;
      default: cost = 32'd1;
    endcase
  end

  // Effective DMEM addresses: the field, plus IB when its relative bit is set.
  function automatic logic [31:0] eff(logic [63:0] w, int unsigned lsb, int unsigned width,
                                      int unsigned rel_lsb, logic [31:0] ib);
    return insn_field(w, lsb, width) + ((insn_field(w, rel_lsb, 1) != 32'd0) ? ib : 32'd0);
  endfunction

  // Range checks, in the order of golden_model.machine.Machine._check.
  logic [31:0] width_cols;
  logic [31:0] max_lanes;
  always_comb begin
    err = ERR_NONE;
    width_cols = (fld(instr_i, READ_SENSE_LSB, READ_SENSE_W) == 32'(SENSE_SYM))
                 ? 2 * lanes : lanes;
    max_lanes = (op == OP_LDIN) ? ROWS : COLS;
    if (pc_q >= prog_len_i || pc_q >= PROG_WORDS) begin
      err = ERR_PC_RANGE;
    end else if (!known) begin
      err = ERR_ILLEGAL;
    end else if (op == OP_ACC && fld(instr_i, ACC_SRC_LSB, ACC_SRC_W) > 32'(SRC_DMEM)) begin
      err = ERR_ILLEGAL;
    end else if (op == OP_ACT && fld(instr_i, ACT_K_LSB, ACT_K_W) == 32'd0) begin
      err = ERR_ILLEGAL;
    end else if (op == OP_READ && fld(instr_i, READ_BIT_LSB, READ_BIT_W) >= 32'd8
                 && fld(instr_i, READ_BIT_LSB, READ_BIT_W) < BIT_SIGNED) begin
      err = ERR_ILLEGAL;
    end else if (op == OP_LOOP && (fld(instr_i, LOOP_COUNT_LSB, LOOP_COUNT_W) == 32'd0
                                   || fld(instr_i, LOOP_LEN_LSB, LOOP_LEN_W) == 32'd0
                                   || loop_on_q)) begin
      err = ERR_ILLEGAL;
    end else if (has_lanes && (lanes == 32'd0 || lanes > max_lanes)) begin
      err = ERR_VEC_RANGE;
    end else begin
      unique case (op)
        OP_PROG: begin
          if (fld(instr_i, PROG_XBAR_LSB, PROG_XBAR_W) >= NUM_XBARS
              || fld(instr_i, PROG_ROW_LSB, PROG_ROW_W) >= ROWS) begin
            err = ERR_XBAR_RANGE;
          end else if (fld(instr_i, PROG_WSRC_LSB, PROG_WSRC_W) >= WMEM_WORDS
                       || fld(instr_i, PROG_WSRC_LSB, PROG_WSRC_W) >= wmem_len_i) begin
            err = ERR_WMEM_RANGE;
          end
        end
        OP_LDIN: begin
          if (fld(instr_i, LDIN_DST_LSB, LDIN_DST_W) + lanes > ROWS) begin
            err = ERR_VEC_RANGE;
          end else if (eff(instr_i, LDIN_SRC_LSB, LDIN_SRC_W, LDIN_RSRC_LSB, ib_q) + lanes
                       > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end
        end
        OP_READ: begin
          if (fld(instr_i, READ_XBAR_LSB, READ_XBAR_W) >= NUM_XBARS
              || fld(instr_i, READ_ROW_OFF_LSB, READ_ROW_OFF_W) >= ROWS
              || fld(instr_i, READ_COL_LSB, READ_COL_W) + width_cols > COLS) begin
            err = ERR_XBAR_RANGE;
          end else if (fld(instr_i, READ_ADC_LSB, READ_ADC_W) >= ADC_TABLES
                       || fld(instr_i, READ_ADC_LSB, READ_ADC_W) >= adc_len_i) begin
            err = ERR_ADC_RANGE;
          end
        end
        OP_ACC: begin
          if (fld(instr_i, ACC_SRC_LSB, ACC_SRC_W) == 32'(SRC_CODE)
              && fld(instr_i, ACC_ADDR_LSB, ACC_ADDR_W) + lanes > COLS) begin
            err = ERR_VEC_RANGE;
          end else if (fld(instr_i, ACC_SRC_LSB, ACC_SRC_W) == 32'(SRC_DMEM)
                       && eff(instr_i, ACC_ADDR_LSB, ACC_ADDR_W, ACC_REL_LSB, ib_q) + lanes
                          > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end
        end
        OP_STA: begin
          if (eff(instr_i, STA_DST_LSB, STA_DST_W, STA_REL_LSB, ib_q) + lanes > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end
        end
        OP_ACT: begin
          if (eff(instr_i, ACT_DST_LSB, ACT_DST_W, ACT_RDST_LSB, ib_q) + lanes > DMEM_WORDS
              || eff(instr_i, ACT_TBL_LSB, ACT_TBL_W, ACT_RTBL_LSB, ib_q)
                 + lanes * (fld(instr_i, ACT_K_LSB, ACT_K_W) + 32'd1) > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end
        end
        OP_CMAC: begin
          if (fld(instr_i, CMAC_N_LSB, CMAC_N_W) == 32'd0
              || fld(instr_i, CMAC_N_LSB, CMAC_N_W) * COEF_BITS > COLS) begin
            err = ERR_VEC_RANGE;
          end else if (eff(instr_i, CMAC_SRC_LSB, CMAC_SRC_W, CMAC_RSRC_LSB, ib_q)
                       + fld(instr_i, CMAC_N_LSB, CMAC_N_W) > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end else if (fld(instr_i, CMAC_COEF_LSB, CMAC_COEF_W) + lanes > WMEM_WORDS
                       || fld(instr_i, CMAC_COEF_LSB, CMAC_COEF_W) + lanes > wmem_len_i) begin
            err = ERR_WMEM_RANGE;
          end
        end
        OP_VCOPY, OP_VMAX: begin
          // VCOPY and VMAX share their field layout.
          if (eff(instr_i, VCOPY_DST_LSB, VCOPY_DST_W, VCOPY_RDST_LSB, ib_q) + lanes
              > DMEM_WORDS
              || eff(instr_i, VCOPY_SRC_LSB, VCOPY_SRC_W, VCOPY_RSRC_LSB, ib_q) + lanes
              > DMEM_WORDS) begin
            err = ERR_DMEM_RANGE;
          end
        end
        default: err = ERR_NONE;
      endcase
    end
  end

  // --------------------------------------------------------------- sequence
  logic last;
  assign last = (step_q == cost - 32'd1);

  always_comb begin
    state_d = state_q;
    pc_d = pc_q;
    step_d = step_q;
    cycles_d = cycles_q;
    instret_d = instret_q;
    reads_d = reads_q;
    progs_d = progs_q;
    err_d = err_q;
    fault_pc_d = fault_pc_q;
    done_d = done_q;
    loop_on_d = loop_on_q;
    loop_start_d = loop_start_q;
    loop_end_d = loop_end_q;
    loop_left_d = loop_left_q;
    loop_stride_d = loop_stride_q;
    ib_d = ib_q;
    clear_o = 1'b0;
    stop_o = 1'b0;
    unique case (state_q)
      StIdle: begin
        if (start_i) begin
          state_d = StRun;
          pc_d = entry_i;
          step_d = 32'd0;
          cycles_d = 64'd0;
          instret_d = 32'd0;
          reads_d = 32'd0;
          progs_d = 32'd0;
          err_d = ERR_NONE;
          fault_pc_d = '1;
          done_d = 1'b0;
          loop_on_d = 1'b0;
          ib_d = 32'd0;
          clear_o = 1'b1;
        end
      end
      StRun: begin
        cycles_d = cycles_q + 64'd1;
        if (err != ERR_NONE) begin
          state_d = StIdle;
          err_d = err;
          fault_pc_d = pc_q;
          done_d = 1'b1;
          stop_o = 1'b1;
        end else begin
          if (step_q == 32'd0 && op == OP_READ) begin
            reads_d = reads_q + 32'd1;
          end
          if (step_q == 32'd0 && op == OP_PROG) begin
            progs_d = progs_q + 32'd1;
          end
          if (last) begin
            instret_d = instret_q + 32'd1;
            step_d = 32'd0;
            if (op == OP_HALT) begin
              state_d = StIdle;
              done_d = 1'b1;
              stop_o = 1'b1;
            end else if (op == OP_LOOP) begin
              loop_on_d = 1'b1;
              loop_start_d = pc_q + 32'd1;
              loop_end_d = pc_q + fld(instr_i, LOOP_LEN_LSB, LOOP_LEN_W);
              loop_left_d = fld(instr_i, LOOP_COUNT_LSB, LOOP_COUNT_W) - 32'd1;
              loop_stride_d = fld(instr_i, LOOP_STRIDE_LSB, LOOP_STRIDE_W);
              ib_d = 32'd0;
              pc_d = pc_q + 32'd1;
            end else if (loop_on_q && pc_q == loop_end_q && loop_left_q != 32'd0) begin
              // End of an iteration with more to go: back to the body, next image base.
              loop_left_d = loop_left_q - 32'd1;
              ib_d = ib_q + loop_stride_q;
              pc_d = loop_start_q;
            end else begin
              if (loop_on_q && pc_q == loop_end_q) begin
                loop_on_d = 1'b0;
                ib_d = 32'd0;
              end
              pc_d = pc_q + 32'd1;
            end
          end else begin
            step_d = step_q + 32'd1;
          end
        end
      end
      default: state_d = StIdle;
    endcase
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q <= StIdle;
      pc_q <= 32'd0;
      step_q <= 32'd0;
      cycles_q <= 64'd0;
      instret_q <= 32'd0;
      reads_q <= 32'd0;
      progs_q <= 32'd0;
      err_q <= ERR_NONE;
      fault_pc_q <= '1;
      done_q <= 1'b0;
      loop_on_q <= 1'b0;
      loop_start_q <= 32'd0;
      loop_end_q <= 32'd0;
      loop_left_q <= 32'd0;
      loop_stride_q <= 32'd0;
      ib_q <= 32'd0;
    end else begin
      state_q <= state_d;
      pc_q <= pc_d;
      step_q <= step_d;
      cycles_q <= cycles_d;
      instret_q <= instret_d;
      reads_q <= reads_d;
      progs_q <= progs_d;
      err_q <= err_d;
      fault_pc_q <= fault_pc_d;
      done_q <= done_d;
      loop_on_q <= loop_on_d;
      loop_start_q <= loop_start_d;
      loop_end_q <= loop_end_d;
      loop_left_q <= loop_left_d;
      loop_stride_q <= loop_stride_d;
      ib_q <= ib_d;
    end
  end

  assign prog_raddr_o = PAW'(pc_d);
  assign exec_o = running && (err == ERR_NONE);
  assign op_o = op;
  assign step_o = step_q;
  assign ib_o = ib_q;
  assign busy_o = running;
  assign done_o = done_q;
  assign err_o = err_q;
  assign fault_pc_o = fault_pc_q;
  assign pc_o = pc_q;
  assign cycles_o = cycles_q;
  assign instret_o = instret_q;
  assign reads_o = reads_q;
  assign progs_o = progs_q;

endmodule : cim_ctrl

`default_nettype wire

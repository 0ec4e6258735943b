// cim_adc_sva: the ADC converts only inside a READ and only groups holding
// lanes the READ asked for (the controller's READ cost and the ADC's groups
// agree), from a table in range.
// Bound into every cim_adc; verification only, built with --assert
// (Verilator) by cimgen.hw.rtl_sim.

`default_nettype none

// The assertions sample rst_ni synchronously (disable iff) while the RTL
// resets asynchronously; both are intended.
// verilator lint_off SYNCASYNCNET

module cim_adc_sva
  import cim_isa_pkg::*;
#(
  parameter int unsigned ADC_TABLES = 4,
  parameter int unsigned ADCS = 256
) (
  input wire logic        clk_i,
  input wire logic        rst_ni,
  input wire logic        exec_i,
  input wire opcode_e     op_i,
  input wire logic        convert,
  input wire logic [31:0] group,
  input wire logic [31:0] lanes,
  input wire logic [31:0] table_sel
);
  a_convert_in_read: assert property (@(posedge clk_i) disable iff (!rst_ni)
      convert |-> exec_i && op_i == OP_READ)
    else $error("cim_adc: conversion outside a READ");
  a_convert_group: assert property (@(posedge clk_i) disable iff (!rst_ni)
      convert |-> group * ADCS < lanes && table_sel < ADC_TABLES)
    else $error("cim_adc: converts group %0d of a %0d-lane READ (table %0d)", group, lanes,
                table_sel);
endmodule : cim_adc_sva

bind cim_adc cim_adc_sva #(.ADC_TABLES(ADC_TABLES), .ADCS(ADCS)) u_adc_sva (.*);

`default_nettype wire

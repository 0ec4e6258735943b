// cim_tlm_target.h: TLM-2.0 loosely-timed target around the Verilated cim_top.
//
// cim::TlmTarget<VTop> owns a Verilator --sc model of rtl/cim_top.sv (VTop is
// the Verilated class, e.g. Vcim_top) and turns every b_transport call into
// AXI4-Lite beats on the model's slave port, clocked cycle by cycle, so the
// register map, the load windows and every response are the RTL's own.
// docs/systemc.md describes the address map, the interrupt, the timing
// annotation and the behaviour of concurrent transactions; in short:
//
// * Byte addresses are the AXI4-Lite addresses of docs/rtl.md. A transaction
//   of any length is split into aligned 32-bit beats (partial words and byte
//   enables become write strobes); a burst keeps one beat in flight per AXI
//   channel (2 clock cycles per word instead of 3).
// * Responses: AXI OKAY -> TLM_OK_RESPONSE. DECERR, and SLVERR for an offset
//   outside the window's memory -> TLM_ADDRESS_ERROR_RESPONSE. SLVERR for a
//   read of a write-only window -> TLM_COMMAND_ERROR_RESPONSE. SLVERR because
//   the controller is busy (memory windows, CTRL, ENTRY, *_LEN) ->
//   TLM_GENERIC_ERROR_RESPONSE. Every beat is issued; the response is that of
//   the first failing beat.
// * Timing: while the controller is idle nothing in the RTL depends on time,
//   so reads and memory-window writes run in zero simulated time (the model is
//   clocked in delta cycles) and return delay += cycles * clock period (queued
//   behind earlier transactions of the port). CSR writes (they may start a run
//   or change the interrupt) and every access while a run is in progress first
//   wait out their annotated delay, then run on the timed clock, which ticks
//   only while a run or such an access needs it.
// * Concurrency: one AXI4-Lite port; a transaction that arrives while another
//   one is in flight waits for it (first come, first served).
// * No DMI (the memories live inside the RTL, behind the load path under
//   test) and no debug transport (an access needs clock cycles).

#ifndef CIM_TLM_TARGET_H_
#define CIM_TLM_TARGET_H_

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <tlm>
#include <tlm_utils/simple_target_socket.h>
#include <vector>

#include <systemc>

#include "cim_regmap.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cim_tlm_target.h maps TLM data bytes to AXI byte lanes for little-endian hosts only"
#endif

namespace cim {

// Counters of one target, for reports and benchmarks.
struct TargetStats {
  uint64_t transactions = 0;  // b_transport calls
  uint64_t beats = 0;         // AXI4-Lite beats issued
  uint64_t delta_cycles = 0;  // clock cycles of accesses run in zero simulated time
  uint64_t timed_cycles = 0;  // clock cycles of accesses on the timed clock
  uint64_t clock_cycles = 0;  // rising edges of the timed clock (runs included)
  uint64_t stalls = 0;        // transactions that waited for another one
  uint64_t errors = 0;        // transactions answered with an error response
};

inline const char* response_name(tlm::tlm_response_status s) {
  switch (s) {
    case tlm::TLM_OK_RESPONSE: return "TLM_OK_RESPONSE";
    case tlm::TLM_INCOMPLETE_RESPONSE: return "TLM_INCOMPLETE_RESPONSE";
    case tlm::TLM_GENERIC_ERROR_RESPONSE: return "TLM_GENERIC_ERROR_RESPONSE";
    case tlm::TLM_ADDRESS_ERROR_RESPONSE: return "TLM_ADDRESS_ERROR_RESPONSE";
    case tlm::TLM_COMMAND_ERROR_RESPONSE: return "TLM_COMMAND_ERROR_RESPONSE";
    case tlm::TLM_BURST_ERROR_RESPONSE: return "TLM_BURST_ERROR_RESPONSE";
    case tlm::TLM_BYTE_ENABLE_ERROR_RESPONSE: return "TLM_BYTE_ENABLE_ERROR_RESPONSE";
  }
  return "?";
}

template <class VTop>
class TlmTarget : public sc_core::sc_module {
 public:
  tlm_utils::simple_target_socket<TlmTarget> socket;
  // Done interrupt (level: IRQ_STATUS & IRQ_ENABLE) and the controller's busy.
  sc_core::sc_export<sc_core::sc_signal_in_if<bool>> irq;
  sc_core::sc_export<sc_core::sc_signal_in_if<bool>> busy;

  SC_HAS_PROCESS(TlmTarget);

  TlmTarget(sc_core::sc_module_name name, const sc_core::sc_time& clock_period)
      : sc_core::sc_module(name),
        socket("socket"),
        irq("irq"),
        busy("busy"),
        clk_("clk"),
        rst_n_("rst_n"),
        awaddr_("awaddr"),
        awprot_("awprot"),
        awvalid_("awvalid"),
        wdata_("wdata"),
        wstrb_("wstrb"),
        wvalid_("wvalid"),
        bready_("bready"),
        araddr_("araddr"),
        arprot_("arprot"),
        arvalid_("arvalid"),
        rready_("rready"),
        awready_("awready"),
        wready_("wready"),
        bvalid_("bvalid"),
        arready_("arready"),
        rvalid_("rvalid"),
        bresp_("bresp"),
        rresp_("rresp"),
        rdata_("rdata"),
        irq_("irq_o"),
        busy_("busy_o"),
        rtl_("rtl"),
        period_(clock_period),
        half_(clock_period / 2) {
    if (clock_period <= sc_core::SC_ZERO_TIME || half_ <= sc_core::SC_ZERO_TIME) {
      SC_REPORT_FATAL("cim/TlmTarget", "clock period must be at least two time resolution units");
    }
    rtl_.clk_i(clk_);
    rtl_.rst_ni(rst_n_);
    rtl_.s_axil_awaddr_i(awaddr_);
    rtl_.s_axil_awprot_i(awprot_);
    rtl_.s_axil_awvalid_i(awvalid_);
    rtl_.s_axil_awready_o(awready_);
    rtl_.s_axil_wdata_i(wdata_);
    rtl_.s_axil_wstrb_i(wstrb_);
    rtl_.s_axil_wvalid_i(wvalid_);
    rtl_.s_axil_wready_o(wready_);
    rtl_.s_axil_bresp_o(bresp_);
    rtl_.s_axil_bvalid_o(bvalid_);
    rtl_.s_axil_bready_i(bready_);
    rtl_.s_axil_araddr_i(araddr_);
    rtl_.s_axil_arprot_i(arprot_);
    rtl_.s_axil_arvalid_i(arvalid_);
    rtl_.s_axil_arready_o(arready_);
    rtl_.s_axil_rdata_o(rdata_);
    rtl_.s_axil_rresp_o(rresp_);
    rtl_.s_axil_rvalid_o(rvalid_);
    rtl_.s_axil_rready_i(rready_);
    rtl_.irq_o(irq_);
    rtl_.busy_o(busy_);
    irq.bind(irq_);
    busy.bind(busy_);
    socket.register_b_transport(this, &TlmTarget::b_transport);
    socket.register_get_direct_mem_ptr(this, &TlmTarget::get_direct_mem_ptr);
    socket.register_transport_dbg(this, &TlmTarget::transport_dbg);
    SC_THREAD(startup);
    SC_METHOD(clock_method);
    sensitive << wake_ev_;
    dont_initialize();
  }

  VTop& rtl() { return rtl_; }
  const sc_core::sc_time& clock_period() const { return period_; }
  const TargetStats& stats() const { return stats_; }
  // The build's parameters as the RTL reports them (P_* registers, read once
  // after the start-up reset), by name without the P_ prefix.
  const std::map<std::string, uint32_t>& params() const { return params_; }
  // Set after the start-up reset; transactions before it wait for it.
  bool ready() const { return ready_; }
  const sc_core::sc_event& ready_event() const { return ready_ev_; }

  // Assert rst_ni for `cycles` clock cycles (a platform reset line). Call from
  // an SC_THREAD. The CSRs return to their reset values; memories and the
  // crossbar cells keep their contents, as in the RTL.
  void reset(unsigned cycles = 4) {
    acquire();
    begin(needs_timed_clock());
    rst_n_.write(false);
    for (unsigned i = 0; i < cycles; ++i) cycle();
    rst_n_.write(true);
    cycle();
    cycle();
    end();
    release();
  }

 private:
  using BoolSig = sc_core::sc_signal<bool, sc_core::SC_MANY_WRITERS>;
  using WordSig = sc_core::sc_signal<uint32_t, sc_core::SC_MANY_WRITERS>;

  struct Beat {
    uint32_t addr;
    uint32_t data;
    uint32_t strb;
    uint32_t resp;
  };
  static constexpr uint32_t kNoResponse = 0x100;  // the slave never answered
  static constexpr unsigned kHangCycles = 1000;   // cycles without a handshake

  enum class Phase { kStopped, kRise, kFall };

  // ---------------------------------------------------------------- port lock

  void acquire() {
    const uint64_t ticket = next_ticket_++;
    if (ticket != serving_) {
      ++stats_.stalls;
      while (ticket != serving_) wait(port_ev_);
    }
    // Even SC_MANY_WRITERS signals refuse writes by two processes in one delta
    // cycle: the previous holder may have written the pins in this one.
    if (sc_core::sc_delta_count() == release_delta_ &&
        sc_core::sc_get_current_process_handle() != last_holder_) {
      wait(sc_core::SC_ZERO_TIME);
    }
  }

  void release() {
    release_delta_ = sc_core::sc_delta_count();
    last_holder_ = sc_core::sc_get_current_process_handle();
    ++serving_;
    port_ev_.notify(sc_core::SC_ZERO_TIME);
  }

  // ---------------------------------------------------------------- clocking

  // Timed clock: rising edges on the grid k * period while a run or a timed
  // access needs it; stopped (low) otherwise.
  void clock_method() {
    switch (phase_) {
      case Phase::kStopped: {
        clock_running_ = true;
        phase_ = Phase::kRise;
        const sc_dt::uint64 p = period_.value();
        const sc_dt::uint64 now = sc_core::sc_time_stamp().value();
        next_trigger(sc_core::sc_time::from_value((now / p + 1) * p - now));
        return;
      }
      case Phase::kRise:
        if (demand_ == 0 && !busy_.read()) {
          clock_running_ = false;
          phase_ = Phase::kStopped;
          next_trigger(wake_ev_);
          return;
        }
        clk_.write(true);
        ++stats_.clock_cycles;
        phase_ = Phase::kFall;
        next_trigger(half_);
        return;
      case Phase::kFall:
        clk_.write(false);
        phase_ = Phase::kRise;
        next_trigger(period_ - half_);
        return;
    }
  }

  // A run in progress needs the timed clock, and so does an access that
  // finds the clock high (its falling edge is still to come). An idle clock
  // that is low but not yet stopped will stop at its next rising-edge time:
  // delta-cycle clocking may take over in between.
  bool needs_timed_clock() const { return busy_.read() || clk_.read(); }

  void begin(bool timed) {
    timed_ = timed;
    cycles_ = 0;
    if (!timed_) return;
    ++demand_;
    if (!clock_running_) wake_ev_.notify(sc_core::SC_ZERO_TIME);
    if (clk_.read()) wait(clk_.negedge_event());  // act between a falling and a rising edge
  }

  void end() {
    if (timed_) --demand_;
  }

  // One clock cycle: inputs written before it are sampled at its rising edge;
  // afterwards the outputs show that edge's results.
  void cycle() {
    if (timed_) {
      wait(clk_.negedge_event());
      ++stats_.timed_cycles;
    } else {
      clk_.write(true);
      wait(sc_core::SC_ZERO_TIME);  // the model evaluates the rising edge
      clk_.write(false);
      wait(sc_core::SC_ZERO_TIME);  // its outputs are visible
      ++stats_.delta_cycles;
    }
    ++cycles_;
  }

  // ---------------------------------------------------------------- AXI4-Lite

  // Writes with one beat in flight per channel: AW and W advance as the slave
  // accepts them, B responses return in order.
  void write_beats(std::vector<Beat>& beats) {
    const size_t n = beats.size();
    size_t aw = 0, w = 0, b = 0;
    unsigned idle = 0;
    bready_.write(true);
    while (b < n) {
      awvalid_.write(aw < n);
      if (aw < n) awaddr_.write(beats[aw].addr);
      wvalid_.write(w < n);
      if (w < n) {
        wdata_.write(beats[w].data);
        wstrb_.write(beats[w].strb);
      }
      const bool aw_hs = aw < n && awready_.read();
      const bool w_hs = w < n && wready_.read();
      const bool b_hs = bvalid_.read();
      const uint32_t resp = bresp_.read();
      cycle();
      aw += aw_hs;
      w += w_hs;
      if (b_hs) beats[b++].resp = resp;
      idle = (aw_hs || w_hs || b_hs) ? 0 : idle + 1;
      if (idle > kHangCycles) {
        for (; b < n; ++b) beats[b].resp = kNoResponse;
        SC_REPORT_ERROR("cim/TlmTarget", "AXI4-Lite write: the slave stopped answering");
      }
    }
    awvalid_.write(false);
    wvalid_.write(false);
    bready_.write(false);
  }

  void read_beats(std::vector<Beat>& beats) {
    const size_t n = beats.size();
    size_t ar = 0, r = 0;
    unsigned idle = 0;
    rready_.write(true);
    while (r < n) {
      arvalid_.write(ar < n);
      if (ar < n) araddr_.write(beats[ar].addr);
      const bool ar_hs = ar < n && arready_.read();
      const bool r_hs = rvalid_.read();
      const uint32_t data = rdata_.read();
      const uint32_t resp = rresp_.read();
      cycle();
      ar += ar_hs;
      if (r_hs) {
        beats[r].data = data;
        beats[r++].resp = resp;
      }
      idle = (ar_hs || r_hs) ? 0 : idle + 1;
      if (idle > kHangCycles) {
        for (; r < n; ++r) beats[r].resp = kNoResponse;
        SC_REPORT_ERROR("cim/TlmTarget", "AXI4-Lite read: the slave stopped answering");
      }
    }
    arvalid_.write(false);
    rready_.write(false);
  }

  // ---------------------------------------------------------------- decoding

  static uint32_t window_base(uint32_t addr) {
    return addr & ~((uint32_t{1} << regmap::WIN_SHIFT) - 1);
  }

  uint32_t param(const char* name) const {
    auto it = params_.find(name);
    return it == params_.end() ? 0 : it->second;
  }

  // Is the word at addr inside its window's memory (mirrors the RTL's range check)?
  bool decoded(uint32_t addr) const {
    const uint32_t base = window_base(addr);
    const uint64_t w = (addr - base) >> 2;
    if (base == regmap::WIN_CSR) return true;
    if (base == regmap::WIN_PROG) return w < 2ull * param("PROG_WORDS");
    if (base == regmap::WIN_DMEM) return w < param("DMEM_WORDS");
    const uint64_t rows2 = 2ull * param("ROWS");
    if (base == regmap::WIN_WMEM) {
      const uint64_t s = param("WMEM_STRIDE");
      return s && w / s < param("WMEM_WORDS") && w % s < (param("COLS") + 31) / 32;
    }
    if (base == regmap::WIN_ADC_THR) {
      const uint64_t s = param("THR_STRIDE");
      return s && w / s < param("ADC_TABLES") && w % s < rows2;
    }
    if (base == regmap::WIN_ADC_REC) {
      const uint64_t s = param("REC_STRIDE");
      return s && w / s < param("ADC_TABLES") && w % s < rows2 + 1;
    }
    return false;
  }

  static bool readable(uint32_t addr) {
    const uint32_t base = window_base(addr);
    return base == regmap::WIN_CSR || base == regmap::WIN_DMEM;
  }

  tlm::tlm_response_status classify(const Beat& b, bool is_read) const {
    switch (b.resp) {
      case 0: return tlm::TLM_OK_RESPONSE;
      case 3: return tlm::TLM_ADDRESS_ERROR_RESPONSE;  // DECERR: no such window
      case 2:  // SLVERR: out of range, write-only, or the controller is busy
        if (!decoded(b.addr)) return tlm::TLM_ADDRESS_ERROR_RESPONSE;
        if (is_read && !readable(b.addr)) return tlm::TLM_COMMAND_ERROR_RESPONSE;
        return tlm::TLM_GENERIC_ERROR_RESPONSE;
      default: return tlm::TLM_GENERIC_ERROR_RESPONSE;
    }
  }

  // ---------------------------------------------------------------- TLM

  void b_transport(tlm::tlm_generic_payload& t, sc_core::sc_time& delay) {
    while (!ready_) wait(ready_ev_);
    ++stats_.transactions;
    t.set_dmi_allowed(false);
    const tlm::tlm_command cmd = t.get_command();
    if (cmd == tlm::TLM_IGNORE_COMMAND) {
      t.set_response_status(tlm::TLM_OK_RESPONSE);
      return;
    }
    const uint64_t addr = t.get_address();
    const unsigned len = t.get_data_length();
    unsigned char* data = t.get_data_ptr();
    const unsigned char* be = t.get_byte_enable_ptr();
    const unsigned be_len = t.get_byte_enable_length();
    if (len == 0 || t.get_streaming_width() < len) {
      return fail(t, tlm::TLM_BURST_ERROR_RESPONSE);  // no streaming to one address
    }
    if (be != nullptr && be_len == 0) return fail(t, tlm::TLM_BYTE_ENABLE_ERROR_RESPONSE);
    if (addr + len > (uint64_t{1} << 32)) return fail(t, tlm::TLM_ADDRESS_ERROR_RESPONSE);
    const bool is_read = cmd == tlm::TLM_READ_COMMAND;

    // Aligned 32-bit beats; bytes outside [addr, addr + len) or disabled by
    // the byte enables are not strobed (reads leave them untouched).
    std::vector<Beat> beats;
    bool csr_write = false;
    const uint64_t first = addr & ~uint64_t{3};
    for (uint64_t word = first; word < addr + len; word += 4) {
      uint32_t strb = 0, value = 0;
      for (unsigned k = 0; k < 4; ++k) {
        const uint64_t a = word + k;
        if (a < addr || a >= addr + len) continue;
        const uint64_t i = a - addr;
        if (be != nullptr && be[i % be_len] != TLM_BYTE_ENABLED) continue;
        strb |= 1u << k;
        if (!is_read) value |= uint32_t{data[i]} << (8 * k);
      }
      if (strb == 0) continue;
      beats.push_back(Beat{static_cast<uint32_t>(word), value, strb, kNoResponse});
      csr_write |= !is_read && window_base(static_cast<uint32_t>(word)) == regmap::WIN_CSR;
    }
    if (beats.empty()) {
      t.set_response_status(tlm::TLM_OK_RESPONSE);
      return;
    }

    acquire();
    const sc_core::sc_time now = sc_core::sc_time_stamp();
    sc_core::sc_time start = now + delay;
    if (port_free_ > start) start = port_free_;
    const bool timed = needs_timed_clock() || csr_write;
    if (timed && start > now) wait(start - now);  // synchronise with the initiator
    begin(timed);
    if (is_read) {
      read_beats(beats);
    } else {
      write_beats(beats);
    }
    end();
    stats_.beats += beats.size();
    if (timed) {
      port_free_ = sc_core::sc_time_stamp();
      delay = sc_core::SC_ZERO_TIME;
    } else {
      port_free_ = start + static_cast<double>(cycles_) * period_;
      delay = port_free_ - now;
    }
    release();

    tlm::tlm_response_status status = tlm::TLM_OK_RESPONSE;
    size_t k = 0;
    for (uint64_t word = first; word < addr + len && k < beats.size(); word += 4) {
      if (beats[k].addr != word) continue;  // a word without enabled bytes
      const Beat& b = beats[k++];
      if (status == tlm::TLM_OK_RESPONSE) status = classify(b, is_read);
      if (!is_read) continue;
      for (unsigned j = 0; j < 4; ++j) {
        const uint64_t a = word + j;
        if ((b.strb >> j & 1u) != 0) data[a - addr] = static_cast<unsigned char>(b.data >> (8 * j));
      }
    }
    if (status != tlm::TLM_OK_RESPONSE) ++stats_.errors;
    t.set_response_status(status);
  }

  void fail(tlm::tlm_generic_payload& t, tlm::tlm_response_status s) {
    ++stats_.errors;
    t.set_response_status(s);
  }

  bool get_direct_mem_ptr(tlm::tlm_generic_payload&, tlm::tlm_dmi& dmi) {
    dmi.allow_none();
    dmi.set_start_address(0);
    dmi.set_end_address(0xFFFFFFFFull);
    return false;
  }

  unsigned transport_dbg(tlm::tlm_generic_payload&) { return 0; }

  // Reset, then read the ID and the parameter registers (in zero time at 0 s).
  void startup() {
    acquire();
    begin(false);
    rst_n_.write(false);
    for (int i = 0; i < 4; ++i) cycle();
    rst_n_.write(true);
    cycle();
    cycle();
    std::vector<Beat> beats;
    beats.push_back(Beat{regmap::WIN_CSR + regmap::CSR_ID, 0, 0xF, kNoResponse});
    for (const auto& p : regmap::PARAM_REGS) {
      beats.push_back(Beat{regmap::WIN_CSR + p.offset, 0, 0xF, kNoResponse});
    }
    read_beats(beats);
    end();
    release();
    if (beats[0].data != regmap::CIM_ID) {
      std::ostringstream msg;
      msg << "the model's ID register reads 0x" << std::hex << beats[0].data
          << ", not the cim_top ID 0x" << regmap::CIM_ID;
      SC_REPORT_FATAL("cim/TlmTarget", msg.str().c_str());
    }
    size_t i = 1;
    for (const auto& p : regmap::PARAM_REGS) params_[p.name] = beats[i++].data;
    stats_ = TargetStats{};
    ready_ = true;
    ready_ev_.notify(sc_core::SC_ZERO_TIME);
  }

  // Model pins (the host side drives the inputs; several initiator threads
  // take turns, hence SC_MANY_WRITERS).
  BoolSig clk_, rst_n_;
  WordSig awaddr_, awprot_;
  BoolSig awvalid_;
  WordSig wdata_, wstrb_;
  BoolSig wvalid_, bready_;
  WordSig araddr_, arprot_;
  BoolSig arvalid_, rready_;
  sc_core::sc_signal<bool> awready_, wready_, bvalid_, arready_, rvalid_;
  sc_core::sc_signal<uint32_t> bresp_, rresp_, rdata_;
  sc_core::sc_signal<bool> irq_, busy_;
  VTop rtl_;

  const sc_core::sc_time period_, half_;
  sc_core::sc_event wake_ev_, port_ev_, ready_ev_;
  Phase phase_ = Phase::kStopped;
  bool clock_running_ = false;
  unsigned demand_ = 0;
  bool timed_ = false;
  uint64_t cycles_ = 0;
  uint64_t next_ticket_ = 0, serving_ = 0;
  sc_dt::uint64 release_delta_ = ~sc_dt::uint64{0};
  sc_core::sc_process_handle last_holder_;
  sc_core::sc_time port_free_ = sc_core::SC_ZERO_TIME;
  bool ready_ = false;
  std::map<std::string, uint32_t> params_;
  TargetStats stats_;
};

}  // namespace cim

#endif  // CIM_TLM_TARGET_H_

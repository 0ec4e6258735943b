// cim_sc_main.cpp: example virtual platform: a firmware-like TLM-2.0 initiator
// that replays one DUT group of a tape-out vector set (docs/vectors.md)
// through the socket of cim::TlmTarget and checks every expectation.
//
// It is the host sequence of docs/rtl.md, as the Verilog-2001 replay
// testbench (cimgen/replay_tb.py) does it over AXI4-Lite, done through TLM:
// per vector, write the program, weight rows, DMEM image and ADC tables
// (bursts), PROG_LEN, WMEM_LEN, ADC_LEN and IRQ_ENABLE; per run, write the
// input words, clear IRQ_STATUS, write ENTRY, start, wait for the interrupt
// (timeout: factor * expected cycles + extra, from the manifest), then read
// the checked registers and every expected output word. Time is loosely
// timed: a tlm_quantumkeeper carries the initiator's local time.
//
//   cim_sc_main SET_DIR [--dut gN] [--clock-ns 10] [--quantum-ns 10000]
//                 [--max-burst WORDS] [--dump FILE] [--stats FILE]
//
// Output: one PASS/FAIL line per vector, then "SYSTEMC SUMMARY", "SYSTEMC
// STATS" and "SYSTEMC RESULT: PASSED|FAILED". Exit 0 when everything matched,
// 1 on any mismatch, TLM error response or timeout, 2 on bad input (missing
// or malformed files, a model built for other parameters).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/tlm_quantumkeeper.h>
#include <vector>

#include <systemc>

#include "Vcim_top.h"
#include "cim_model_params.h"
#include "cim_regmap.h"
#include "cim_tlm_target.h"
#include "cim_vector_set.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string hex32(uint64_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08llx", static_cast<unsigned long long>(v & 0xFFFFFFFFu));
  return buf;
}

struct Options {
  std::string set_dir;
  std::string dut;
  double clock_ns = 10.0;
  double quantum_ns = 10000.0;
  unsigned max_burst = 0;  // words per transaction, 0 = a whole range
  std::string dump;
  std::string stats;
};

class Firmware : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<Firmware> socket;
  sc_core::sc_in<bool> irq;

  SC_HAS_PROCESS(Firmware);

  Firmware(sc_core::sc_module_name name, const Options& opt, const cim::VectorSet& set,
           const cim::DutGroup& dut, std::function<void()> reset_device,
           std::function<std::string()> target_stats)
      : sc_core::sc_module(name),
        socket("socket"),
        irq("irq"),
        opt_(opt),
        set_(set),
        dut_(dut),
        reset_device_(std::move(reset_device)),
        target_stats_(std::move(target_stats)),
        period_(opt.clock_ns, sc_core::SC_NS) {
    tlm_utils::tlm_quantumkeeper::set_global_quantum(
        sc_core::sc_time(opt.quantum_ns, sc_core::SC_NS));
    qk_.reset();
    SC_THREAD(main_thread);
  }

  int exit_code() const { return exit_code_; }

 private:
  // ---------------------------------------------------------------- TLM access

  tlm::tlm_response_status transport(tlm::tlm_command cmd, uint32_t addr, unsigned char* bytes,
                                     unsigned len) {
    tlm::tlm_generic_payload& t = payload_;
    t.set_command(cmd);
    t.set_address(addr);
    t.set_data_ptr(bytes);
    t.set_data_length(len);
    t.set_streaming_width(len);
    t.set_byte_enable_ptr(nullptr);
    t.set_byte_enable_length(0);
    t.set_dmi_allowed(false);
    t.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
    sc_core::sc_time delay = qk_.get_local_time();
    socket->b_transport(t, delay);
    qk_.set(delay);
    if (qk_.need_sync()) qk_.sync();
    ++transactions_;
    return t.get_response_status();
  }

  // Words to consecutive addresses, in bursts of at most --max-burst words.
  bool write_words(uint32_t addr, const uint32_t* words, size_t n) {
    return move_words(tlm::TLM_WRITE_COMMAND, addr, const_cast<uint32_t*>(words), n);
  }
  bool read_words(uint32_t addr, uint32_t* words, size_t n) {
    return move_words(tlm::TLM_READ_COMMAND, addr, words, n);
  }
  bool move_words(tlm::tlm_command cmd, uint32_t addr, uint32_t* words, size_t n) {
    const size_t step = opt_.max_burst ? opt_.max_burst : n;
    for (size_t i = 0; i < n; i += step) {
      const size_t k = std::min(step, n - i);
      const uint32_t a = addr + static_cast<uint32_t>(4 * i);
      // The TLM data array is in host byte order, little-endian here (the
      // target checks it), so a uint32_t array is its own byte image.
      auto s = transport(cmd, a, reinterpret_cast<unsigned char*>(words + i),
                         static_cast<unsigned>(4 * k));
      if (s != tlm::TLM_OK_RESPONSE) {
        note(where() + " TLM response " + cim::response_name(s) + " at address " + hex32(a) +
             " (" + (cmd == tlm::TLM_READ_COMMAND ? "read" : "write") + " of " +
             std::to_string(4 * k) + " byte(s))");
        return false;
      }
    }
    return true;
  }
  bool write32(uint32_t addr, uint32_t value) { return write_words(addr, &value, 1); }
  bool read32(uint32_t addr, uint32_t* value) { return read_words(addr, value, 1); }

  // ---------------------------------------------------------------- verdicts

  std::string where() const {
    return run_ < 0 ? std::string("load") : "run " + std::to_string(run_);
  }

  void note(const std::string& msg) {
    if (bad_++ == 0) first_ = msg;
  }

  void dump(const std::string& vec, const char* kind, const std::string& key, uint32_t v) {
    if (dump_.is_open()) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%08x", v);
      dump_ << vec << ' ' << run_ << ' ' << kind << ' ' << key << ' ' << buf << '\n';
    }
  }

  // ---------------------------------------------------------------- the job

  void check_model() {
    uint32_t id = 0;
    if (!read32(cim::regmap::WIN_CSR + cim::regmap::CSR_ID, &id) || id != cim::regmap::CIM_ID) {
      throw cim::BadInput("the model's ID register reads " + hex32(id) + ", not cim_top's " +
                          hex32(cim::regmap::CIM_ID));
    }
    for (const auto& p : cim::regmap::PARAM_REGS) {
      bool known = false;
      int64_t want = 0;
      for (const auto* list : {&dut_.params, &dut_.derived}) {
        for (const auto& kv : *list) {
          if (kv.first == p.name) {
            known = true;
            want = kv.second;
          }
        }
      }
      uint32_t got = 0;
      read32(cim::regmap::WIN_CSR + p.offset, &got);
      if (known && static_cast<int64_t>(got) != want) {
        throw cim::BadInput("this model was built with " + std::string(p.name) + "=" +
                            std::to_string(got) + " but DUT group " + dut_.name + " has " +
                            std::to_string(want) + " (build the model for this group)");
      }
    }
  }

  void load(const cim::VectorSpec& v) {
    namespace rm = cim::regmap;
    const auto rows2 = static_cast<size_t>(2 * dut_.value("ROWS"));
    if (v.prog.count) {
      auto words = cim::read_hex_words(set_.path(v.prog.file), v.prog.count, 16);
      std::vector<uint32_t> halves(2 * v.prog.count);
      for (size_t i = 0; i < v.prog.count; ++i) {
        halves[2 * i] = static_cast<uint32_t>(words[i]);
        halves[2 * i + 1] = static_cast<uint32_t>(words[i] >> 32);
      }
      if (!write_words(rm::WIN_PROG, halves.data(), halves.size())) return;
    }
    if (v.wmem.count) {
      auto lines = cim::read_hex_lines(set_.path(v.wmem.file), v.wmem.count);
      const auto chunks = static_cast<size_t>(dut_.value("WMEM_CHUNKS"));
      const auto stride = static_cast<size_t>(dut_.value("WMEM_STRIDE"));
      // Rows are `stride` words apart; when no gap separates them, one burst.
      std::vector<uint32_t> buf;
      for (size_t r = 0; r < v.wmem.count; ++r) {
        for (unsigned j = 0; j < chunks; ++j) buf.push_back(cim::hex_chunk(lines[r], j));
        if (stride != chunks) {
          if (!write_words(rm::WIN_WMEM + static_cast<uint32_t>(4 * r * stride), buf.data(),
                           buf.size())) {
            return;
          }
          buf.clear();
        }
      }
      if (!buf.empty() && !write_words(rm::WIN_WMEM, buf.data(), buf.size())) return;
    }
    if (v.dmem.count) {
      auto words = cim::read_hex_words(set_.path(v.dmem.file), v.dmem.count, 8);
      std::vector<uint32_t> w(words.begin(), words.begin() + v.dmem.count);
      if (!write_words(rm::WIN_DMEM, w.data(), w.size())) return;
    }
    if (v.adc_thr.count) {
      const size_t tables = v.adc_thr.count;
      auto thr = cim::read_hex_words(set_.path(v.adc_thr.file), tables * rows2, 8);
      auto rec = cim::read_hex_words(set_.path(v.adc_rec.file), tables * (rows2 + 1), 8);
      const auto thr_stride = static_cast<uint32_t>(dut_.value("THR_STRIDE"));
      const auto rec_stride = static_cast<uint32_t>(dut_.value("REC_STRIDE"));
      std::vector<uint32_t> buf;
      for (size_t t = 0; t < tables; ++t) {
        buf.assign(thr.begin() + t * rows2, thr.begin() + (t + 1) * rows2);
        if (!write_words(rm::WIN_ADC_THR + 4 * static_cast<uint32_t>(t) * thr_stride, buf.data(),
                         buf.size())) {
          return;
        }
        buf.assign(rec.begin() + t * (rows2 + 1), rec.begin() + (t + 1) * (rows2 + 1));
        if (!write_words(rm::WIN_ADC_REC + 4 * static_cast<uint32_t>(t) * rec_stride, buf.data(),
                         buf.size())) {
          return;
        }
      }
    }
    write32(rm::WIN_CSR + rm::CSR_PROG_LEN, static_cast<uint32_t>(v.prog.count));
    write32(rm::WIN_CSR + rm::CSR_WMEM_LEN, static_cast<uint32_t>(v.wmem.count));
    write32(rm::WIN_CSR + rm::CSR_ADC_LEN, static_cast<uint32_t>(v.adc_thr.count));
    write32(rm::WIN_CSR + rm::CSR_IRQ_ENABLE, 1);
  }

  // Returns false when the vector must stop (timeout: the device was reset).
  bool run(const cim::VectorSpec& v, const cim::RunSpec& r) {
    namespace rm = cim::regmap;
    const auto t0 = Clock::now();
    auto regs = cim::read_hex_words(set_.path(r.registers_file), set_.registers.size(), 8);
    size_t off = 0;
    if (!r.inputs.empty()) {
      size_t total = 0;
      for (const auto& g : r.inputs) total += g.words;
      auto in = cim::read_hex_words(set_.path(r.inputs_file), total, 8);
      std::vector<uint32_t> w(in.begin(), in.begin() + total);
      for (const auto& g : r.inputs) {
        write_words(rm::WIN_DMEM + 4 * g.addr, w.data() + off, g.words);
        off += g.words;
      }
    }
    write32(rm::WIN_CSR + rm::CSR_IRQ_STATUS, 1);
    write32(rm::WIN_CSR + rm::CSR_ENTRY, r.entry);
    write32(rm::WIN_CSR + rm::CSR_CTRL, 1);
    qk_.sync();
    const sc_core::sc_time start = sc_core::sc_time_stamp();
    const double limit_cycles =
        static_cast<double>(set_.timeout_factor) * static_cast<double>(r.expected_cycles) +
        static_cast<double>(set_.timeout_extra);
    if (!irq.read()) wait(limit_cycles * period_, irq.posedge_event());
    if (!irq.read()) {
      const double waited = (sc_core::sc_time_stamp() - start) / period_;
      note(where() + " timeout: no interrupt after " +
           std::to_string(static_cast<uint64_t>(waited)) + " cycles, expected " +
           std::to_string(r.expected_cycles) + " cycles");
      reset_device_();
      return false;
    }
    uint64_t cycles = 0;
    for (size_t k = 0; k < set_.registers.size(); ++k) {
      const auto& reg = set_.registers[k];
      uint32_t got = 0;
      if (!read32(rm::WIN_CSR + reg.second, &got)) continue;
      ++words_;
      dump(v.name, "reg", reg.first, got);
      if (reg.first == "CYCLES_LO") cycles |= got;
      if (reg.first == "CYCLES_HI") cycles |= uint64_t{got} << 32;
      if (got != static_cast<uint32_t>(regs[k])) {
        note(where() + " register " + reg.first + " (CSR " + hex32(reg.second) + "): got " +
             hex32(got) + " expected " + hex32(regs[k]));
      }
    }
    if (!r.outputs.empty()) {
      size_t total = 0;
      for (const auto& g : r.outputs) total += g.words;
      auto want = cim::read_hex_words(set_.path(r.outputs_file), total, 8);
      std::vector<uint32_t> got(total);
      size_t base = 0;
      for (const auto& g : r.outputs) {
        const uint32_t addr = rm::WIN_DMEM + 4 * g.addr;
        if (read_words(addr, got.data() + base, g.words)) {
          for (size_t i = 0; i < g.words; ++i) {
            const size_t idx = base + i;
            ++words_;
            dump(v.name, "out", std::to_string(idx), got[idx]);
            if (got[idx] != static_cast<uint32_t>(want[idx])) {
              note(where() + " output word " + std::to_string(idx) + " (DMEM[" +
                   std::to_string(g.addr + i) + "], address " +
                   hex32(addr + 4 * static_cast<uint32_t>(i)) + "): got " + hex32(got[idx]) +
                   " expected " + hex32(want[idx]));
            }
          }
        }
        base += g.words;
      }
    }
    const double wall = seconds_since(t0);
    run_s_ += wall;
    ctrl_cycles_ += cycles;
    ++n_runs_;
    if (stats_.is_open()) {
      stats_ << v.name << ' ' << run_ << ' ' << r.entry << ' ' << cycles << ' '
             << static_cast<uint64_t>(wall * 1e6) << '\n';
    }
    return true;
  }

  void main_thread() {
    const auto t0 = Clock::now();
    size_t passed = 0, failed = 0;
    try {
      if (!opt_.dump.empty()) dump_.open(opt_.dump);
      if (!opt_.stats.empty()) stats_.open(opt_.stats);
      check_model();
      std::cout << "SYSTEMC START: " << dut_.vectors.size() << " vectors of DUT group " << dut_.name
                << " (" << dut_.label << "), clock " << opt_.clock_ns << " ns" << std::endl;
      for (const auto& v : dut_.vectors) {
        bad_ = 0;
        first_.clear();
        words_ = 0;
        run_ = -1;
        const auto tl = Clock::now();
        load(v);
        load_s_ += seconds_since(tl);
        int runs = 0;
        if (bad_ == 0) {
          for (size_t r = 0; r < v.runs.size(); ++r) {
            run_ = static_cast<int>(r);
            ++runs;
            if (!run(v, v.runs[r])) break;
          }
        }
        if (bad_ == 0) {
          ++passed;
          std::cout << "PASS " << v.name << ": " << runs << " run(s), " << words_
                    << " word(s) checked" << std::endl;
        } else {
          ++failed;
          std::cout << "FAIL " << v.name << ": " << first_ << " (" << bad_ << " mismatch(es))"
                    << std::endl;
        }
      }
    } catch (const cim::BadInput& e) {
      std::cerr << "cim_sc_main: error: " << e.what() << std::endl;
      exit_code_ = 2;
      sc_core::sc_stop();
      return;
    }
    qk_.sync();
    std::cout << "SYSTEMC SUMMARY: " << dut_.vectors.size() << " vectors, " << passed
              << " passed, " << failed << " failed" << std::endl;
    std::ostringstream st;
    st << "SYSTEMC STATS: runs=" << n_runs_ << " ctrl_cycles=" << ctrl_cycles_
       << " sim_ns=" << sc_core::sc_time_stamp().to_seconds() * 1e9 << " load_s=" << load_s_
       << " run_s=" << run_s_ << " thread_s=" << seconds_since(t0)
       << " transactions=" << transactions_ << " " << target_stats_();
    std::cout << st.str() << std::endl;
    std::cout << "SYSTEMC RESULT: " << (failed ? "FAILED" : "PASSED") << std::endl;
    exit_code_ = failed ? 1 : 0;
    sc_core::sc_stop();
  }

  const Options& opt_;
  const cim::VectorSet& set_;
  const cim::DutGroup& dut_;
  std::function<void()> reset_device_;
  std::function<std::string()> target_stats_;
  const sc_core::sc_time period_;
  tlm_utils::tlm_quantumkeeper qk_;
  tlm::tlm_generic_payload payload_;
  std::ofstream dump_, stats_;
  int run_ = -1;
  int bad_ = 0;
  std::string first_;
  uint64_t words_ = 0, transactions_ = 0, ctrl_cycles_ = 0;
  size_t n_runs_ = 0;
  double load_s_ = 0.0, run_s_ = 0.0;
  int exit_code_ = 1;
};

int usage(const char* msg) {
  std::cerr << "cim_sc_main: error: " << msg << "\n"
            << "usage: cim_sc_main SET_DIR [--dut NAME] [--clock-ns NS] [--quantum-ns NS] "
               "[--max-burst WORDS] [--dump FILE] [--stats FILE]"
            << std::endl;
  return 2;
}

bool parse_number(const char* text, double* out) {
  char* end = nullptr;
  *out = std::strtod(text, &end);
  return end != text && *end == '\0' && *out > 0;
}

}  // namespace

int sc_main(int argc, char** argv) {
  // Keep stdout to the verdict lines.
  sc_core::sc_report_handler::set_actions("/OSCI/SystemC", sc_core::SC_INFO,
                                          sc_core::SC_DO_NOTHING);
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    double num = 0;
    if (a == "--dut" && has_value) {
      opt.dut = argv[++i];
    } else if (a == "--clock-ns" && has_value) {
      if (!parse_number(argv[++i], &opt.clock_ns)) return usage("--clock-ns: a positive number");
    } else if (a == "--quantum-ns" && has_value) {
      if (!parse_number(argv[++i], &opt.quantum_ns)) {
        return usage("--quantum-ns: a positive number");
      }
    } else if (a == "--max-burst" && has_value) {
      if (!parse_number(argv[++i], &num)) return usage("--max-burst: a positive number of words");
      opt.max_burst = static_cast<unsigned>(num);
    } else if (a == "--dump" && has_value) {
      opt.dump = argv[++i];
    } else if (a == "--stats" && has_value) {
      opt.stats = argv[++i];
    } else if (!a.empty() && a[0] != '-' && opt.set_dir.empty()) {
      opt.set_dir = a;
    } else {
      return usage(("unexpected argument " + a).c_str());
    }
  }
  if (opt.set_dir.empty()) return usage("give the vector-set folder");
  cim::VectorSet set;
  try {
    set = cim::VectorSet::load(opt.set_dir);
  } catch (const cim::BadInput& e) {
    std::cerr << "cim_sc_main: error: " << e.what() << std::endl;
    return 2;
  }
  const cim::DutGroup* dut = nullptr;
  std::string names;
  for (const auto& g : set.duts) {
    names += (names.empty() ? "" : ", ") + g.name;
    if (g.name == opt.dut || (opt.dut.empty() && set.duts.size() == 1)) dut = &g;
  }
  if (dut == nullptr) {
    return usage(("--dut: choose one DUT group of the set (" + names + ")").c_str());
  }
  // The model's memories are sized by its parameters (the device map is read
  // into them at time 0): refuse another DUT group before elaboration.
  for (const auto& p : cim::model::PARAMS) {
    for (const auto& kv : dut->params) {
      if (kv.first == p.name && kv.second != p.value) {
        std::cerr << "cim_sc_main: error: this program's model was built with " << p.name << "="
                  << p.value << " but DUT group " << dut->name << " has " << kv.second
                  << " (build it for this group: cimgen systemc build)" << std::endl;
        return 2;
      }
    }
  }
  const std::string devmap = set.path(dut->devmap);
  if (!std::ifstream(devmap)) {
    std::cerr << "cim_sc_main: error: " << devmap << ": cannot open" << std::endl;
    return 2;
  }
  // cim_xbar reads its device map at time 0 from this plusarg.
  const std::string plusarg = "+CIM_DEVMAP=" + devmap;
  const char* vargv[] = {argv[0], plusarg.c_str()};
  Verilated::commandArgs(2, vargv);

  cim::TlmTarget<Vcim_top> target("cim", sc_core::sc_time(opt.clock_ns, sc_core::SC_NS));
  auto stats = [&target]() {
    const cim::TargetStats& s = target.stats();
    std::ostringstream o;
    o << "beats=" << s.beats << " delta_cycles=" << s.delta_cycles
      << " timed_cycles=" << s.timed_cycles << " clock_cycles=" << s.clock_cycles
      << " stalls=" << s.stalls << " tlm_errors=" << s.errors;
    return o.str();
  };
  Firmware fw("firmware", opt, set, *dut, [&target]() { target.reset(8); }, stats);
  fw.socket.bind(target.socket);
  fw.irq.bind(target.irq);
  sc_core::sc_start();
  target.rtl().final();
  return fw.exit_code();
}

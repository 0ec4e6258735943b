// cim_sc_test.cpp: behaviour tests of cim::TlmTarget (built and run by
// tests/test_systemc.py against a small cim_top parameter set).
//
//   cim_sc_test --prog FILE --cycles N [--clock-ns NS]
//
// FILE is a $readmemh program (the caller assembles it with golden_model.isa) whose
// run from pc 0 takes exactly N cycles; the expected cycle count comes from
// golden_model.isa.cost, not from the model. Each test prints "TEST <name>: PASS"
// or "TEST <name>: FAIL" after its failed checks; exit 0 when all pass.
//
// Expected AXI4-Lite cycle counts are derived by hand from cim_axil_regs.sv:
// a write beat is accepted at one rising edge, performed at the next and its
// response taken at the one after (3 cycles); a read beat is accepted at one
// edge and its data taken at the next (2 cycles); in a burst the next beat is
// accepted at the edge that takes the previous response, so n writes take
// 2n + 1 cycles and n reads 2n.

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <vector>

#include <systemc>

#include "Vcim_top.h"
#include "cim_regmap.h"
#include "cim_tlm_target.h"
#include "cim_vector_set.h"

namespace {

namespace rm = cim::regmap;
using sc_core::sc_time;
using sc_core::SC_ZERO_TIME;
using tlm::tlm_response_status;

struct Access {
  tlm_response_status status = tlm::TLM_INCOMPLETE_RESPONSE;
  sc_time delay;   // as returned by b_transport
  sc_time end;     // simulated time when b_transport returned
  uint64_t seq = 0;  // completion order
};

class Tester : public sc_core::sc_module {
 public:
  tlm_utils::simple_initiator_socket<Tester> socket;
  sc_core::sc_in<bool> irq;

  SC_HAS_PROCESS(Tester);

  Tester(sc_core::sc_module_name name, cim::TlmTarget<Vcim_top>& target,
         std::vector<uint64_t> prog, uint64_t cycles)
      : sc_core::sc_module(name),
        socket("socket"),
        irq("irq"),
        target_(target),
        prog_(std::move(prog)),
        cycles_(cycles),
        T_(target.clock_period()) {
    SC_THREAD(thread_a);
    SC_THREAD(thread_b);
  }

  int failures() const { return failed_tests_; }

 private:
  // ---------------------------------------------------------------- helpers

  Access access(tlm::tlm_command cmd, uint64_t addr, void* data, unsigned len,
                sc_time delay = SC_ZERO_TIME, unsigned char* be = nullptr, unsigned be_len = 0,
                unsigned streaming = 0) {
    tlm::tlm_generic_payload t;
    t.set_command(cmd);
    t.set_address(addr);
    t.set_data_ptr(static_cast<unsigned char*>(data));
    t.set_data_length(len);
    t.set_streaming_width(streaming ? streaming : len);
    t.set_byte_enable_ptr(be);
    t.set_byte_enable_length(be_len);
    t.set_response_status(tlm::TLM_INCOMPLETE_RESPONSE);
    socket->b_transport(t, delay);
    Access a;
    a.status = t.get_response_status();
    a.delay = delay;
    a.end = sc_core::sc_time_stamp();
    a.seq = ++completions_;
    if (a.end + a.delay > horizon_) horizon_ = a.end + a.delay;
    return a;
  }
  // Wait out the annotated time of every access so far (what an LT initiator
  // does at a quantum boundary): later delays then start from now.
  void sync() {
    const sc_time now = sc_core::sc_time_stamp();
    if (horizon_ > now) wait(horizon_ - now);
  }
  tlm_response_status wr(uint32_t addr, uint32_t v) {
    return access(tlm::TLM_WRITE_COMMAND, addr, &v, 4).status;
  }
  tlm_response_status rd(uint32_t addr, uint32_t* v) {
    return access(tlm::TLM_READ_COMMAND, addr, v, 4).status;
  }
  uint32_t rd_ok(uint32_t addr) {
    uint32_t v = 0xDEADBEEF;
    expect_status(rd(addr, &v), tlm::TLM_OK_RESPONSE, "read " + hex(addr));
    return v;
  }

  static std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%08llx", static_cast<unsigned long long>(v));
    return buf;
  }

  void check(bool ok, const std::string& what) {
    if (ok) return;
    ++failed_checks_;
    std::cout << "  CHECK FAILED in " << test_ << ": " << what << std::endl;
  }
  void expect_status(tlm_response_status got, tlm_response_status want, const std::string& what) {
    check(got == want, what + ": got " + cim::response_name(got) + ", expected " +
                           cim::response_name(want));
  }
  void expect_eq(uint64_t got, uint64_t want, const std::string& what) {
    check(got == want, what + ": got " + hex(got) + ", expected " + hex(want));
  }
  void expect_time(const sc_time& got, const sc_time& want, const std::string& what) {
    check(got == want, what + ": got " + got.to_string() + ", expected " + want.to_string());
  }

  void begin_test(const std::string& name) {
    test_ = name;
    failed_checks_ = 0;
  }
  void end_test() {
    std::cout << "TEST " << test_ << ": " << (failed_checks_ ? "FAIL" : "PASS") << std::endl;
    if (failed_checks_) ++failed_tests_;
  }

  // Run `job` in thread B (a second initiator) starting in the next delta cycle.
  void start_b(std::function<void()> job) {
    b_job_ = std::move(job);
    b_go_.notify(SC_ZERO_TIME);
  }
  void join_b() {
    while (b_job_) wait(b_done_);
  }
  void thread_b() {
    for (;;) {
      wait(b_go_);
      b_job_();
      b_job_ = nullptr;
      b_done_.notify(SC_ZERO_TIME);
    }
  }

  // ---------------------------------------------------------------- tests

  void test_bad_addresses() {
    begin_test("bad_address");
    const uint32_t dmem = rd_ok(rm::WIN_CSR + rm::CSR_P_DMEM_WORDS);
    const uint32_t prog = rd_ok(rm::WIN_CSR + rm::CSR_P_PROG_WORDS);
    uint32_t v = 0x12345678;
    uint32_t two[2] = {0xA1A1A1A1, 0xB2B2B2B2};
    expect_status(wr(0x60000000, v), tlm::TLM_ADDRESS_ERROR_RESPONSE, "write to window 6");
    expect_status(rd(0xF0000010, &v), tlm::TLM_ADDRESS_ERROR_RESPONSE, "read from window 15");
    expect_status(wr(rm::WIN_DMEM + 4 * dmem, v), tlm::TLM_ADDRESS_ERROR_RESPONSE,
                  "write past DMEM");
    expect_status(rd(rm::WIN_DMEM + 4 * dmem, &v), tlm::TLM_ADDRESS_ERROR_RESPONSE,
                  "read past DMEM");
    expect_status(wr(rm::WIN_PROG + 8 * prog, v), tlm::TLM_ADDRESS_ERROR_RESPONSE,
                  "write past the program memory");
    expect_status(rd(rm::WIN_PROG, &v), tlm::TLM_COMMAND_ERROR_RESPONSE,
                  "read of the write-only PROG window");
    expect_status(rd(rm::WIN_WMEM, &v), tlm::TLM_COMMAND_ERROR_RESPONSE,
                  "read of the write-only WMEM window");
    expect_status(access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM, two, 8, SC_ZERO_TIME, nullptr, 0,
                         4).status,
                  tlm::TLM_BURST_ERROR_RESPONSE, "streaming width 4 of an 8-byte write");
    expect_status(access(tlm::TLM_READ_COMMAND, 0xFFFFFFFCull, two, 8).status,
                  tlm::TLM_ADDRESS_ERROR_RESPONSE, "read across the top of the address space");
    // A burst across the end of DMEM: the beat inside is performed, the
    // response is the failing beat's.
    expect_status(access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM + 4 * (dmem - 1), two, 8).status,
                  tlm::TLM_ADDRESS_ERROR_RESPONSE, "burst across the end of DMEM");
    expect_eq(rd_ok(rm::WIN_DMEM + 4 * (dmem - 1)), 0xA1A1A1A1, "last DMEM word after it");
    tlm::tlm_generic_payload t;
    tlm::tlm_dmi dmi;
    t.set_address(rm::WIN_DMEM);
    t.set_command(tlm::TLM_READ_COMMAND);
    check(!socket->get_direct_mem_ptr(t, dmi), "DMI must be refused");
    t.set_data_ptr(reinterpret_cast<unsigned char*>(&v));
    t.set_data_length(4);
    check(socket->transport_dbg(t) == 0, "debug transport must move no bytes");
    // Still alive and unchanged.
    expect_status(wr(rm::WIN_DMEM + 12, 0xCAFEF00D), tlm::TLM_OK_RESPONSE, "DMEM write after");
    expect_eq(rd_ok(rm::WIN_DMEM + 12), 0xCAFEF00D, "DMEM read after");
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_ID), rm::CIM_ID, "ID after");
    end_test();
  }

  void test_annotation() {
    begin_test("lt_annotation");
    sync();
    sc_time local = SC_ZERO_TIME;
    const sc_time t0 = sc_core::sc_time_stamp();
    uint32_t w[4] = {1, 2, 3, 4};
    uint32_t r[4] = {0, 0, 0, 0};
    Access a = access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM + 16, w, 4, local);
    expect_status(a.status, tlm::TLM_OK_RESPONSE, "single write");
    expect_time(a.delay, 3 * T_, "single write: annotated delay");
    local = a.delay;
    a = access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM + 16, w, 16, local);
    expect_time(a.delay - local, 9 * T_, "4-word burst write (2n+1 cycles)");
    local = a.delay;
    a = access(tlm::TLM_READ_COMMAND, rm::WIN_CSR + rm::CSR_STATUS, r, 4, local);
    expect_time(a.delay - local, 2 * T_, "single read");
    local = a.delay;
    a = access(tlm::TLM_READ_COMMAND, rm::WIN_DMEM + 16, r, 16, local);
    expect_time(a.delay - local, 8 * T_, "4-word burst read (2n cycles)");
    for (int i = 0; i < 4; ++i) expect_eq(r[i], w[i], "burst read word " + std::to_string(i));
    expect_time(sc_core::sc_time_stamp(), t0, "idle accesses take no simulated time");
    end_test();
  }

  void test_byte_enables() {
    begin_test("byte_enables");
    const uint32_t a = rm::WIN_DMEM + 4 * 4;
    expect_status(wr(a, 0x11223344), tlm::TLM_OK_RESPONSE, "word write");
    unsigned char b = 0xAA;
    expect_status(access(tlm::TLM_WRITE_COMMAND, a + 1, &b, 1).status, tlm::TLM_OK_RESPONSE,
                  "byte write");
    expect_eq(rd_ok(a), 0x1122AA44, "after a byte write at +1");
    unsigned char bytes[4] = {0x01, 0x02, 0x03, 0x04};
    unsigned char be[2] = {TLM_BYTE_ENABLED, TLM_BYTE_DISABLED};
    expect_status(access(tlm::TLM_WRITE_COMMAND, a, bytes, 4, SC_ZERO_TIME, be, 2).status,
                  tlm::TLM_OK_RESPONSE, "write with a byte-enable pattern");
    expect_eq(rd_ok(a), 0x1103AA01, "bytes 0 and 2 enabled");
    unsigned char half[2] = {0, 0};
    expect_status(access(tlm::TLM_READ_COMMAND, a + 2, half, 2).status, tlm::TLM_OK_RESPONSE,
                  "2-byte read at +2");
    expect_eq(half[0] | half[1] << 8, 0x1103, "2-byte read data");
    unsigned char four[4] = {0xEE, 0xEE, 0xEE, 0xEE};
    unsigned char be1[4] = {TLM_BYTE_DISABLED, TLM_BYTE_ENABLED, TLM_BYTE_DISABLED,
                            TLM_BYTE_DISABLED};
    expect_status(access(tlm::TLM_READ_COMMAND, a, four, 4, SC_ZERO_TIME, be1, 4).status,
                  tlm::TLM_OK_RESPONSE, "read with byte enables");
    expect_eq(four[0] | four[1] << 8 | four[2] << 16 | uint32_t{four[3]} << 24, 0xEEEEAAEE,
              "only byte 1 read");
    end_test();
  }

  // Idle controller: a second initiator's transaction waits for the first
  // one, and its annotated delay includes the first one's cycles.
  void test_two_initiators_idle() {
    begin_test("two_initiators_idle");
    sync();
    std::vector<uint32_t> w(16);
    for (size_t i = 0; i < w.size(); ++i) w[i] = 0x100 + static_cast<uint32_t>(i);
    const uint64_t stalls0 = target_.stats().stalls;
    Access b;
    uint32_t status = 0xDEADBEEF;
    start_b([&] { b = access(tlm::TLM_READ_COMMAND, rm::WIN_CSR + rm::CSR_ID, &status, 4); });
    Access a = access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM + 64, w.data(), 64);
    join_b();
    expect_status(a.status, tlm::TLM_OK_RESPONSE, "initiator A: 16-word burst");
    expect_status(b.status, tlm::TLM_OK_RESPONSE, "initiator B: ID read");
    expect_eq(status, rm::CIM_ID, "initiator B: ID value");
    check(a.seq < b.seq, "B, issued while A was in flight, completes after A");
    expect_eq(target_.stats().stalls - stalls0, 1, "stalled transactions");
    expect_time(a.delay, 33 * T_, "A: 2*16+1 cycles");
    expect_time(b.delay, 35 * T_, "B: queued behind A, then 2 cycles");
    std::vector<uint32_t> r(16);
    expect_status(access(tlm::TLM_READ_COMMAND, rm::WIN_DMEM + 64, r.data(), 64).status,
                  tlm::TLM_OK_RESPONSE, "read back");
    check(r == w, "A's burst fully written");
    end_test();
  }

  void test_busy() {
    begin_test("controller_busy");
    sync();
    std::vector<uint32_t> halves;
    for (uint64_t word : prog_) {
      halves.push_back(static_cast<uint32_t>(word));
      halves.push_back(static_cast<uint32_t>(word >> 32));
    }
    expect_status(access(tlm::TLM_WRITE_COMMAND, rm::WIN_PROG, halves.data(),
                         static_cast<unsigned>(4 * halves.size())).status,
                  tlm::TLM_OK_RESPONSE, "program load");
    expect_status(wr(rm::WIN_DMEM, 0x5A5A5A5A), tlm::TLM_OK_RESPONSE, "DMEM[0] before the run");
    expect_status(wr(rm::WIN_CSR + rm::CSR_PROG_LEN, static_cast<uint32_t>(prog_.size())),
                  tlm::TLM_OK_RESPONSE, "PROG_LEN");
    expect_status(wr(rm::WIN_CSR + rm::CSR_IRQ_ENABLE, 1), tlm::TLM_OK_RESPONSE, "IRQ_ENABLE");
    expect_status(wr(rm::WIN_CSR + rm::CSR_IRQ_STATUS, 1), tlm::TLM_OK_RESPONSE, "IRQ_STATUS");
    expect_status(wr(rm::WIN_CSR + rm::CSR_ENTRY, 0), tlm::TLM_OK_RESPONSE, "ENTRY");
    check(!irq.read(), "no interrupt before the start");
    Access start = access(tlm::TLM_WRITE_COMMAND, rm::WIN_CSR + rm::CSR_CTRL, &one_, 4);
    expect_status(start.status, tlm::TLM_OK_RESPONSE, "start");
    expect_time(start.delay, SC_ZERO_TIME, "a CSR write returns synchronised");

    // Two initiators in flight while the controller runs: A reads STATUS, B
    // writes DMEM at the same time; B waits for A on the (timed) port.
    uint32_t status = 0;
    uint32_t junk = 0x0BADF00D;
    Access b;
    start_b([&] { b = access(tlm::TLM_WRITE_COMMAND, rm::WIN_DMEM, &junk, 4); });
    Access a = access(tlm::TLM_READ_COMMAND, rm::WIN_CSR + rm::CSR_STATUS, &status, 4);
    join_b();
    expect_status(a.status, tlm::TLM_OK_RESPONSE, "A: STATUS read while busy");
    expect_eq(status & 3u, 1, "A: STATUS = BUSY, not DONE");
    expect_status(b.status, tlm::TLM_GENERIC_ERROR_RESPONSE, "B: DMEM write while busy");
    check(a.seq < b.seq, "B completes after A");
    check(b.end >= a.end + 3 * T_, "B's 3-cycle write follows A's read on the clock: A " +
                                       a.end.to_string() + ", B " + b.end.to_string());
    check(a.end > start.end, "timed accesses take simulated time");

    uint32_t v = 0;
    expect_status(rd(rm::WIN_DMEM, &v), tlm::TLM_GENERIC_ERROR_RESPONSE, "DMEM read while busy");
    expect_status(wr(rm::WIN_PROG, 0), tlm::TLM_GENERIC_ERROR_RESPONSE, "PROG write while busy");
    expect_status(wr(rm::WIN_CSR + rm::CSR_CTRL, 1), tlm::TLM_GENERIC_ERROR_RESPONSE,
                  "second start while busy");
    expect_status(wr(rm::WIN_CSR + rm::CSR_ENTRY, 7), tlm::TLM_GENERIC_ERROR_RESPONSE,
                  "ENTRY write while busy");
    expect_status(wr(0x70000000, 1), tlm::TLM_ADDRESS_ERROR_RESPONSE, "bad window while busy");
    expect_status(wr(rm::WIN_CSR + rm::CSR_IRQ_ENABLE, 1), tlm::TLM_OK_RESPONSE,
                  "IRQ_ENABLE write while busy");
    check(busy_now(), "the run outlasts these accesses (make the program longer)");

    if (!irq.read()) wait(static_cast<double>(10 * cycles_ + 100) * T_, irq.posedge_event());
    check(irq.read(), "interrupt after the run");
    const sc_time t_irq = sc_core::sc_time_stamp();
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_CYCLES_LO), cycles_, "CYCLES_LO (from golden_model.isa.cost)");
    // The start is performed at the rising edge before the one that takes
    // its write response, b_transport returns at the falling edge after that,
    // the controller counts CYCLES from the first edge and the interrupt
    // rises with the edge that ends the run: CYCLES - 1.5 periods.
    expect_time(t_irq - start.end, (static_cast<double>(cycles_) - 1.5) * T_,
                "interrupt time after the start returned");
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_STATUS), 2, "STATUS = DONE");
    expect_eq(rd_ok(rm::WIN_DMEM), 0x5A5A5A5A, "DMEM[0] unchanged by the refused write");
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_ENTRY), 0, "ENTRY unchanged by the refused write");
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_IRQ_STATUS), 1, "IRQ_STATUS");
    expect_status(wr(rm::WIN_CSR + rm::CSR_IRQ_STATUS, 1), tlm::TLM_OK_RESPONSE, "clear IRQ");
    check(!irq.read(), "interrupt cleared by the write");
    end_test();
  }

  bool busy_now() {
    return (rd_ok(rm::WIN_CSR + rm::CSR_STATUS) & 1u) != 0;
  }

  void test_reset() {
    begin_test("reset");
    target_.reset();
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_PROG_LEN), 0, "PROG_LEN after reset");
    expect_eq(rd_ok(rm::WIN_CSR + rm::CSR_IRQ_ENABLE), 0, "IRQ_ENABLE after reset");
    expect_eq(rd_ok(rm::WIN_DMEM), 0x5A5A5A5A, "DMEM keeps its contents");
    end_test();
  }

  void thread_a() {
    test_bad_addresses();
    test_annotation();
    test_byte_enables();
    test_two_initiators_idle();
    test_busy();
    test_reset();
    std::cout << "SYSTEMC TEST RESULT: " << (failed_tests_ ? "FAILED" : "PASSED") << std::endl;
    sc_core::sc_stop();
  }

  cim::TlmTarget<Vcim_top>& target_;
  std::vector<uint64_t> prog_;
  uint64_t cycles_;
  const sc_time T_;
  std::string test_;
  int failed_checks_ = 0;
  int failed_tests_ = 0;
  uint64_t completions_ = 0;
  sc_time horizon_ = SC_ZERO_TIME;
  uint32_t one_ = 1;
  std::function<void()> b_job_;
  sc_core::sc_event b_go_, b_done_;
};

}  // namespace

int sc_main(int argc, char** argv) {
  sc_core::sc_report_handler::set_actions("/OSCI/SystemC", sc_core::SC_INFO,
                                          sc_core::SC_DO_NOTHING);
  std::string prog_file;
  uint64_t cycles = 0;
  double clock_ns = 4.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--prog") {
      prog_file = argv[i + 1];
    } else if (a == "--cycles") {
      cycles = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (a == "--clock-ns") {
      clock_ns = std::strtod(argv[i + 1], nullptr);
    }
  }
  if (prog_file.empty() || cycles == 0 || !(clock_ns > 0)) {
    std::cerr << "usage: cim_sc_test --prog FILE --cycles N [--clock-ns NS]" << std::endl;
    return 2;
  }
  std::vector<uint64_t> prog;
  try {
    prog = cim::read_hex_words(prog_file, 1, 16);
  } catch (const cim::BadInput& e) {
    std::cerr << "cim_sc_test: error: " << e.what() << std::endl;
    return 2;
  }
  const char* vargv[] = {argv[0]};
  Verilated::commandArgs(1, vargv);
  cim::TlmTarget<Vcim_top> target("cim", sc_time(clock_ns, sc_core::SC_NS));
  Tester tester("tester", target, prog, cycles);
  tester.socket.bind(target.socket);
  tester.irq.bind(target.irq);
  sc_core::sc_start();
  target.rtl().final();
  return tester.failures() ? 1 : 0;
}

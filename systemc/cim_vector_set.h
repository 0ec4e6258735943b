// cim_vector_set.h: a tape-out vector set (docs/vectors.md) as C++ data.
//
// Everything the replay needs comes from manifest.json and the hex files it
// names: the DUT groups and their parameters and strides, every vector's
// memory images, every run's entry pc, input and output DMEM ranges, the
// checked registers with their CSR offsets, and the irq timeout rule.

#ifndef CIM_VECTOR_SET_H_
#define CIM_VECTOR_SET_H_

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cim_json.h"

namespace cim {

// A malformed or incomplete vector set (exit code 2 in the example).
struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Range {
  uint32_t addr;   // DMEM word address
  uint32_t words;
};

struct RunSpec {
  uint32_t entry = 0;
  std::string inputs_file;    // empty: no host input words
  std::vector<Range> inputs;  // where the input words go, consumed in order
  std::string outputs_file;   // empty: nothing read back
  std::vector<Range> outputs;
  std::string registers_file;
  uint64_t expected_cycles = 0;
};

struct Image {
  std::string file;  // empty when count == 0
  uint64_t count = 0;
};

struct VectorSpec {
  std::string name, kind;
  Image prog, wmem, dmem, adc_thr, adc_rec;
  std::vector<RunSpec> runs;
};

using NamedValues = std::vector<std::pair<std::string, int64_t>>;

struct DutGroup {
  std::string name, label, devmap;
  NamedValues params;   // cim_top parameters
  NamedValues derived;  // WMEM_STRIDE, THR_STRIDE, REC_STRIDE, WMEM_CHUNKS
  std::vector<VectorSpec> vectors;

  int64_t value(const std::string& key) const {
    for (const auto* list : {&params, &derived}) {
      for (const auto& kv : *list) {
        if (kv.first == key) return kv.second;
      }
    }
    throw BadInput("manifest.json: DUT group " + name + " has no parameter " + key);
  }
};

struct VectorSet {
  std::string dir;
  std::vector<std::pair<std::string, uint32_t>> registers;  // runK_regs.hex order
  int64_t timeout_factor = 2, timeout_extra = 1000;
  std::vector<DutGroup> duts;

  std::string path(const std::string& rel) const { return dir + "/" + rel; }

  static VectorSet load(const std::string& dir) {
    VectorSet set;
    set.dir = dir;
    const std::string mpath = set.path("manifest.json");
    std::ifstream f(mpath, std::ios::binary);
    if (!f) throw BadInput(mpath + ": cannot open (not a vector-set folder?)");
    std::stringstream buf;
    buf << f.rdbuf();
    try {
      const Json man = Json::parse(buf.str(), mpath);
      if (man["format"].str() != "cimgen-vectors") {
        throw BadInput(mpath + ": not a cimgen-vectors manifest");
      }
      for (const auto& kv : man["registers"].members()) {
        set.registers.emplace_back(kv.first, static_cast<uint32_t>(kv.second.integer()));
      }
      set.timeout_factor = man["timeout"]["factor"].integer();
      set.timeout_extra = man["timeout"]["extra_cycles"].integer();
      for (const Json& d : man["duts"].items()) {
        DutGroup g;
        g.name = d["name"].str();
        g.label = d["label"].str();
        g.devmap = d["devmap"].str();
        for (const auto& kv : d["params"].members()) {
          g.params.emplace_back(kv.first, kv.second.integer());
        }
        for (const auto& kv : d["derived"].members()) {
          g.derived.emplace_back(kv.first, kv.second.integer());
        }
        set.duts.push_back(std::move(g));
      }
      for (const Json& v : man["vectors"].items()) {
        VectorSpec spec;
        spec.name = v["name"].str();
        spec.kind = v["kind"].str();
        const Json& im = v["images"];
        spec.prog = image(im["program"]);
        spec.wmem = image(im["wmem"]);
        spec.dmem = image(im["dmem"]);
        spec.adc_thr = image(im["adc_thr"]);
        spec.adc_rec = image(im["adc_rec"]);
        for (const Json& r : v["runs"].items()) {
          RunSpec run;
          run.entry = static_cast<uint32_t>(r["entry"].integer());
          run.inputs_file = optional_str(r["inputs"]["file"]);
          run.inputs = ranges(r["inputs"]["ranges"]);
          run.outputs_file = optional_str(r["outputs"]["file"]);
          run.outputs = ranges(r["outputs"]["ranges"]);
          run.registers_file = r["registers_file"].str();
          run.expected_cycles = static_cast<uint64_t>(r["expected_cycles"].integer());
          spec.runs.push_back(std::move(run));
        }
        const std::string& dut = v["dut"].str();
        bool placed = false;
        for (auto& g : set.duts) {
          if (g.name == dut) {
            g.vectors.push_back(std::move(spec));
            placed = true;
            break;
          }
        }
        if (!placed) {
          throw BadInput(mpath + ": vector " + v["name"].str() + " names unknown DUT " + dut);
        }
      }
    } catch (const BadInput&) {
      throw;
    } catch (const std::exception& e) {
      throw BadInput(mpath + ": " + e.what());
    }
    return set;
  }

 private:
  static std::string optional_str(const Json& j) { return j.is_null() ? std::string() : j.str(); }
  static Image image(const Json& j) {
    Image im;
    im.file = optional_str(j["file"]);
    im.count = static_cast<uint64_t>(j["count"].integer());
    return im;
  }
  static std::vector<Range> ranges(const Json& j) {
    std::vector<Range> out;
    for (const Json& r : j.items()) {
      out.push_back(Range{static_cast<uint32_t>(r[0].integer()),
                          static_cast<uint32_t>(r[1].integer())});
    }
    return out;
  }
};

// The lines of a $readmemh file (one hex number per line, no address markers).
inline std::vector<std::string> read_hex_lines(const std::string& path, size_t at_least) {
  std::ifstream f(path);
  if (!f) throw BadInput(path + ": cannot open");
  std::vector<std::string> out;
  std::string tok;
  while (f >> tok) {
    for (char c : tok) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) {
        throw BadInput(path + ": line " + std::to_string(out.size() + 1) +
                       ": not hexadecimal: " + tok);
      }
    }
    out.push_back(tok);
  }
  if (out.size() < at_least) {
    throw BadInput(path + ": " + std::to_string(out.size()) + " line(s), expected at least " +
                   std::to_string(at_least));
  }
  return out;
}

// Numbers of at most `digits` hex digits each (8: 32-bit words, 16: 64-bit).
inline std::vector<uint64_t> read_hex_words(const std::string& path, size_t at_least,
                                            unsigned digits) {
  std::vector<uint64_t> out;
  size_t line = 0;
  for (const std::string& tok : read_hex_lines(path, at_least)) {
    ++line;
    if (tok.size() > digits) {
      throw BadInput(path + ": line " + std::to_string(line) + ": more than " +
                     std::to_string(digits) + " hex digits");
    }
    out.push_back(std::stoull(tok, nullptr, 16));
  }
  return out;
}

// Bits [32j+31 : 32j] of a wide hex number (a weight row: bit c = column c).
inline uint32_t hex_chunk(const std::string& tok, unsigned j) {
  const size_t hi = 8 * static_cast<size_t>(j);  // digits from the right end
  if (hi >= tok.size()) return 0;
  const size_t n = std::min<size_t>(8, tok.size() - hi);
  return static_cast<uint32_t>(std::stoul(tok.substr(tok.size() - hi - n, n), nullptr, 16));
}

}  // namespace cim

#endif  // CIM_VECTOR_SET_H_

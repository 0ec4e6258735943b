// Times CIM-Explorer's crossbar emulator (analog-cim-sim, nq::Crossbar) the way
// scripts/bench_mvm.py times the golden machine: one weight matrix written once,
// then one input vector per mvm call, for a given wall-clock budget.
//
// Built by scripts/bench_mvm.py against a checkout of analog-cim-sim (its
// sources are compiled in, nothing of theirs is kept here).
//
//   bench_mvm_driver CONFIG.json M N SECONDS SEED
//
// Prints one line: "calls <n> seconds <s> calls_per_s <r> checksum <c>".
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "helper/config.h"
#include "oneapi/tbb/global_control.h"
#include "xbar/crossbar.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s CONFIG.json M N SECONDS SEED\n", argv[0]);
        return 2;
    }
    const int32_t m = std::atoi(argv[2]);
    const int32_t n = std::atoi(argv[3]);
    const double budget = std::atof(argv[4]);
    const unsigned seed = static_cast<unsigned>(std::atoi(argv[5]));
    // One thread, as the emulator's Python interface sets by default.
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    if (!CFG.load_cfg(argv[1])) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 2;
    }
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int32_t> bit(0, 1);
    std::vector<int32_t> mat(static_cast<size_t>(m) * n);
    for (auto &w : mat) {
        w = 2 * bit(gen) - 1;
    }
    // A pool of input vectors, cycled so every call sees new data.
    const int pool = 64;
    std::vector<std::vector<int32_t>> vecs(pool, std::vector<int32_t>(n));
    for (auto &v : vecs) {
        for (auto &x : v) {
            x = 2 * bit(gen) - 1;
        }
    }
    std::vector<int32_t> res(m, 0);
    nq::Crossbar xbar;
    xbar.write(mat.data(), m, n);
    int64_t checksum = 0;
    int64_t calls = 0;
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    double elapsed = 0.0;
    while (elapsed < budget) {
        for (int k = 0; k < 16; ++k) {
            std::fill(res.begin(), res.end(), 0);
            xbar.mvm(res.data(), vecs[calls % pool].data(), mat.data(), m, n);
            checksum += res[calls % m];
            ++calls;
        }
        elapsed = std::chrono::duration<double>(clock::now() - start).count();
    }
    std::printf("calls %lld seconds %.6f calls_per_s %.1f checksum %lld\n",
                static_cast<long long>(calls), elapsed, calls / elapsed,
                static_cast<long long>(checksum));
    return 0;
}

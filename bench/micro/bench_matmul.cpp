// Micro-benchmark of kvz::matmul (not built by CMake; see the build line below).
//   g++ -std=gnu++20 -O3 -Isrc bench/micro/bench_matmul.cpp build/libkvzip.a -lfmt -lpthread -o bench_matmul
//   ./bench_matmul [threads] [smollm2|qwen|qwen15]   (shapes of SmolLM2-135M, Qwen2.5-0.5B or -1.5B's matrices)
// Decode (n_tok = 1): GB/s of weight bytes streamed, "hot" = one matrix reused (cache
// resident), "cold" = rotating over 64+ MB of copies (DRAM). Prefill (n_tok = 512): GFLOP/s
// counting 2 * n_in * n_out * n_tok. Each figure: mean +- sd over 5 repetitions.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/types.h"

using namespace kvz;

namespace {

// Wall time, or with threads == 1 the calling thread's CPU time: on a shared machine the
// latter ignores time spent descheduled (other processes), which wall time cannot.
bool g_cpu_clock = false;
double now() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<uint8_t> random_weights(DType t, int64_t n_out, int64_t n_in, std::mt19937& rng) {
  const TypeInfo& ti = type_info(t);
  std::vector<uint8_t> w(row_bytes(t, n_in) * n_out);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  if (ti.block_size == 1) {
    for (size_t i = 0; i + 1 < w.size(); i += 2) {
      const uint16_t h = f32_to_fp16(float(int(rng() % 2000) - 1000) * 1e-3f);
      std::memcpy(&w[i], &h, 2);
    }
    return w;
  }
  const uint16_t d = f32_to_fp16(0.01f);
  for (size_t o = 0; o < w.size(); o += ti.type_size) {
    const size_t at = t == DType::Q6_K ? 208 : 0;
    std::memcpy(&w[o + at], &d, 2);
    if (t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K) std::memcpy(&w[o + 2], &d, 2);
  }
  return w;
}

struct Stat {
  double mean, sd, best;
};
template <class F>
Stat measure(F&& f, int reps) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) v.push_back(f());
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= v.size();
  for (double x : v) s += (x - m) * (x - m);
  return {m, std::sqrt(s / v.size()), *std::max_element(v.begin(), v.end())};
}

}  // namespace

int main(int argc, char** argv) {
  const int n_threads = argc > 1 ? std::atoi(argv[1]) : 2;
  ThreadPool pool(n_threads);
  g_cpu_clock = n_threads == 1;
  std::mt19937 rng(1);
  std::printf("isa=%s threads=%d clock=%s; figures: mean +- sd (best) of 5\n", kernels().isa, n_threads,
              g_cpu_clock ? "thread-cpu" : "wall");
  struct Case {
    DType t;
    int64_t n_in, n_out;
  };
  const std::vector<Case> smollm2 = {{DType::Q4_1, 576, 576},  {DType::Q4_1, 576, 1536}, {DType::Q4_1, 1536, 576},
                                     {DType::Q8_0, 576, 576},  {DType::Q8_0, 576, 1536}, {DType::Q8_0, 1536, 576},
                                     {DType::Q4_0, 576, 1536}, {DType::Q5_0, 576, 1536}, {DType::F16, 576, 1536},
                                     {DType::Q4_K, 1536, 576}, {DType::Q6_K, 1536, 576}};
  // Qwen2.5-Coder-0.5B Q4_K_M: q/o/gate/up Q5_0, v Q8_0, ffn_down Q6_K (Q4_K in some
  // layers), output Q8_0 (8192 of its 151936 rows here).
  const std::vector<Case> qwen = {{DType::Q5_0, 896, 896},  {DType::Q5_0, 896, 4864}, {DType::Q6_K, 4864, 896},
                                  {DType::Q4_K, 4864, 896}, {DType::Q8_0, 896, 8192},
                                  {DType::Q8_0, 14336, 512}, {DType::Q5_0, 14336, 512}};
  // Qwen2.5-Coder-1.5B Q4_K_M: Q4_K q/k/o/gate/up (and ffn_down in some layers), Q6_K v and
  // ffn_down, output Q6_K (8192 of its 151936 rows here).
  const std::vector<Case> qwen15 = {{DType::Q4_K, 1536, 1536}, {DType::Q4_K, 1536, 8960}, {DType::Q4_K, 8960, 1536},
                                    {DType::Q6_K, 8960, 1536}, {DType::Q6_K, 1536, 256},  {DType::Q6_K, 1536, 8192}};
  const std::string set = argc > 2 ? argv[2] : "smollm2";
  for (const Case& c : set == "qwen" ? qwen : set == "qwen15" ? qwen15 : smollm2) {
    const size_t bytes = row_bytes(c.t, c.n_in) * c.n_out;
    const int n_copies = static_cast<int>(std::max<size_t>(2, (size_t(96) << 20) / bytes));
    std::vector<std::vector<uint8_t>> ws;
    for (int i = 0; i < n_copies; ++i) ws.push_back(random_weights(c.t, c.n_out, c.n_in, rng));
    std::vector<float> x(512 * c.n_in), y(512 * c.n_out);
    for (auto& v : x) v = float(int(rng() % 2000) - 1000) * 1e-3f;
    auto decode = [&](bool cold) {
      const int iters = 2000;
      const double t0 = now();
      for (int i = 0; i < iters; ++i)
        matmul(WeightView{c.t, c.n_in, c.n_out, ws[cold ? i % n_copies : 0].data()}, x.data(), 1, y.data(), &pool);
      return bytes * iters / (now() - t0) / 1e9;
    };
    auto prefill = [&] {
      const int iters = 3;
      const double t0 = now();
      for (int i = 0; i < iters; ++i)
        matmul(WeightView{c.t, c.n_in, c.n_out, ws[0].data()}, x.data(), 512, y.data(), &pool);
      return 2.0 * c.n_in * c.n_out * 512 * iters / (now() - t0) / 1e9;
    };
    decode(false);
    const Stat hot = measure([&] { return decode(false); }, 5);
    const Stat cold = measure([&] { return decode(true); }, 5);
    prefill();
    const Stat pf = measure(prefill, 5);
    std::printf("%-5s n_in=%5lld n_out=%5lld | decode GB/s hot %5.1f+-%4.1f (%5.1f) cold %5.1f+-%4.1f (%5.1f) "
                "| prefill512 GFLOP/s %5.1f+-%4.1f (%5.1f)\n",
                type_name(c.t), (long long)c.n_in, (long long)c.n_out, hot.mean, hot.sd, hot.best, cold.mean, cold.sd,
                cold.best, pf.mean, pf.sd, pf.best);
  }
}

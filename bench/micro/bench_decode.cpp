// Decode-step micro-benchmark: the matmuls of one SmolLM2-135M token (30 layers of Q4_1
// q/k/v/o/gate/up/down plus the 49152 x 576 Q8_0 LM head, 94 MB of distinct weights, so
// every step streams from DRAM) through kvz::matmul, without attention or norms.
// Not built by CMake:
//   g++ -std=gnu++20 -O3 -Isrc bench/micro/bench_decode.cpp build-perf/libkvzip.a -lfmt -lpthread -o bench_decode
//   ./bench_decode [threads] [steps] [fused]
// fused = 1: q/k/v and gate/up each through one matmul_multi call.
// Prints tok/s as median and best over the steps, and GB/s of weights at the median. With one
// thread the clock is the thread's CPU time (ignores time descheduled on a shared machine).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/matmul_multi.h"
#include "kernels/types.h"

using namespace kvz;

namespace {

struct Mat {
  DType t;
  int64_t n_in, n_out;
  std::vector<uint8_t> w;
};

Mat make(DType t, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  Mat m{t, n_in, n_out, std::vector<uint8_t>(row_bytes(t, n_in) * n_out)};
  for (auto& b : m.w) b = static_cast<uint8_t>(rng());
  const size_t bs = type_info(t).type_size;
  const uint16_t d = f32_to_fp16(0.01f);
  for (size_t o = 0; o < m.w.size(); o += bs) {
    std::memcpy(&m.w[o], &d, 2);
    if (t == DType::Q4_1) std::memcpy(&m.w[o + 2], &d, 2);
  }
  return m;
}

double now(bool cpu) {
  if (cpu) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int n_threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 60;
  const bool fused = argc > 3 && std::atoi(argv[3]) != 0;
  ThreadPool pool(n_threads);
  std::mt19937 rng(1);
  std::vector<Mat> mats;
  size_t bytes = 0;
  for (int il = 0; il < 30; ++il) {
    for (auto [n_in, n_out] : {std::pair<int64_t, int64_t>{576, 576}, {576, 192}, {576, 192}, {576, 576},
                               {576, 1536}, {576, 1536}, {1536, 576}})
      mats.push_back(make(DType::Q4_1, n_in, n_out, rng));
  }
  mats.push_back(make(DType::Q8_0, 576, 49152, rng));
  for (auto& m : mats) bytes += m.w.size();
  std::vector<float> x(1536), y(49152);
  for (auto& v : x) v = float(int(rng() % 2000) - 1000) * 1e-3f;
  std::vector<double> dt;
  for (int s = 0; s < steps + 3; ++s) {
    const double t0 = now(n_threads == 1);
    auto view = [&](size_t i) { return WeightView{mats[i].t, mats[i].n_in, mats[i].n_out, mats[i].w.data()}; };
    float* ys[3] = {y.data(), y.data() + 2048, y.data() + 4096};
    for (size_t i = 0; i < mats.size();) {
      const int group = !fused || i + 1 == mats.size() ? 1 : i % 7 == 0 ? 3 : i % 7 == 4 ? 2 : 1;
      WeightView v[3];
      for (int g = 0; g < group; ++g) v[g] = view(i + g);
      matmul_multi(v, group, x.data(), 1, ys, &pool);
      i += group;
    }
    const double d = now(n_threads == 1) - t0;
    if (s >= 3) dt.push_back(d);
  }
  std::sort(dt.begin(), dt.end());
  const double med = dt[dt.size() / 2];
  std::printf("fused=%d threads=%d weights=%.1f MB | tok/s median %.1f best %.1f | GB/s median %.1f\n", fused, n_threads,
              bytes / 1e6, 1 / med, 1 / dt[0], bytes / med / 1e9);
}

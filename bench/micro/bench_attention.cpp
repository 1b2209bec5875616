// Attention micro-benchmark: kvz::attend_head over one KV head's f16 segment, in the
// shapes the engine calls it with. Timed in thread CPU time, so a loaded machine does not
// distort it (descheduled time is not counted).
//   cmake --build build --target bench_attention && build/bench_attention [len] [rows] [d] [reps]
// Defaults: SmolLM2 decode at depth 4096 (3 query heads per KV head, d 64).
// Prints ns per (query row, key) and the K/V bytes read per second.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"

namespace {
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t len = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int rows = argc > 2 ? std::atoi(argv[2]) : 3;
  const int d = argc > 3 ? std::atoi(argv[3]) : 64;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 200;
  if (rows < 1 || rows > kvz::kAttnMaxRows || d % 8 != 0 || d > 256 || len < 1) {
    std::fprintf(stderr, "need 1 <= rows <= %d, d a multiple of 8 up to 256, len >= 1\n", kvz::kAttnMaxRows);
    return 2;
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> k(len * d), v(len * d);
  for (auto& x : k) x = kvz::f32_to_fp16(nd(rng));
  for (auto& x : v) x = kvz::f32_to_fp16(nd(rng));
  std::vector<float> q(rows * d), out(rows * d);
  for (auto& x : q) x = nd(rng);
  std::vector<int64_t> limit(rows, len);  // decode: every row sees the whole segment
  std::vector<double> dt;
  for (int r = 0; r < reps + 5; ++r) {
    const double t0 = cpu_now();
    kvz::attend_head(q.data(), d, rows, limit.data(), k.data(), v.data(), d, 0.125f, out.data(), d);
    if (r >= 5) dt.push_back(cpu_now() - t0);
  }
  std::sort(dt.begin(), dt.end());
  const double med = dt[dt.size() / 2];
  std::printf("len %lld rows %d d %d: median %.1f us, %.3f ns per (row, key), %.1f GB/s of K/V (checksum %.4f)\n",
              static_cast<long long>(len), rows, d, med * 1e6, med * 1e9 / (double(rows) * len),
              2.0 * len * d * 2 / med * 1e-9, out[0] + out[rows * d - 1]);
  return 0;
}

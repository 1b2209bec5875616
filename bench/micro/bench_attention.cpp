// Attention micro-benchmark: kvz::attend_head over one KV head's f16 segment, in the
// shapes the engine calls it with. Timed in thread CPU time, so a loaded machine does not
// distort it (descheduled time is not counted).
//   cmake --build build --target bench_attention && build/bench_attention [len] [rows] [d] [reps] [score]
// Defaults: SmolLM2 decode at depth 4096 (3 query heads per KV head, d 64).
// Prints ns per (query row, key) and the K/V bytes read per second. A fifth argument `q8`
// times decode over Q8_0 K/V rows, `causal` a prefill block: row i sees len - rows + 1 + i
// keys (the general kernel; most of its tiles every row sees whole). With a fifth argument
// `score`, times kvz::kvzip_score_head instead: the rows are repeat-pass queries, `len`
// keys split as 64 system-prompt rows, a chunk of len - 64 - rows context rows, and the
// repeat rows (causal).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/kvzip_score.h"

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
  const bool score = argc > 5 && std::string(argv[5]) == "score";
  const bool q8 = argc > 5 && std::string(argv[5]) == "q8";  // decode over a q8_0 KV cache
  const bool causal = argc > 5 && std::string(argv[5]) == "causal";
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
  std::vector<uint8_t> kq, vq;
  if (q8) {
    std::vector<float> f(len * d);
    kq.resize(len * kvz::kv_row_bytes(kvz::KvType::Q8_0, d));
    vq.resize(kq.size());
    kvz::kv_rows_to_f32(kvz::KvType::F16, k.data(), f.data(), len, d);
    kvz::f32_to_kv_rows(kvz::KvType::Q8_0, f.data(), kq.data(), len, d);
    kvz::kv_rows_to_f32(kvz::KvType::F16, v.data(), f.data(), len, d);
    kvz::f32_to_kv_rows(kvz::KvType::Q8_0, f.data(), vq.data(), len, d);
  }
  std::vector<int64_t> limit(rows, len);  // decode: every row sees the whole segment
  if (causal)
    for (int i = 0; i < rows; ++i) limit[i] = std::max<int64_t>(1, len - rows + 1 + i);
  const int64_t n_sys = 64, n_chunk = len - n_sys - rows;
  if (score && n_chunk < 1) {
    std::fprintf(stderr, "score mode needs len > 64 + rows\n");
    return 2;
  }
  std::vector<int64_t> r_limit(rows);
  for (int i = 0; i < rows; ++i) r_limit[i] = i + 1;
  std::vector<float> colmax(score ? n_chunk : 0);
  const kvz::ScoreKeys keys{k.data(), n_sys, k.data() + n_sys * d, n_chunk, k.data() + (n_sys + n_chunk) * d};
  std::vector<double> dt;
  for (int r = 0; r < reps + 5; ++r) {
    const double t0 = cpu_now();
    if (score)
      kvz::kvzip_score_head(q.data(), d, rows, r_limit.data(), keys, d, 0.125f, colmax.data());
    else if (q8)
      kvz::attend_head(q.data(), d, rows, nullptr, limit.data(), kq.data(), vq.data(), kvz::KvType::Q8_0, d, 0.125f,
                       out.data(), d);
    else
      kvz::attend_head(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), kvz::KvType::F16, d, 0.125f,
                       out.data(), d);
    if (r >= 5) dt.push_back(cpu_now() - t0);
  }
  std::sort(dt.begin(), dt.end());
  const double med = dt[dt.size() / 2];
  if (score) out[0] = colmax[0], out[rows * d - 1] = colmax[n_chunk - 1];
  std::printf("%s%slen %lld rows %d d %d: median %.1f us, %.3f ns per (row, key), %.1f GB/s of K/V (checksum %.4f)\n",
              score ? "kvzip score, " : "", causal ? "causal, " : "", static_cast<long long>(len), rows, d, med * 1e6, med * 1e9 / (double(rows) * len),
              2.0 * len * (q8 ? kvz::kv_row_bytes(kvz::KvType::Q8_0, d) : d * 2) / med * 1e-9, out[0] + out[rows * d - 1]);
  return 0;
}

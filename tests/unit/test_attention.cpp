// The attention kernel against a plain double-precision softmax(QK^T)V, on shapes that
// hit tile tails, with per-row causal limits, for the dispatched and the portable path.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "cache/head_cache.h"
#include "model/blocks.h"

using namespace kvz;

namespace kvz {
void attend_head_ref(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType, int,
                     float, float*, int64_t, float*);
void attend_head_avx2(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType,
                      int, float, float*, int64_t, float*);
void attend_head_avx512(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType,
                        int, float, float*, int64_t, float*);
void kvzip_score_head_avx2(const float*, int64_t, int, const int64_t*, const void*, int64_t, const void*, int64_t,
                           const void*, KvType, const float*, int, float, float*);
void kvzip_score_head_avx512(const float*, int64_t, int, const int64_t*, const void*, int64_t, const void*, int64_t,
                             const void*, KvType, const float*, int, float, float*);
void geglu_tanh_ref(const float*, const float*, float*, int64_t);
void geglu_tanh_avx2(const float*, const float*, float*, int64_t);
void attend_head_capture_avx2(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*,
                              KvType, int, float, float*, int64_t, float*, const LogitCapture&);
void attend_head_capture_avx512(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*,
                                KvType, int, float, float*, int64_t, float*, const LogitCapture&);
}

namespace {

struct Case {
  int d, len, rows;
};

// Row i over keys [start[i], limit[i]) (start empty: 0); K/V given as f32.
void naive_f32(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int d,
               const std::vector<int64_t>& start, const std::vector<int64_t>& limit, float scale,
               std::vector<double>& out) {
  const int rows = static_cast<int>(limit.size());
  out.assign(static_cast<size_t>(rows) * d, 0.0);
  for (int i = 0; i < rows; ++i) {
    const int64_t S = start.empty() ? 0 : start[i], L = limit[i];
    if (L <= S) continue;
    std::vector<double> s(L - S);
    double mx = -1e300;
    for (int64_t j = S; j < L; ++j) {
      double acc = 0;
      for (int c = 0; c < d; ++c) acc += static_cast<double>(q[i * d + c]) * k[j * d + c];
      s[j - S] = acc * scale;
      mx = std::max(mx, s[j - S]);
    }
    double sum = 0;
    for (auto& x : s) sum += x = std::exp(x - mx);
    for (int64_t j = S; j < L; ++j)
      for (int c = 0; c < d; ++c) out[i * d + c] += s[j - S] / sum * v[j * d + c];
  }
}

std::vector<float> f16_to_f32(const std::vector<uint16_t>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = fp16_to_f32(h[i]);
  return f;
}

void naive(const std::vector<float>& q, const std::vector<uint16_t>& k, const std::vector<uint16_t>& v, int d,
           const std::vector<int64_t>& start, const std::vector<int64_t>& limit, float scale,
           std::vector<double>& out) {
  naive_f32(q, f16_to_f32(k), f16_to_f32(v), d, start, limit, scale, out);
}

}  // namespace

TEST(Attention, MatchesNaiveSoftmaxOnTailShapes) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& c : {Case{64, 1, 1}, Case{64, 17, 3}, Case{64, 130, 9}, Case{128, 65, 64}, Case{16, 200, 5},
                        Case{256, 64, 2}, Case{64, 4097, 3}}) {
    std::vector<float> q(static_cast<size_t>(c.rows) * c.d);
    std::vector<uint16_t> k(static_cast<size_t>(c.len) * c.d), v(k.size());
    for (auto& x : q) x = 2.0f * nd(rng);  // sharp softmax
    for (auto& x : k) x = f32_to_fp16(nd(rng));
    for (auto& x : v) x = f32_to_fp16(nd(rng));
    std::vector<int64_t> limit(c.rows);
    for (int i = 0; i < c.rows; ++i) limit[i] = std::max<int64_t>(0, c.len - (i * 7) % std::max(1, c.len));
    limit[0] = c.len;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    std::vector<double> want;
    naive(q, k, v, c.d, {}, limit, scale, want);
    for (int path = 0; path < 2; ++path) {
      std::vector<float> out(q.size(), -1.0f);
      if (path == 0)
        attend_head(q.data(), c.d, c.rows, nullptr, limit.data(), k.data(), v.data(), KvType::F16, c.d, scale, out.data(), c.d, nullptr);
      else
        attend_head_ref(q.data(), c.d, c.rows, nullptr, limit.data(), k.data(), v.data(), KvType::F16, c.d, scale, out.data(),
                        c.d, nullptr);
      // f32 accumulation over up to 4K keys with a 2e-7 exp: 1e-5 absolute on O(1) outputs.
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], want[i], 1e-5) << "d=" << c.d << " len=" << c.len << " rows=" << c.rows << " i=" << i
                                           << " path=" << path;
    }
  }
}

// Decode: every row of a KV group sees the same keys, which the AVX2 kernel serves with its
// register-blocked decode path (1..8 rows). Row counts, d with partial value passes
// (24, 72), key counts with 4-key and 64-key tile tails, a shared window start, and the
// log-sum-exp output, against the naive softmax.
TEST(Attention, DecodeRowsSharingKeysMatchNaive) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {24, 64, 72, 128, 256})
    for (int rows = 1; rows <= 8; ++rows)
      for (int len : {1, 6, 67, 300}) {
        std::vector<float> q(static_cast<size_t>(rows) * d);
        std::vector<uint16_t> k(static_cast<size_t>(len) * d), v(k.size());
        for (auto& x : q) x = 2.0f * nd(rng);
        for (auto& x : k) x = f32_to_fp16(nd(rng));
        for (auto& x : v) x = f32_to_fp16(nd(rng));
        for (int64_t s0 : {int64_t{-1}, int64_t{len / 3}}) {  // -1: no start array
          std::vector<int64_t> limit(rows, len), start(rows, std::max<int64_t>(s0, 0));
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          std::vector<double> want;
          naive(q, k, v, d, s0 < 0 ? std::vector<int64_t>{} : start, limit, scale, want);
          std::vector<float> out(q.size(), -1.0f), lse(rows, 0.0f);
          attend_head(q.data(), d, rows, s0 < 0 ? nullptr : start.data(), limit.data(), k.data(), v.data(), KvType::F16, d,
                      scale, out.data(), d, lse.data());
          for (size_t i = 0; i < out.size(); ++i)
            ASSERT_NEAR(out[i], want[i], 1e-5) << "d=" << d << " rows=" << rows << " len=" << len << " s0=" << s0;
          for (int r = 0; r < rows; ++r) {  // lse = log sum_j exp(s_j)
            double mx = -1e300, sum = 0;
            std::vector<double> sc;
            for (int64_t j = std::max<int64_t>(s0, 0); j < len; ++j) {
              double a = 0;
              for (int c = 0; c < d; ++c) a += static_cast<double>(q[r * d + c]) * fp16_to_f32(k[j * d + c]);
              sc.push_back(a * scale);
              mx = std::max(mx, a * scale);
            }
            for (double x : sc) sum += std::exp(x - mx);
            ASSERT_NEAR(lse[r], mx + std::log(sum), 1e-4) << "d=" << d << " rows=" << rows << " len=" << len;
          }
        }
      }
}

// The decode path is bitwise the general kernel over f16 rows: rows sharing their keys give
// the same bits alone (decode path) as inside a batch with one more row of another length
// (general path). Batched vs incremental forward passes, and greedy continuations, rely on
// it. (q8_0 rows: Q8DecodeScoresAreTheRoundedQuery's below.)
TEST(Attention, DecodePathIsBitwiseTheGeneralKernel) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const KvType kt = KvType::F16;
  for (int d : {64, 72, 128, 256})
    for (int rows = 1; rows <= 8; ++rows)
      for (int len : {5, 37, 300}) {
        std::vector<float> q(static_cast<size_t>(rows + 1) * d), kf(static_cast<size_t>(len) * d), vf(kf.size());
        for (auto& x : q) x = 2.0f * nd(rng);
        for (auto& x : kf) x = nd(rng);
        for (auto& x : vf) x = nd(rng);
        std::vector<uint8_t> k(static_cast<size_t>(len) * kv_row_bytes(kt, d)), v(k.size());
        f32_to_kv_rows(kt, kf.data(), k.data(), len, d);
        f32_to_kv_rows(kt, vf.data(), v.data(), len, d);
        std::vector<int64_t> limit(rows + 1, len);
        limit[rows] = len - 1;  // the extra row makes the batch non-uniform
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        std::vector<float> alone(static_cast<size_t>(rows) * d), batch(q.size());
        std::vector<float> lse_a(rows), lse_b(rows + 1);
        attend_head(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), kt, d, scale, alone.data(), d,
                    lse_a.data());
        attend_head(q.data(), d, rows + 1, nullptr, limit.data(), k.data(), v.data(), kt, d, scale, batch.data(), d,
                    lse_b.data());
        ASSERT_EQ(0, std::memcmp(alone.data(), batch.data(), alone.size() * sizeof(float)))
            << kv_type_name(kt) << " d=" << d << " rows=" << rows << " len=" << len;
        ASSERT_EQ(0, std::memcmp(lse_a.data(), lse_b.data(), rows * sizeof(float)))
            << kv_type_name(kt) << " d=" << d << " rows=" << rows;
      }
}

// The x86 decode path over q8_0 keys scores with integer dot products: each query row
// rounded to 8 bits per 32-value block (scale max|q| / 127, round to nearest), as llama.cpp
// does for q8_0 keys. Its outputs and log-sum-exps equal the general kernel's given that
// rounded query (a float-rounding difference), and stay near those of the unrounded one.
// Stored -128 quants (a hostile file; our quantizer writes +-127) count as -128.
TEST(Attention, Q8DecodeScoresAreTheRoundedQuery) {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
    GTEST_SKIP() << "CPU has no AVX2";
  std::mt19937 rng(31);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {32, 64, 128, 256})
    for (int rows = 1; rows <= 8; ++rows)
      for (int len : {1, 5, 37, 300}) {
        SCOPED_TRACE("d=" + std::to_string(d) + " rows=" + std::to_string(rows) + " len=" + std::to_string(len));
        std::vector<float> q(static_cast<size_t>(rows) * d), kf(static_cast<size_t>(len) * d), vf(kf.size());
        for (auto& x : q) x = 2.0f * nd(rng);
        for (auto& x : kf) x = nd(rng);
        for (auto& x : vf) x = nd(rng);
        const size_t rb = kv_row_bytes(KvType::Q8_0, d);
        std::vector<uint8_t> k(static_cast<size_t>(len) * rb), v(k.size());
        f32_to_kv_rows(KvType::Q8_0, kf.data(), k.data(), len, d);
        f32_to_kv_rows(KvType::Q8_0, vf.data(), v.data(), len, d);
        if (len >= 5) k[3 * rb + 2 + 7] = 0x80;  // one quant of -128
        // the query as the kernel rounds it
        std::vector<float> qr(q.size());
        for (size_t b = 0; b < q.size() / 32; ++b) {
          float amax = 0.0f;
          for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(q[32 * b + i]));
          const float dq = amax / 127.0f, inv = dq > 0.0f ? 1.0f / dq : 0.0f;
          for (int i = 0; i < 32; ++i) qr[32 * b + i] = static_cast<float>(std::lrintf(q[32 * b + i] * inv)) * dq;
        }
        std::vector<int64_t> limit(rows, len);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        std::vector<float> dec(q.size()), want(q.size()), plain(q.size()), ld(rows), lw(rows), lp(rows);
        attend_head_avx2(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::Q8_0, d, scale,
                         dec.data(), d, ld.data());
        attend_head_ref(qr.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::Q8_0, d, scale,
                        want.data(), d, lw.data());
        attend_head_ref(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::Q8_0, d, scale,
                        plain.data(), d, lp.data());
        double worst = 0.0;
        for (size_t i = 0; i < dec.size(); ++i) {
          ASSERT_NEAR(dec[i], want[i], 2e-5f) << i;
          worst = std::max(worst, std::fabs(static_cast<double>(dec[i]) - plain[i]));
        }
        for (int r = 0; r < rows; ++r) {
          ASSERT_NEAR(ld[r], lw[r], 2e-5f) << r;
          ASSERT_NEAR(ld[r], lp[r], 0.05f) << r;
        }
        // the rounding moves outputs (mixtures of unit-variance values) a little, not at all is
        // impossible for a long segment
        EXPECT_LT(worst, 0.1);
        if (len == 300) {
          EXPECT_GT(worst, 0.0);
        }
      }
}

// The AVX-512 build of the x86 kernels (more rows per register block) gives bitwise the
// AVX2 build's outputs and log-sum-exps: decode groups of 1-8 rows, batches with causal
// limits and sliding-window starts, Q8_0 rows, and the KVzip scoring kernel.
TEST(Attention, Avx512BuildIsBitwiseAvx2) {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2")))
    GTEST_SKIP() << "CPU has no AVX-512VL";
  std::mt19937 rng(29);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {64, 128, 256})
    for (int rows = 1; rows <= 12; ++rows)
      for (int len : {7, 70, 333}) {
        SCOPED_TRACE("d=" + std::to_string(d) + " rows=" + std::to_string(rows) + " len=" + std::to_string(len));
        std::vector<float> q(static_cast<size_t>(rows) * d), kf(static_cast<size_t>(len) * d), vf(kf.size());
        for (auto& x : q) x = 2.0f * nd(rng);
        for (auto& x : kf) x = nd(rng);
        for (auto& x : vf) x = nd(rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        for (KvType kt : {KvType::F16, KvType::Q8_0}) {
          const size_t rb = kv_row_bytes(kt, d);
          std::vector<uint8_t> k(rb * len), v(rb * len);
          f32_to_kv_rows(kt, kf.data(), k.data(), len, d);
          f32_to_kv_rows(kt, vf.data(), v.data(), len, d);
          if (kt == KvType::Q8_0) {  // stored -128 quants (a hostile file) in both key paths
            k[3 * rb + 2 + 7] = 0x80;
            k[(len - 2) * rb + 2 + 31] = 0x80;
          }
          std::vector<int64_t> same(rows, len), causal(rows), start(rows);
          for (int i = 0; i < rows; ++i) {
            causal[i] = std::max<int64_t>(1, len - rows + 1 + i);
            start[i] = i % 3 == 0 ? 0 : i;
          }
          for (int variant = 0; variant < 3; ++variant) {
            const int64_t* lim = variant == 0 ? same.data() : causal.data();
            const int64_t* st = variant == 2 ? start.data() : nullptr;
            std::vector<float> oa(q.size(), 1.f), ob(q.size(), 2.f), la(rows, 1.f), lb(rows, 2.f);
            attend_head_avx2(q.data(), d, rows, st, lim, k.data(), v.data(), kt, d, scale, oa.data(), d, la.data());
            attend_head_avx512(q.data(), d, rows, st, lim, k.data(), v.data(), kt, d, scale, ob.data(), d, lb.data());
            ASSERT_EQ(0, std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(float))) << "variant " << variant;
            ASSERT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float))) << "variant " << variant;
          }
          // Scoring: 16 system rows, the rest chunk, the query rows causal over a repeat block.
          if (len > 16 + rows) {
            const int64_t n_sys = 16, n_chunk = len - n_sys - rows;
            std::vector<int64_t> rl(rows);
            std::vector<float> logw(rows);
            for (int i = 0; i < rows; ++i) {
              rl[i] = i + 1;
              logw[i] = -0.1f * i;
            }
            std::vector<float> ca(n_chunk, 0.f), cb(n_chunk, 0.f);
            const uint8_t* kb = k.data();
            kvzip_score_head_avx2(q.data(), d, rows, rl.data(), kb, n_sys, kb + n_sys * rb, n_chunk,
                                  kb + (n_sys + n_chunk) * rb, kt, logw.data(), d, scale, ca.data());
            kvzip_score_head_avx512(q.data(), d, rows, rl.data(), kb, n_sys, kb + n_sys * rb, n_chunk,
                                    kb + (n_sys + n_chunk) * rb, kt, logw.data(), d, scale, cb.data());
            ASSERT_EQ(0, std::memcmp(ca.data(), cb.data(), ca.size() * sizeof(float))) << "score";
          }
        }
      }
}

// The KVzip repeat pass's fused capture: AVX2 and AVX-512 write the same logits into the
// same places, and the same outputs, for blocks whose tiles below the diagonal take the
// AVX-512 build's whole-tile passes (several tiles per pass at 333 keys), with three ranges
// cutting across tiles. Cells a row does not see keep their fill.
TEST(Attention, CaptureIsBitwiseAcrossKernelSets) {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2")))
    GTEST_SKIP() << "CPU has no AVX-512VL";
  std::mt19937 rng(37);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int len = 333;
  for (int d : {64, 128, 256})
    for (int rows : {2, 9, 24, 63}) {
      SCOPED_TRACE("d=" + std::to_string(d) + " rows=" + std::to_string(rows));
      std::vector<float> q(static_cast<size_t>(rows) * d), kf(static_cast<size_t>(len) * d), vf(kf.size());
      for (auto& x : q) x = 2.0f * nd(rng);
      for (auto& x : kf) x = nd(rng);
      for (auto& x : vf) x = nd(rng);
      std::vector<uint8_t> k(static_cast<size_t>(len) * kv_row_bytes(KvType::F16, d)), v(k.size());
      f32_to_kv_rows(KvType::F16, kf.data(), k.data(), len, d);
      f32_to_kv_rows(KvType::F16, vf.data(), v.data(), len, d);
      std::vector<int64_t> limit(rows);
      for (int i = 0; i < rows; ++i) limit[i] = len - rows + 1 + i;  // causal
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      LogitCapture cap;
      cap.n_ranges = 3;
      const int64_t lo[3] = {0, 40, 290}, hi[3] = {20, 250, len};
      int64_t col = 0;
      for (int r = 0; r < 3; ++r) {
        cap.lo[r] = lo[r];
        cap.hi[r] = hi[r];
        cap.col[r] = col;
        col += hi[r] - lo[r];
      }
      cap.stride = col;
      std::vector<float> ca(static_cast<size_t>(rows) * col, 7.0f), cb(ca.size(), 7.0f);
      std::vector<float> oa(q.size()), ob(q.size());
      cap.out = ca.data();
      attend_head_capture_avx2(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::F16, d, scale,
                               oa.data(), d, nullptr, cap);
      cap.out = cb.data();
      attend_head_capture_avx512(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::F16, d, scale,
                                 ob.data(), d, nullptr, cap);
      ASSERT_EQ(0, std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(float)));
      ASSERT_EQ(0, std::memcmp(ca.data(), cb.data(), ca.size() * sizeof(float)));
      // a seen key's logit is q . k * scale (to float rounding); an unseen one keeps the fill
      const int i = rows - 2;
      for (int r = 0; r < 3; ++r)
        for (int64_t j = lo[r]; j < hi[r]; ++j) {
          const float got = ca[i * col + cap.col[r] + (j - lo[r])];
          if (j >= limit[i]) {
            ASSERT_EQ(got, 7.0f) << j;
            continue;
          }
          double want = 0.0;
          for (int c = 0; c < d; ++c) want += double(q[i * d + c]) * fp16_to_f32(f32_to_fp16(kf[j * d + c]));
          ASSERT_NEAR(got, want * scale, 1e-4 * (1.0 + std::fabs(want))) << j;
        }
    }
}

TEST(Attention, EmptyLimitGivesZeros) {
  std::vector<float> q(64, 1.0f), out(64, 5.0f);
  std::vector<uint16_t> k(64, 0), v(64, 0);
  int64_t limit = 0;
  attend_head(q.data(), 64, 1, nullptr, &limit, k.data(), v.data(), KvType::F16, 64, 0.125f, out.data(), 64);
  for (float x : out) EXPECT_EQ(x, 0.0f);
  int64_t start = 1;
  limit = 1;
  std::fill(out.begin(), out.end(), 5.0f);
  attend_head(q.data(), 64, 1, &start, &limit, k.data(), v.data(), KvType::F16, 64, 0.125f, out.data(), 64);
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

// Q8_0 storage: rows quantised with GGUF's Q8_0 rule (|error| <= scale / 2 per value), and
// attention over them equals attention over their dequantised values, in both kernels.
TEST(Attention, Q8RowsRoundTripAndAttendLikeTheirValues) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {32, 64, 256}) {
    const int rows = 3;
    const int64_t len = 300;
    std::vector<float> q(rows * d), kf(len * d), vf(len * d);
    for (auto& x : q) x = 2.0f * nd(rng);
    for (auto& x : kf) x = nd(rng);
    for (auto& x : vf) x = nd(rng);
    kf[5] = 0.0f;  // an all-zero block must survive (scale 0)
    std::fill(kf.begin() + 32, kf.begin() + 64, 0.0f);
    const size_t rb = kv_row_bytes(KvType::Q8_0, d);
    ASSERT_EQ(rb, static_cast<size_t>(d / 32 * 34));
    std::vector<uint8_t> kq(len * rb), vq(len * rb);
    f32_to_kv_rows(KvType::Q8_0, kf.data(), kq.data(), len, d);
    f32_to_kv_rows(KvType::Q8_0, vf.data(), vq.data(), len, d);
    std::vector<float> kd(len * d), vd(len * d);
    kv_rows_to_f32(KvType::Q8_0, kq.data(), kd.data(), len, d);
    kv_rows_to_f32(KvType::Q8_0, vq.data(), vd.data(), len, d);
    for (int64_t b = 0; b < len * d / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(kf[b * 32 + j]));
      for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(kd[b * 32 + j] - kf[b * 32 + j]), amax / 127 * 0.5f + 1e-3f * amax);
    }
    for (int j = 32; j < 64; ++j) EXPECT_EQ(kd[j], 0.0f);
    std::vector<int64_t> limit = {len, len - 11, 40};
    std::vector<double> want;
    naive_f32(q, kd, vd, d, {}, limit, 0.125f, want);
    for (int path = 0; path < 2; ++path) {
      std::vector<float> out(rows * d, -1.0f);
      if (path == 0)
        attend_head(q.data(), d, rows, nullptr, limit.data(), kq.data(), vq.data(), KvType::Q8_0, d, 0.125f,
                    out.data(), d);
      else
        attend_head_ref(q.data(), d, rows, nullptr, limit.data(), kq.data(), vq.data(), KvType::Q8_0, d, 0.125f,
                        out.data(), d, nullptr);
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 1e-5) << "d " << d << " path " << path;
    }
  }
  EXPECT_THROW(parse_kv_type("q4_0"), Error);
  EXPECT_EQ(parse_kv_type("q8_0"), KvType::Q8_0);
  EXPECT_THROW(KvCache(2, 2, 16, KvType::Q8_0), Error);  // head size not a multiple of 32
}

// Split-K: attention over [0, len) equals the lse-weighted merge of the results over
// disjoint key ranges (how decode spreads one head over several threads). The ranges cut
// through tiles, and one range is empty for some rows (their lse is -inf, weight 0).
TEST(Attention, KeyRangePartsMergeByLogSumExp) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int d = 64, rows = 3;
  const int64_t len = 1000;
  std::vector<float> q(rows * d);
  std::vector<uint16_t> k(len * d), v(len * d);
  for (auto& x : q) x = nd(rng);
  for (auto& x : k) x = f32_to_fp16(nd(rng));
  for (auto& x : v) x = f32_to_fp16(nd(rng));
  const std::vector<int64_t> limit = {len, len - 7, 300};
  std::vector<float> whole(rows * d), lse_whole(rows);
  attend_head(q.data(), d, rows, nullptr, limit.data(), k.data(), v.data(), KvType::F16, d, 0.125f, whole.data(), d,
              lse_whole.data());
  const int64_t cuts[] = {0, 77, 333, 640, len};
  std::vector<float> merged(rows * d, 0.0f), lse_tot(rows, -INFINITY);
  std::vector<std::vector<float>> outs, lses;
  for (int p = 0; p + 1 < 5; ++p) {
    std::vector<int64_t> st(rows), li(rows);
    for (int i = 0; i < rows; ++i) st[i] = cuts[p], li[i] = std::min(limit[i], cuts[p + 1]);
    outs.emplace_back(rows * d);
    lses.emplace_back(rows);
    attend_head(q.data(), d, rows, st.data(), li.data(), k.data(), v.data(), KvType::F16, d, 0.125f, outs.back().data(), d,
                lses.back().data());
    for (int i = 0; i < rows; ++i)
      if (lses.back()[i] > -INFINITY) lse_tot[i] = std::max(lse_tot[i], lses.back()[i]) + std::log1p(std::exp(-std::fabs(lse_tot[i] - lses.back()[i])));
  }
  EXPECT_EQ(lses[3][2], -INFINITY);  // row 2 ends at 300: nothing in [640, len)
  for (int i = 0; i < rows; ++i) {
    EXPECT_NEAR(lse_tot[i], lse_whole[i], 1e-4) << i;
    for (size_t p = 0; p < outs.size(); ++p) {
      const float w = std::exp(lses[p][i] - lse_whole[i]);
      for (int c = 0; c < d; ++c) merged[i * d + c] += w * outs[p][i * d + c];
    }
    for (int c = 0; c < d; ++c) EXPECT_NEAR(merged[i * d + c], whole[i * d + c], 1e-5) << i << " " << c;
  }
}

// Sliding window: every row has its own [start, limit), as in a prefill batch of a local
// layer (row t of the batch sees the `window` keys ending at its own position). Windows
// start inside tiles, span tile boundaries, and begin past the first rows' limits.
TEST(Attention, SlidingWindowRowsMatchNaive) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct WCase {
    int d, len, rows, window;
  };
  for (const WCase& c : {WCase{64, 40, 8, 5}, WCase{64, 300, 64, 100}, WCase{256, 700, 16, 512},
                         WCase{32, 129, 64, 1}, WCase{16, 4097, 3, 2000}}) {
    std::vector<float> q(static_cast<size_t>(c.rows) * c.d);
    std::vector<uint16_t> k(static_cast<size_t>(c.len) * c.d), v(k.size());
    for (auto& x : q) x = 2.0f * nd(rng);
    for (auto& x : k) x = f32_to_fp16(nd(rng));
    for (auto& x : v) x = f32_to_fp16(nd(rng));
    // the last `rows` keys are the rows' own; row i sits at key len - rows + i
    std::vector<int64_t> start(c.rows), limit(c.rows);
    for (int i = 0; i < c.rows; ++i) {
      limit[i] = c.len - c.rows + i + 1;
      start[i] = std::max<int64_t>(0, limit[i] - c.window);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    std::vector<double> want;
    naive(q, k, v, c.d, start, limit, scale, want);
    for (int path = 0; path < 2; ++path) {
      std::vector<float> out(q.size(), -1.0f);
      if (path == 0)
        attend_head(q.data(), c.d, c.rows, start.data(), limit.data(), k.data(), v.data(), KvType::F16, c.d, scale, out.data(),
                    c.d);
      else
        attend_head_ref(q.data(), c.d, c.rows, start.data(), limit.data(), k.data(), v.data(), KvType::F16, c.d, scale,
                        out.data(), c.d, nullptr);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], want[i], 1e-5) << "d=" << c.d << " len=" << c.len << " window=" << c.window
                                           << " i=" << i << " path=" << path;
    }
  }
}

TEST(Attention, F16RowConversionRoundTrips) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 10.0f);
  std::vector<float> x(37), y(37);
  std::vector<uint16_t> h(37);
  for (auto& e : x) e = nd(rng);
  f32_to_f16_row(x.data(), h.data(), 37);
  for (int i = 0; i < 37; ++i) EXPECT_EQ(h[i], f32_to_fp16(x[i])) << i;
  f16_to_f32_row(h.data(), y.data(), 37);
  for (int i = 0; i < 37; ++i) EXPECT_EQ(y[i], fp16_to_f32(h[i])) << i;
}

// The vectorised gated activations against the scalar definitions in model/blocks.cpp,
// over the range activations take and far beyond it (sigmoid saturation, no overflow).
TEST(Activation, VectorGatedActivationsMatchTheScalarDefinitions) {
  std::vector<float> g, u;
  for (int i = -4000; i <= 4000; ++i) {
    g.push_back(i * 0.01f);  // [-40, 40]
    u.push_back(1.0f + 0.001f * (i % 17));
  }
  for (float x : {-1e4f, -300.0f, -89.0f, 89.0f, 300.0f, 1e4f}) {
    g.push_back(x);
    u.push_back(0.5f);
  }
  g.push_back(0.3f);  // a tail shorter than one vector
  u.push_back(2.0f);
  const int64_t n = static_cast<int64_t>(g.size());
  std::vector<float> want(n), got(n);
  for (int gelu = 0; gelu < 2; ++gelu) {
    (gelu ? geglu_tanh : swiglu)(g.data(), u.data(), want.data(), n);
    (gelu ? geglu_tanh_vec : swiglu_vec)(g.data(), u.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], want[i], 2e-6f * std::fabs(want[i]) + 1e-7f * std::fabs(g[i] * u[i])) << (gelu ? "gelu" : "silu") << " x=" << g[i];
  }
}


// GeGLU (Gemma): the vector form is the scalar form's float steps with tanh(u) correctly
// rounded. Against the same steps with tanh from double precision (glibc's tanh, < 1 ulp of
// a double) it is bitwise equal; against the scalar form (glibc's tanhf) it is equal wherever
// tanhf is correctly rounded, which the test counts (most inputs). Every build gives the same
// bits (the reference build has no FMA; the kernel must not fuse either).
TEST(Activation, GegluIsTheScalarFormWithACorrectlyRoundedTanh) {
  std::vector<float> g, u;
  for (int i = -120000; i <= 120000; ++i) {
    g.push_back(i * 1e-4f);  // [-12, 12]: tanh saturates near |u| = 9
    u.push_back(1.0f + 0.125f * (i % 5));
  }
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-8f, 3e-4f, 30.0f, -30.0f, 1e4f, -1e4f, 3e19f, -3e19f}) {
    g.push_back(x);
    u.push_back(0.75f);
  }
  g.push_back(0.3f);  // a tail shorter than one vector
  u.push_back(2.0f);
  const int64_t n = static_cast<int64_t>(g.size());
  std::vector<float> got(n), scalar(n), got_ref(n), got_avx2(n);
  geglu_tanh_vec(g.data(), u.data(), got.data(), n);
  geglu_tanh(g.data(), u.data(), scalar.data(), n);
  geglu_tanh_ref(g.data(), u.data(), got_ref.data(), n);
  EXPECT_EQ(0, std::memcmp(got.data(), got_ref.data(), n * sizeof(float))) << "the reference build differs";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    geglu_tanh_avx2(g.data(), u.data(), got_avx2.data(), n);
    EXPECT_EQ(0, std::memcmp(got.data(), got_avx2.data(), n * sizeof(float))) << "the AVX2 build differs";
  }
  int64_t tanhf_exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i];
    const float z = 0.79788456080286535588f * x * (1.0f + 0.044715f * x * x);
    const auto t = static_cast<float>(std::tanh(static_cast<double>(z)));
    const float want = 0.5f * x * (1.0f + t) * u[i];
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want)) << "x=" << x << " got " << got[i] << " want " << want;
    if (std::tanh(z) == t) {
      ++tanhf_exact;
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(scalar[i])) << "x=" << x;
    }
  }
  // glibc's tanhf is correctly rounded on most inputs (94.6 % of the floats in [0, 12]).
  EXPECT_GT(tanhf_exact, n * 8 / 10);
}

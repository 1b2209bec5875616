// Body of the x86 attention kernels, compiled once per ISA (attention_avx2.cpp,
// x86_avx512/attention_avx512.cpp) like kernels/attention_impl.h, which it includes. Not a
// standalone header: the includer defines
//   KVZ_ATTN_NS            the namespace,
//   KVZ_ATTN_DOT_ROWS      query rows per sweep of 4 keys in the decode scores (R x 4
//                          accumulators + 4 keys + q in registers),
//   KVZ_ATTN_PV_ROWS       rows per P.V pass in decode (a converted V vector feeds them all),
//   KVZ_ATTN_PV_U_NARROW / _WIDE  value vectors per P.V pass for <= 2 rows / more rows,
// all sized to the register file (16 ymm with AVX2, 32 with AVX-512VL). They change which
// rows share a load, never the arithmetic of a row: every ISA build gives the same bits.
#include "kernels/x86_intrin.h"

#include <cstdint>
#include <cstring>

#include "core/fp16.h"

namespace kvz::KVZ_ATTN_NS {
inline void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}
// GGUF Q8_0 blocks (f16 scale, 32 int8) -> f32: sign-extend 8 bytes at a time, convert, scale.
inline void cvt_q8_0_f32(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
    uint16_t h;
    std::memcpy(&h, src, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(h));
    for (int j = 0; j < 32; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + j));
      _mm256_storeu_ps(dst + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
    }
  }
}
}  // namespace kvz::KVZ_ATTN_NS

#include "kernels/attention_impl.h"
#include "kernels/kvzip_score_impl.h"

namespace kvz::KVZ_ATTN_NS {

// Decode attention over an f16 segment for R query rows that see the same keys [k0, k1)
// (one KV head's group in a decode step). Unlike attend_head_impl it converts K and V in
// registers (no f32 tile written and read back through L1) and makes every converted key
// or value vector feed all R rows: per key, d/8 loads and conversions of K and of V, and
// 2 * R * d/8 FMAs. Same online softmax, exp and accumulation order per row as
// attend_head_impl up to f32 summation order.
template <int R>
inline v8f load_h8(const uint16_t* p) {
  return reinterpret_cast<v8f>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Four dot products per row (keys j..j+3): R x 4 accumulators, q from memory.
template <int R>
inline void dots4(const float* const* qr, const uint16_t* k, int d, float scale, float (*s)[kTile], int j) {
  v8f a[R][4];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < 4; ++u) a[r][u] = splat(0.0f);
  for (int c = 0; c < d; c += 8) {
    v8f kv[4];
    for (int u = 0; u < 4; ++u) kv[u] = load_h8<R>(k + static_cast<int64_t>(u) * d + c);
    for (int r = 0; r < R; ++r) {
      const v8f qc = load8(qr[r] + c);
      for (int u = 0; u < 4; ++u) a[r][u] += qc * kv[u];
    }
  }
  for (int r = 0; r < R; ++r) {
    // hadd tree: lanes 0..3 of lo + hi are the four sums
    const __m256 t0 = _mm256_hadd_ps(reinterpret_cast<__m256>(a[r][0]), reinterpret_cast<__m256>(a[r][1]));
    const __m256 t1 = _mm256_hadd_ps(reinterpret_cast<__m256>(a[r][2]), reinterpret_cast<__m256>(a[r][3]));
    const __m256 t = _mm256_hadd_ps(t0, t1);
    const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    _mm_storeu_ps(s[r] + j, _mm_mul_ps(sum, _mm_set1_ps(scale)));
  }
}

// acc[r][c0, c0 + 8U) = acc * corr[r] + sum_i s[r][i] * V[i][c0, c0 + 8U), in registers.
template <int R, int U>
inline void pv_pass(float (*acc)[kMaxD], int c0, const float* corr, const float (*s)[kTile], int n,
                    const uint16_t* vt, int d) {
  v8f a[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) a[r][u] = load8(acc[r] + c0 + 8 * u) * splat(corr[r]);
  const uint16_t* vi = vt + c0;
  for (int i = 0; i < n; ++i, vi += d) {
    v8f vv[U];
    for (int u = 0; u < U; ++u) vv[u] = load_h8<R>(vi + 8 * u);
    for (int r = 0; r < R; ++r) {
      const v8f p = splat(s[r][i]);
      for (int u = 0; u < U; ++u) a[r][u] += p * vv[u];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) store8(acc[r] + c0 + 8 * u, a[r][u]);
}

// pv_pass over every value chunk for RC rows: U chunks of 8 per pass, then single chunks.
// RC * U accumulators + U values + 1 broadcast must fit the 16 ymm registers (a spilled
// accumulator costs a store-forward chain per key).
template <int RC>
inline void pv_chunk(float (*acc)[kMaxD], const float* corr, const float (*s)[kTile], int n, const uint16_t* vt,
                     int d) {
  constexpr int kU = RC <= 2 ? KVZ_ATTN_PV_U_NARROW : KVZ_ATTN_PV_U_WIDE;
  int c0 = 0;
  for (; c0 + 8 * kU <= d; c0 += 8 * kU) pv_pass<RC, kU>(acc, c0, corr, s, n, vt, d);
  for (; c0 < d; c0 += 8) pv_pass<RC, 1>(acc, c0, corr, s, n, vt, d);
}
// Rows in chunks of 3 (a V vector converted once feeds 3 rows), the rest as 1 or 2.
template <int R>
inline void pv_rows(float (*acc)[kMaxD], const float* corr, const float (*s)[kTile], int n, const uint16_t* vt,
                    int d) {
  int r = 0;
  constexpr int kRC = KVZ_ATTN_PV_ROWS;
  for (; r + kRC <= R; r += kRC) pv_chunk<kRC>(acc + r, corr + r, s + r, n, vt, d);
  if constexpr (R % kRC != 0) pv_chunk<R % kRC>(acc + r, corr + r, s + r, n, vt, d);
}

template <int R>
void attend_decode_f16(const float* q, int64_t q_stride, int64_t k0, int64_t k1, const uint16_t* K,
                       const uint16_t* V, int d, float scale, float* out, int64_t out_stride, float* lse) {
  struct Buf {
    alignas(32) float acc[R][kMaxD];
    alignas(32) float s[R][kTile];
  };
  Buf& buf = thread_scratch<Buf>();
  auto& acc = buf.acc;
  auto& s = buf.s;
  float m[R], l[R];
  const float* qr[R];
  for (int r = 0; r < R; ++r) {
    qr[r] = q + r * q_stride;
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
    std::memset(acc[r], 0, sizeof(float) * d);
  }
  // The tiles, maxima, exponentials, sums and products of attend_head_impl in the same order
  // (tile_rows(d) keys per online-softmax step, per-8 partial sums added in turn), so a
  // decode step gives bitwise what the general kernel gave: batched and incremental forward
  // passes, and the greedy continuations checked against llama.cpp, do not move.
  const int tile = tile_rows(d);
  for (int64_t t0 = k0; t0 < k1; t0 += tile) {
    const int n = static_cast<int>(std::min<int64_t>(tile, k1 - t0));
    const uint16_t* kt = K + t0 * d;
    const uint16_t* vt = V + t0 * d;
    // Keys in groups of 4 up to the last multiple of 8 (per key the sum order of dot8x8),
    // the rest one by one as dot8 sums them (two alternating accumulators). 4 keys x at most
    // 2 rows per sweep keep 8 accumulators + 4 keys + q in registers (4 x 3 spilled one).
    const int n8 = n / 8 * 8;
    for (int j = 0; j < n8; j += 4) {
      constexpr int kDR = KVZ_ATTN_DOT_ROWS;
      int r = 0;
      for (; r + kDR <= R; r += kDR) dots4<kDR>(qr + r, kt + static_cast<int64_t>(j) * d, d, scale, s + r, j);
      if constexpr (R % kDR != 0) dots4<R % kDR>(qr + r, kt + static_cast<int64_t>(j) * d, d, scale, s + r, j);
    }
    for (int j = n8; j < n; ++j)
      for (int r = 0; r < R; ++r) {
        v8f a0 = splat(0.0f), a1 = splat(0.0f);
        const uint16_t* kj = kt + static_cast<int64_t>(j) * d;
        int c = 0;
        for (; c + 16 <= d; c += 16) {
          a0 += load8(qr[r] + c) * load_h8<R>(kj + c);
          a1 += load8(qr[r] + c + 8) * load_h8<R>(kj + c + 8);
        }
        if (c < d) a0 += load8(qr[r] + c) * load_h8<R>(kj + c);
        s[r][j] = hsum(a0 + a1) * scale;
      }
    float corr[R];
    for (int r = 0; r < R; ++r) {
      float tmax = -std::numeric_limits<float>::infinity();
      int i = 0;
      if (n >= 8) {
        v8f vmax = load8(s[r]);
        for (i = 8; i + 8 <= n; i += 8) {
          const v8f x = load8(s[r] + i);
          vmax = vmax > x ? vmax : x;
        }
        tmax = hmax(vmax);
      }
      for (; i < n; ++i) tmax = std::max(tmax, s[r][i]);
      const float m_new = std::max(m[r], tmax);
      corr[r] = std::exp(m[r] - m_new);
      m[r] = m_new;
      float psum = 0.0f;
      for (i = 0; i + 8 <= n; i += 8) {
        const v8f p = exp8(load8(s[r] + i) - splat(m_new));
        store8(s[r] + i, p);
        psum += hsum(p);
      }
      for (; i < n; ++i) {
        s[r][i] = std::exp(s[r][i] - m_new);
        psum += s[r][i];
      }
      l[r] = l[r] * corr[r] + psum;
    }
    // acc = acc * corr + P V
    pv_rows<R>(acc, corr, s, n, vt, d);
  }
  for (int r = 0; r < R; ++r) {
    float* o = out + r * out_stride;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int c = 0; c < d; ++c) o[c] = acc[r][c] * inv;
    if (lse) lse[r] = l[r] > 0.0f ? m[r] + std::log(l[r]) : -std::numeric_limits<float>::infinity();
  }
}

// The decode kernel applies when every row sees the same keys.
inline bool same_keys(int n_rows, const int64_t* start, const int64_t* limit) {
  for (int i = 1; i < n_rows; ++i)
    if (limit[i] != limit[0] || (start && start[i] != start[0])) return false;
  return true;
}

inline void attend_head_x86(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                      const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                      float* lse) {
  if (kt == KvType::F16 && n_rows >= 1 && n_rows <= 8 && d % 8 == 0 && d <= kMaxD && same_keys(n_rows, start, limit)) {
    const int64_t k0 = start ? std::max<int64_t>(start[0], 0) : 0, k1 = limit[0];
    const auto* K = static_cast<const uint16_t*>(k);
    const auto* V = static_cast<const uint16_t*>(v);
    switch (n_rows) {
      case 1: return attend_decode_f16<1>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 2: return attend_decode_f16<2>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 3: return attend_decode_f16<3>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 4: return attend_decode_f16<4>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 5: return attend_decode_f16<5>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 6: return attend_decode_f16<6>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      case 7: return attend_decode_f16<7>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
      default: return attend_decode_f16<8>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    }
  }
  attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}

}  // namespace kvz::KVZ_ATTN_NS

// The general attention kernel's step over the key tiles that every row of the block sees
// whole (a prefill block's tiles below its diagonal, a KVzip repeat pass's context keys), in
// 512-bit registers. Included by kernels/attention_impl.h when the includer defines
// KVZ_ATTN_FULL_TILES (x86_avx512/attention_avx512.cpp); uses its v8f helpers, exp_lanes,
// Scratch, softmax_tile and capture_logits.
//
// Every float step of the 8-wide step is kept, so results stay bitwise those of the AVX2
// build and of the decode kernel (test_attention: Avx512BuildIsBitwiseAvx2,
// DecodePathIsBitwiseTheGeneralKernel):
// - Scores. The 8-wide step sums q . k in eight lanes over d / 8 column chunks with FMA, then
//   reduces the lanes as ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) (reduce8), then
//   scales. Here a register holds two query rows' eight lanes side by side (the rows packed
//   in pairs once per call), multiplied by one key's chunk broadcast to both halves: the same
//   FMAs per lane, 16 lanes at a time; the lanes reduce with the same pairwise adds
//   (vshufps works within 128-bit blocks as on AVX2; the last add pairs 128-bit blocks).
// - Softmax: per row and tile, softmax_tile's steps (the exponentials 16 lanes at a time).
// - P . V: acc * corr, then one FMA per key in key order, per output column: a lane does the
//   same whatever the register width, so 16 columns per register.
// What changes is how many products one instruction makes (16 instead of 8) and how often a
// loaded value is reused: 24 FMAs per 3 + 8 loads in the scores (3 pairs of rows x 8 keys),
// 24 per 4 + 6 in P . V (6 rows x 64 columns).
#pragma once

#include "kernels/x86_intrin.h"

#include <type_traits>

namespace kvz::KVZ_ATTN_NS {

// Tiles per pass: up to kTile keys (the scratch's K and V rows, a score row's length).
constexpr int kMaxTiles = 8;  // kTile / the smallest tile (8 keys, d = 256)
static_assert(kTile / 8 <= kMaxTiles);

struct TileScratch {
  // qp[(p * nc + c) * 16 + l]: column 8c + l of row 2p (l < 8) or of row 2p + 1 (l >= 8),
  // nc = d / 8; an odd last row is paired with itself.
  alignas(64) float qp[kMaxRows * kMaxD];
  alignas(64) float s[kMaxRows * kTile];  // row i's scores, then probabilities, at s + i * nk
  float corr[kMaxRows * kMaxTiles];       // row i's rescale factor before tile t at [i * kMaxTiles + t]
};

// The full-tile step applies to d a multiple of 16 (P . V in 16-column registers).
inline bool full_tiles_fit(int d) { return d % 16 == 0 && d <= kMaxD; }

inline void pack_query_pairs(const float* q, int64_t q_stride, int n_rows, int d, float* qp) {
  const int nc = d / 8;
  for (int p = 0; 2 * p < n_rows; ++p) {
    const float* a = q + 2 * p * q_stride;
    const float* b = 2 * p + 1 < n_rows ? a + q_stride : a;
    for (int c = 0; c < nc; ++c) {
      std::memcpy(qp + (p * nc + c) * 16, a + 8 * c, 8 * sizeof(float));
      std::memcpy(qp + (p * nc + c) * 16 + 8, b + 8 * c, 8 * sizeof(float));
    }
  }
}

// reduce8's first two rounds (hadd_pairs) on two rows at once: within each 128-bit block,
// [x0 + x1, x2 + x3, y0 + y1, y2 + y3].
inline __m512 hadd_pairs16(__m512 x, __m512 y) {
  return _mm512_add_ps(_mm512_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Scores of NP row pairs (pairs p0 .. p0 + NP) against the 8 keys at kt (rows of d f32),
// scaled, into s (row i's at s + i * stride + j0). Rows at or past n_rows are not stored.
template <int NP>
inline void scores_pairs8(const float* qp, int p0, int nc, const float* kt, int d, float scale, float* s, int stride,
                          int j0, int n_rows) {
  __m512 a[NP][8];
  for (int p = 0; p < NP; ++p)
    for (int j = 0; j < 8; ++j) a[p][j] = _mm512_setzero_ps();
  for (int c = 0; c < nc; ++c) {
    __m512 qv[NP];
    for (int p = 0; p < NP; ++p) qv[p] = _mm512_load_ps(qp + ((p0 + p) * nc + c) * 16);
    for (int j = 0; j < 8; ++j) {
      const __m512 kv = _mm512_broadcast_f32x8(_mm256_loadu_ps(kt + j * d + 8 * c));
      for (int p = 0; p < NP; ++p) a[p][j] = _mm512_fmadd_ps(qv[p], kv, a[p][j]);
    }
  }
  const __m512 vs = _mm512_set1_ps(scale);
  for (int p = 0; p < NP; ++p) {
    // blocks of c0: [row 2p: keys 0-3 low half sums, high half sums | row 2p + 1: the same]
    const __m512 c0 = hadd_pairs16(hadd_pairs16(a[p][0], a[p][1]), hadd_pairs16(a[p][2], a[p][3]));
    const __m512 c1 = hadd_pairs16(hadd_pairs16(a[p][4], a[p][5]), hadd_pairs16(a[p][6], a[p][7]));
    const __m512 lo = _mm512_shuffle_f32x4(c0, c1, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(c0, c1, _MM_SHUFFLE(3, 1, 3, 1));
    // [row 2p keys 0-3, row 2p + 1 keys 0-3, row 2p keys 4-7, row 2p + 1 keys 4-7] -> rows whole
    const __m512 z = _mm512_mul_ps(_mm512_add_ps(lo, hi), vs);
    const __m512 r = _mm512_shuffle_f32x4(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    const int i = 2 * (p0 + p);
    _mm256_storeu_ps(s + i * stride + j0, _mm512_castps512_ps256(r));
    if (i + 1 < n_rows) _mm256_storeu_ps(s + (i + 1) * stride + j0, _mm512_extractf32x8_ps(r, 1));
  }
}

// For R rows over columns [c0, c0 + 16 U), tile after tile (n_tiles of nt keys, v's rows in
// order): acc = acc * corr_t + sum_j p[j] v[j], the accumulators held in registers across the
// tiles (a store and a load give back the same floats, so this is the per-tile step's result).
template <int R, int U>
inline void pv_block(float* acc, int d, const float* corr, const float* p, int nk, int nt, int n_tiles,
                     const float* v, int c0) {
  __m512 a[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) a[r][u] = _mm512_loadu_ps(acc + r * d + c0 + 16 * u);
  for (int t = 0; t < n_tiles; ++t) {
    for (int r = 0; r < R; ++r) {
      const __m512 cr = _mm512_set1_ps(corr[r * kMaxTiles + t]);
      for (int u = 0; u < U; ++u) a[r][u] = _mm512_mul_ps(a[r][u], cr);
    }
    for (int j = t * nt; j < (t + 1) * nt; ++j) {
      const float* vj = v + static_cast<int64_t>(j) * d + c0;
      for (int u = 0; u < U; ++u) {
        const __m512 vv = _mm512_loadu_ps(vj + 16 * u);
        for (int r = 0; r < R; ++r) a[r][u] = _mm512_fmadd_ps(_mm512_set1_ps(p[r * nk + j]), vv, a[r][u]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) _mm512_storeu_ps(acc + r * d + c0 + 16 * u, a[r][u]);
}

template <int R>
inline void pv_rows16(float* acc, int d, const float* corr, const float* p, int nk, int nt, int n_tiles,
                      const float* v) {
  int c = 0;
  for (; c + 64 <= d; c += 64) pv_block<R, 4>(acc, d, corr, p, nk, nt, n_tiles, v, c);
  for (; c + 32 <= d; c += 32) pv_block<R, 2>(acc, d, corr, p, nk, nt, n_tiles, v, c);
  for (; c + 16 <= d; c += 16) pv_block<R, 1>(acc, d, corr, p, nk, nt, n_tiles, v, c);
}

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

// softmax_tile for nt a multiple of 16: the exponentials 16 lanes at a time (exp_lanes, each
// lane as exp8), the sum of the probabilities in softmax_tile's order (8 at a time, each
// eight by hsum).
inline float softmax_tile16(float* s, int n, float tmax, float& m, float& l) {
  const float m_new = std::max(m, tmax);
  const float corr = online_corr(m, m_new);
  m = m_new;
  const v16f vm = v16f{} + m_new;
  float psum = 0.0f;
  for (int j = 0; j < n; j += 16) {
    v16f x;
    std::memcpy(&x, s + j, sizeof(x));
    const v16f p = exp_lanes<v16f, v16i>(x - vm);
    std::memcpy(s + j, &p, sizeof(p));
    psum += hsum(load8(s + j));
    psum += hsum(load8(s + j + 8));
  }
  l = l * corr + psum;
  return corr;
}

// n_tiles consecutive tiles of nt keys (a multiple of 8; f32 K and V rows at kt, vt, at most
// kTile keys in all) that all n_rows rows see whole; key0 is the first key's index in the
// segment (for the capture). Per tile the steps of the 8-wide kernel in its order; passing
// several tiles at once lets a block of query pairs score every key while its packed rows are
// in L1, and keeps the P . V accumulators in registers from one tile to the next.
inline void attend_full_tiles(TileScratch& ts, Scratch& sc, int n_rows, int d, float scale, const float* kt,
                              const float* vt, int nt, int n_tiles, int64_t key0, const LogitCapture* cap) {
  const int nc = d / 8, n_pairs = (n_rows + 1) / 2, nk = nt * n_tiles;
  int p = 0;
  for (; p + 3 <= n_pairs; p += 3)
    for (int j0 = 0; j0 < nk; j0 += 8) scores_pairs8<3>(ts.qp, p, nc, kt + j0 * d, d, scale, ts.s, nk, j0, n_rows);
  for (int j0 = 0; j0 < nk && p < n_pairs; j0 += 8) {
    if (n_pairs - p == 2) scores_pairs8<2>(ts.qp, p, nc, kt + j0 * d, d, scale, ts.s, nk, j0, n_rows);
    if (n_pairs - p == 1) scores_pairs8<1>(ts.qp, p, nc, kt + j0 * d, d, scale, ts.s, nk, j0, n_rows);
  }
  for (int i = 0; i < n_rows; ++i)
    for (int t = 0; t < n_tiles; ++t) {
      float* si = ts.s + i * nk + t * nt;
      const float tmax = tile_max(si, nt);
      if (cap) capture_logits(*cap, i, key0 + t * nt, nt, si);
      ts.corr[i * kMaxTiles + t] = nt % 16 == 0 ? softmax_tile16(si, nt, tmax, sc.m[i], sc.l[i])
                                                : softmax_tile(si, nt, tmax, sc.m[i], sc.l[i]);
    }
  int i = 0;
  auto pv = [&](auto rows) {
    constexpr int R = decltype(rows)::value;
    pv_rows16<R>(sc.acc + i * d, d, ts.corr + i * kMaxTiles, ts.s + i * nk, nk, nt, n_tiles, vt);
  };
  for (; i + 6 <= n_rows; i += 6) pv(std::integral_constant<int, 6>{});
  switch (n_rows - i) {
    case 5: pv(std::integral_constant<int, 5>{}); break;
    case 4: pv(std::integral_constant<int, 4>{}); break;
    case 3: pv(std::integral_constant<int, 3>{}); break;
    case 2: pv(std::integral_constant<int, 2>{}); break;
    case 1: pv(std::integral_constant<int, 1>{}); break;
    default: break;
  }
}

}  // namespace kvz::KVZ_ATTN_NS

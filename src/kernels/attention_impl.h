// Body of the attention kernel, included by kernels/ref/attention_ref.cpp and
// kernels/x86_avx2/attention_avx2.cpp so that one source compiles for each ISA. GCC
// vector extensions (v8f) lower to AVX2/FMA or to SSE pairs depending on the flags.
// Flash-style: keys in tiles of tile_rows(d) rows converted to f32 once and shared by every
// query row; a running max / sum per row (online softmax), memory O(rows * d).
// Not a standalone header: the includer defines KVZ_ATTN_NS and, inside that namespace
// before including, `void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n)` and
// `void cvt_q8_0_f32(const uint8_t* src, float* dst, int64_t n_blocks)` (GGUF Q8_0 blocks).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "kernels/attention.h"

namespace kvz::KVZ_ATTN_NS {

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

constexpr int kTile = 64;  // scratch rows; the tile used is tile_rows(d)
// Rows per K/V tile: the f32 K and V tiles together about 16 KiB, half of Zen 3's L1D, so
// they stay there beside q, the scores and the accumulators (bench_attention, one thread:
// d 64 decode 8.1 -> 7.4 ns per (row, key) going from 64 to 32 rows; d 256 33.5 -> 27.4
// going from 32 to 16).
inline int tile_rows(int d) { return std::clamp(2048 / d, 8, kTile); }
constexpr int kMaxD = 256;
constexpr int kMaxRows = 64;

inline v8f splat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
inline v8f load8(const float* p) {
  v8f r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}
inline void store8(float* p, v8f x) { std::memcpy(p, &x, sizeof(x)); }
inline float hsum(v8f x) { return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7])); }

// q . k over nv vectors of 8 floats, two accumulators (latency of the adds).
inline float dot8(const float* q, const float* k, int nv) {
  v8f a0 = splat(0.0f), a1 = splat(0.0f);
  int c = 0;
  for (; c + 1 < nv; c += 2) {
    a0 += load8(q + 8 * c) * load8(k + 8 * c);
    a1 += load8(q + 8 * c + 8) * load8(k + 8 * c + 8);
  }
  if (c < nv) a0 += load8(q + 8 * c) * load8(k + 8 * c);
  return hsum(a0 + a1);
}

// exp(x) for x <= 0 (softmax after max subtraction), relative error ~2e-7: x = n ln2 + r
// with |r| <= ln2/2, Taylor polynomial of degree 6 for e^r, 2^n from exponent bits.
// Inputs below -87 are clamped (their weight underflows anyway). Lane-wise, written once for
// any width (V: float lanes, VI: int32 lanes of the same count), so the 16-lane form
// (x86_avx512/attention_tiles_avx512.h) computes each lane exactly as exp8 does.
template <class V, class VI>
inline V exp_lanes(V x) {
  const V zero = {};
  x = x < zero - 87.0f ? zero - 87.0f : x;
  const V z = x * (zero + 1.44269504088896341f);
  const VI n = -__builtin_convertvector((zero + 0.5f) - z, VI);  // round(z) for z <= 0
  const V nf = __builtin_convertvector(n, V);
  V r = x - nf * (zero + 0.693145751953125f);
  r = r - nf * (zero + 1.428606765330187045e-06f);
  V p = zero + 1.0f / 720;
  p = p * r + (zero + 1.0f / 120);
  p = p * r + (zero + 1.0f / 24);
  p = p * r + (zero + 1.0f / 6);
  p = p * r + (zero + 0.5f);
  p = p * r + (zero + 1.0f);
  p = p * r + (zero + 1.0f);
  const VI bits = (n + 127) << 23;
  V scale;
  static_assert(sizeof(scale) == sizeof(bits));
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline v8f exp8(v8f x) { return exp_lanes<v8f, v8i>(x); }

// Sum of each of eight vectors: r[k] = hsum(a[k]). Three rounds of pairwise adds (the
// shape of AVX's hadd), so eight dot products cost one reduction instead of eight.
inline v8f hadd_pairs(v8f x, v8f y) {
  return __builtin_shufflevector(x, y, 0, 2, 8, 10, 4, 6, 12, 14) +
         __builtin_shufflevector(x, y, 1, 3, 9, 11, 5, 7, 13, 15);
}
inline v8f reduce8(const v8f* a) {
  const v8f c0 = hadd_pairs(hadd_pairs(a[0], a[1]), hadd_pairs(a[2], a[3]));
  const v8f c1 = hadd_pairs(hadd_pairs(a[4], a[5]), hadd_pairs(a[6], a[7]));
  return __builtin_shufflevector(c0, c1, 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(c0, c1, 4, 5, 6, 7, 12, 13, 14, 15);
}

// q . k_j for the eight keys k_j = k + j * d, j < 8: one q load feeds eight FMAs.
inline v8f dot8x8(const float* q, const float* k, int d) {
  v8f a[8];
  for (int j = 0; j < 8; ++j) a[j] = splat(0.0f);
  for (int c = 0; c < d; c += 8) {
    const v8f qc = load8(q + c);
    for (int j = 0; j < 8; ++j) a[j] += qc * load8(k + j * d + c);
  }
  return reduce8(a);
}

#ifdef KVZ_ATTN_PAIR_ROWS
// dot8x8 for two query rows at once: each key vector is loaded once for both (16
// accumulators: for a 32-register ISA). Per row the same sums in the same order.
inline void dot8x8_2(const float* q0, const float* q1, const float* k, int d, v8f& r0, v8f& r1) {
  v8f a0[8], a1[8];
  for (int j = 0; j < 8; ++j) a0[j] = a1[j] = splat(0.0f);
  for (int c = 0; c < d; c += 8) {
    const v8f q0c = load8(q0 + c), q1c = load8(q1 + c);
    for (int j = 0; j < 8; ++j) {
      const v8f kv = load8(k + j * d + c);
      a0[j] += q0c * kv;
      a1[j] += q1c * kv;
    }
  }
  r0 = reduce8(a0);
  r1 = reduce8(a1);
}
#endif

inline float hmax(v8f x) {
  float m = x[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, x[i]);
  return m;
}

// acc[0, 8U) = acc * corr + sum_j p[j] * v[j * d + (0, 8U)], the accumulator held in
// registers across all n keys (a load/FMA/store per key would chain through memory).
template <int U>
inline void accumulate_pv(float* acc, float corr, const float* p, int n, const float* v, int d) {
  v8f a[U];
  for (int u = 0; u < U; ++u) a[u] = load8(acc + 8 * u) * splat(corr);
  for (int j = 0; j < n; ++j) {
    const v8f pj = splat(p[j]);
    const float* vj = v + static_cast<int64_t>(j) * d;
    for (int u = 0; u < U; ++u) a[u] += pj * load8(vj + 8 * u);
  }
  for (int u = 0; u < U; ++u) store8(acc + 8 * u, a[u]);
}

inline void accumulate_pv_all(float* acc, float corr, const float* p, int n, const float* v, int d) {
  int c = 0;
  for (; c + 64 <= d; c += 64) accumulate_pv<8>(acc + c, corr, p, n, v + c, d);
  for (; c + 32 <= d; c += 32) accumulate_pv<4>(acc + c, corr, p, n, v + c, d);
  for (; c + 8 <= d; c += 8) accumulate_pv<1>(acc + c, corr, p, n, v + c, d);
}

#ifdef KVZ_ATTN_PAIR_ROWS
// accumulate_pv for two rows over the same n keys: each value vector loaded once for both.
template <int U>
inline void accumulate_pv2(float* acc0, float* acc1, float corr0, float corr1, const float* p0, const float* p1, int n,
                           const float* v, int d) {
  v8f a0[U], a1[U];
  for (int u = 0; u < U; ++u) {
    a0[u] = load8(acc0 + 8 * u) * splat(corr0);
    a1[u] = load8(acc1 + 8 * u) * splat(corr1);
  }
  for (int j = 0; j < n; ++j) {
    const v8f pj0 = splat(p0[j]), pj1 = splat(p1[j]);
    const float* vj = v + static_cast<int64_t>(j) * d;
    for (int u = 0; u < U; ++u) {
      const v8f vv = load8(vj + 8 * u);
      a0[u] += pj0 * vv;
      a1[u] += pj1 * vv;
    }
  }
  for (int u = 0; u < U; ++u) {
    store8(acc0 + 8 * u, a0[u]);
    store8(acc1 + 8 * u, a1[u]);
  }
}

inline void accumulate_pv2_all(float* acc0, float* acc1, float corr0, float corr1, const float* p0, const float* p1,
                               int n, const float* v, int d) {
  int c = 0;
  for (; c + 64 <= d; c += 64) accumulate_pv2<8>(acc0 + c, acc1 + c, corr0, corr1, p0, p1, n, v + c, d);
  for (; c + 32 <= d; c += 32) accumulate_pv2<4>(acc0 + c, acc1 + c, corr0, corr1, p0, p1, n, v + c, d);
  for (; c + 8 <= d; c += 8) accumulate_pv2<1>(acc0 + c, acc1 + c, corr0, corr1, p0, p1, n, v + c, d);
}
#endif

// n_rows K/V rows of d values in storage type t -> f32.
inline void cvt_rows(KvType t, const void* src, float* dst, int64_t n_rows, int d) {
  if (t == KvType::F16)
    cvt_f16_f32(static_cast<const uint16_t*>(src), dst, n_rows * d);
  else
    cvt_q8_0_f32(static_cast<const uint8_t*>(src), dst, n_rows * (d / 32));
}

// SwiGLU: out = up * gate * sigmoid(gate), 8 at a time; sigmoid(z) from e = exp(-|z|) so the
// exponential never overflows: z >= 0: 1 / (1 + e), z < 0: e / (1 + e).
inline void swiglu_impl(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8f g = load8(gate + i);
    const v8f ag = g < splat(0.0f) ? -g : g;
    const v8f e = exp8(-ag);
    const v8f num = g < splat(0.0f) ? e : splat(1.0f);
    store8(out + i, g * num / (splat(1.0f) + e) * load8(up + i));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// GeGLU in the tanh form (Gemma): out = 0.5 g (1 + tanh(u)) up, u = sqrt(2/pi) g (1 + 0.044715 g^2),
// with the float steps of the scalar form (model/blocks.cpp geglu_tanh) in its order and
// unfused (fp-contract off below, so every build gives the same bits), and tanh(u) evaluated
// in double and rounded once to float. The double evaluation's relative error is below
// 1e-13, so the result is the correctly rounded tanh of the float u except when u's tanh lies
// within that of a midpoint between two floats. glibc's tanhf (2.36) is not correctly rounded:
// it is one ulp off on 5.4 % of the floats in [0, 12], so this differs from the scalar form
// there, by one ulp of tanh, and nowhere else. (A sigmoid form exact to 2e-6 differed
// everywhere and moved Gemma 3's long llama.cpp parity prompt past its bound.)
// KVZ_NO_FUSE opens each function body below: clang takes fp contract per compound statement,
// gcc per region (push_options here, pop_options after geglu_impl).
#if defined(__clang__)
#define KVZ_NO_FUSE _Pragma("clang fp contract(off)")
#else
#define KVZ_NO_FUSE
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
typedef double v4d __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
inline v4d splat4(double x) { return v4d{x, x, x, x}; }
// tanh(u) for |u| < 0.0625: the odd Taylor series to u^11 (the next term is below 2e-17 u).
// Otherwise tanh|u| = 1 - 2 / (e^{2|u|} + 1) (at most 16x cancellation at |u| = 0.0625) with
// e^x = 2^k e^r, r = x - k ln2 in [-ln2/2, ln2/2] (ln2 in two parts, k ln2_hi exact), e^r
// by its Taylor series to r^12 (relative error 2e-15); |u| capped at 20, past which the
// float result is 1 anyway.
inline v4d tanh4d(v4d u) {
  KVZ_NO_FUSE
  const v4d a = u < splat4(0.0) ? -u : u;
  const v4d s = u * u;
  v4d small = splat4(-1382.0 / 155925);
  small = small * s + splat4(62.0 / 2835);
  small = small * s + splat4(-17.0 / 315);
  small = small * s + splat4(2.0 / 15);
  small = small * s + splat4(-1.0 / 3);
  small = u + u * (small * s);
  const v4d x = splat4(2.0) * (a < splat4(20.0) ? a : splat4(20.0));
  const v4d shifter = splat4(0x1.8p52);
  const v4d kd = x * splat4(1.4426950408889634) + shifter;  // round(x / ln2) in the low bits
  const v4d k = kd - shifter;
  const v4d r = (x - k * splat4(0x1.62e42fee00000p-1)) - k * splat4(0x1.a39ef35793c76p-33);
  v4d p = splat4(1.0 / 479001600);
  for (const double c : {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720,
                         1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0})
    p = p * r + splat4(c);
  v4u kbits;
  std::memcpy(&kbits, &kd, sizeof(kbits));
  constexpr uint64_t kOne = uint64_t{1023} << 52;
  const v4u sbits = (kbits << 52) + v4u{kOne, kOne, kOne, kOne};  // 2^k, 0 <= k <= 58
  v4d scale;
  std::memcpy(&scale, &sbits, sizeof(scale));
  const v4d big = splat4(1.0) - splat4(2.0) / (p * scale + splat4(1.0));
  const v4d t = a < splat4(0.0625) ? small : (u < splat4(0.0) ? -big : big);
  return u != u ? u : t;  // NaN stays NaN
}
inline v8f tanh8_rounded(v8f u) {
  const v4d lo = __builtin_convertvector(__builtin_shufflevector(u, u, 0, 1, 2, 3), v4d);
  const v4d hi = __builtin_convertvector(__builtin_shufflevector(u, u, 4, 5, 6, 7), v4d);
  const v4f tl = __builtin_convertvector(tanh4d(lo), v4f), th = __builtin_convertvector(tanh4d(hi), v4f);
  return __builtin_shufflevector(tl, th, 0, 1, 2, 3, 4, 5, 6, 7);
}
inline v8f geglu8(v8f g, v8f up) {
  KVZ_NO_FUSE
  const v8f u = (splat(0.79788456080286535588f) * g) * (splat(1.0f) + (splat(0.044715f) * g) * g);
  return ((splat(0.5f) * g) * (splat(1.0f) + tanh8_rounded(u))) * up;
}
inline void geglu_impl(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(out + i, geglu8(load8(gate + i), load8(up + i)));
  if (i < n) {  // the tail through one padded vector: the same steps as the rest
    alignas(32) float g[8] = {}, u[8] = {}, o[8];
    std::memcpy(g, gate + i, sizeof(float) * (n - i));
    std::memcpy(u, up + i, sizeof(float) * (n - i));
    store8(o, geglu8(load8(g), load8(u)));
    std::memcpy(out + i, o, sizeof(float) * (n - i));
  }
}
#if !defined(__clang__)
#pragma GCC pop_options
#endif
#undef KVZ_NO_FUSE

// A kernel's per-thread scratch of type T, made on the thread's first call. On the heap: a
// thread_local object or array would sit in the static TLS block that every thread of the
// process gets (a server's HTTP workers too: 685 KiB each before).
template <typename T>
T& thread_scratch() {
  thread_local std::unique_ptr<T> p;
  if (!p) p = std::make_unique<T>();
  return *p;
}

struct Scratch {
  alignas(32) float kt[kTile * kMaxD];
  alignas(32) float vt[kTile * kMaxD];
  alignas(32) float acc[kMaxRows * kMaxD];
  alignas(32) float s[kTile];
  alignas(32) float s2[kTile];  // the second row of a pair (KVZ_ATTN_PAIR_ROWS)
  float m[kMaxRows];
  float l[kMaxRows];
};

// Copies row i's scaled logits of keys [key0, key0 + n) that fall in the capture's ranges.
inline void capture_logits(const LogitCapture& cap, int i, int64_t key0, int n, const float* s) {
  for (int r = 0; r < cap.n_ranges; ++r) {
    const int64_t a = std::max(cap.lo[r], key0), b = std::min(cap.hi[r], key0 + n);
    if (a < b)
      std::memcpy(cap.out + i * cap.stride + cap.col[r] + (a - cap.lo[r]), s + (a - key0),
                  static_cast<size_t>(b - a) * sizeof(float));
  }
}

// Scores of keys [j0, n) of a tile for one row into s (scaled), eight at a time with dot8x8
// up to the last multiple of 8, the rest with dot8; tmax takes their maximum. j0 is a
// multiple of 8.
inline void score_rest(const float* qi, const float* kt, int j0, int n, int d, int nv, float scale, float* s,
                       float& tmax) {
  int j8 = j0;
  if (n - j0 >= 8) {
    v8f vmax = splat(-std::numeric_limits<float>::infinity());
    for (; j8 + 8 <= n; j8 += 8) {
      const v8f s8 = dot8x8(qi, kt + j8 * d, d) * splat(scale);
      store8(s + j8, s8);
      vmax = vmax > s8 ? vmax : s8;
    }
    tmax = std::max(tmax, hmax(vmax));
  }
  for (int j = j8; j < n; ++j) {
    const float sj = dot8(qi, kt + j * d, nv) * scale;
    s[j] = sj;
    tmax = std::max(tmax, sj);
  }
}

// The largest of a tile's n scores: eight lanes at a time, then the rest one by one.
inline float tile_max(const float* s, int n) {
  float tmax = -std::numeric_limits<float>::infinity();
  int i = 0;
  if (n >= 8) {
    v8f vmax = load8(s);
    for (i = 8; i + 8 <= n; i += 8) {
      const v8f x = load8(s + i);
      vmax = vmax > x ? vmax : x;
    }
    tmax = hmax(vmax);
  }
  for (; i < n; ++i) tmax = std::max(tmax, s[i]);
  return tmax;
}

// The factor a row's accumulator is rescaled by when its running max goes from m to m_new:
// exp(m - m_new). A max the tile did not raise gives exp(0) = 1 without the call (the same
// bits; most tiles of a long row do not raise it).
inline float online_corr(float m, float m_new) {
  return m_new == m && m > -std::numeric_limits<float>::infinity() ? 1.0f : std::exp(m - m_new);
}

// The online softmax step of one row over a tile's n scores (turned into probabilities in
// place): the running max m and sum l are updated; returns the factor the row's output
// accumulator is rescaled by (0 on its first tile, m = -inf).
inline float softmax_tile(float* s, int n, float tmax, float& m, float& l) {
  const float m_new = std::max(m, tmax);
  const float corr = online_corr(m, m_new);
  m = m_new;
  float psum = 0.0f;
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const v8f p = exp8(load8(s + j) - splat(m_new));
    store8(s + j, p);
    psum += hsum(p);
  }
  for (; j < n; ++j) {
    s[j] = std::exp(s[j] - m_new);
    psum += s[j];
  }
  l = l * corr + psum;
  return corr;
}

}  // namespace kvz::KVZ_ATTN_NS
#ifdef KVZ_ATTN_FULL_TILES
#include "kernels/x86_avx512/attention_tiles_avx512.h"
#endif
namespace kvz::KVZ_ATTN_NS {

inline void attend_head_impl(const float* q, int64_t q_stride, int n_rows, const int64_t* start,
                             const int64_t* limit, const void* k, const void* v, KvType kvt, int d,
                             float scale, float* out, int64_t out_stride, float* lse,
                             const LogitCapture* cap = nullptr) {
  const size_t rb = kv_row_bytes(kvt, d);
  const auto* kb = static_cast<const uint8_t*>(k);
  const auto* vb = static_cast<const uint8_t*>(v);
  Scratch& sc = thread_scratch<Scratch>();
  const int nv = d / 8;
  int64_t max_limit = 0;
  // Tiles cover [min start, max limit); each row clips them to its own [start, limit).
  int64_t min_start = start ? std::numeric_limits<int64_t>::max() : 0;
  for (int i = 0; i < n_rows; ++i) {
    max_limit = std::max(max_limit, limit[i]);
    if (start) min_start = std::min(min_start, start[i]);
    sc.m[i] = -std::numeric_limits<float>::infinity();
    sc.l[i] = 0.0f;
    std::memset(sc.acc + i * d, 0, sizeof(float) * d);
  }
  const int tile = tile_rows(d);
#ifdef KVZ_ATTN_FULL_TILES
  // Tiles every row sees whole, [max start, min limit), take the wide step (same bits).
  int64_t full_lo = 0, full_hi = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < n_rows; ++i) {
    full_hi = std::min(full_hi, limit[i]);
    if (start) full_lo = std::max(full_lo, start[i]);
  }
  TileScratch* ts = nullptr;
  if (n_rows >= 2 && full_tiles_fit(d) && full_hi - full_lo >= tile) {
    ts = &thread_scratch<TileScratch>();
    pack_query_pairs(q, q_stride, n_rows, d, ts->qp);
  }
#endif
  for (int64_t r0 = std::max<int64_t>(min_start, 0); r0 < max_limit; r0 += tile) {
    const int nt = static_cast<int>(std::min<int64_t>(tile, max_limit - r0));
#ifdef KVZ_ATTN_FULL_TILES
    if (ts && r0 >= full_lo && r0 + nt <= full_hi && nt % 8 == 0) {
      int n_tiles = 1;  // and the whole tiles after it, up to kTile keys
      while (nt == tile && (n_tiles + 1) * tile <= kTile && r0 + int64_t{n_tiles + 1} * tile <= full_hi) ++n_tiles;
      cvt_rows(kvt, kb + r0 * rb, sc.kt, int64_t{n_tiles} * nt, d);
      cvt_rows(kvt, vb + r0 * rb, sc.vt, int64_t{n_tiles} * nt, d);
      attend_full_tiles(*ts, sc, n_rows, d, scale, sc.kt, sc.vt, nt, n_tiles, r0, cap);
      r0 += int64_t{n_tiles - 1} * tile;
      continue;
    }
#endif
    cvt_rows(kvt, kb + r0 * rb, sc.kt, nt, d);
    cvt_rows(kvt, vb + r0 * rb, sc.vt, nt, d);
    for (int i = 0; i < n_rows; ++i) {
      // this row's keys in the tile: [lo, lo + n)
      const int lo = start ? static_cast<int>(std::clamp<int64_t>(start[i] - r0, 0, nt)) : 0;
      const int n = static_cast<int>(std::min<int64_t>(nt, limit[i] - r0)) - lo;
      if (n <= 0) continue;
      const float* kt = sc.kt + static_cast<int64_t>(lo) * d;
      const float* vt = sc.vt + static_cast<int64_t>(lo) * d;
#ifdef KVZ_ATTN_PAIR_ROWS
      // Rows i and i + 1 with the same first key (most of a prefill block) share the key and
      // value loads where both see the keys; each row's arithmetic is the single row's.
      if (i + 1 < n_rows) {
        const int lo1 = start ? static_cast<int>(std::clamp<int64_t>(start[i + 1] - r0, 0, nt)) : 0;
        const int n1 = static_cast<int>(std::min<int64_t>(nt, limit[i + 1] - r0)) - lo1;
        if (lo1 == lo && n1 > 0) {
          const int nb = std::min(n, n1) / 8 * 8;  // keys both score eight at a time
          float tmax0 = -std::numeric_limits<float>::infinity(), tmax1 = tmax0;
          if (nb > 0) {
            v8f vmax0 = splat(-std::numeric_limits<float>::infinity()), vmax1 = vmax0;
            for (int j8 = 0; j8 < nb; j8 += 8) {
              v8f s0, s1;
              dot8x8_2(q + i * q_stride, q + (i + 1) * q_stride, kt + j8 * d, d, s0, s1);
              s0 *= splat(scale);
              s1 *= splat(scale);
              store8(sc.s + j8, s0);
              store8(sc.s2 + j8, s1);
              vmax0 = vmax0 > s0 ? vmax0 : s0;
              vmax1 = vmax1 > s1 ? vmax1 : s1;
            }
            tmax0 = hmax(vmax0);
            tmax1 = hmax(vmax1);
          }
          score_rest(q + i * q_stride, kt, nb, n, d, nv, scale, sc.s, tmax0);
          score_rest(q + (i + 1) * q_stride, kt, nb, n1, d, nv, scale, sc.s2, tmax1);
          if (cap) {
            capture_logits(*cap, i, r0 + lo, n, sc.s);
            capture_logits(*cap, i + 1, r0 + lo, n1, sc.s2);
          }
          const float corr0 = softmax_tile(sc.s, n, tmax0, sc.m[i], sc.l[i]);
          const float corr1 = softmax_tile(sc.s2, n1, tmax1, sc.m[i + 1], sc.l[i + 1]);
          const int nc = std::min(n, n1);
          accumulate_pv2_all(sc.acc + i * d, sc.acc + (i + 1) * d, corr0, corr1, sc.s, sc.s2, nc, vt, d);
          // the longer row's last keys on its own (acc * 1 is acc: the same sums in order)
          if (n > nc) accumulate_pv_all(sc.acc + i * d, 1.0f, sc.s + nc, n - nc, vt + static_cast<int64_t>(nc) * d, d);
          if (n1 > nc)
            accumulate_pv_all(sc.acc + (i + 1) * d, 1.0f, sc.s2 + nc, n1 - nc, vt + static_cast<int64_t>(nc) * d, d);
          ++i;
          continue;
        }
      }
#endif
      const float* qi = q + i * q_stride;
      // scores of this tile, eight keys at a time
      float tmax = -std::numeric_limits<float>::infinity();
      score_rest(qi, kt, 0, n, d, nv, scale, sc.s, tmax);
      if (cap) capture_logits(*cap, i, r0 + lo, n, sc.s);
      const float corr = softmax_tile(sc.s, n, tmax, sc.m[i], sc.l[i]);
      accumulate_pv_all(sc.acc + i * d, corr, sc.s, n, vt, d);
    }
  }
  for (int i = 0; i < n_rows; ++i) {
    float* oi = out + i * out_stride;
    const float inv = sc.l[i] > 0.0f ? 1.0f / sc.l[i] : 0.0f;
    for (int c = 0; c < d; ++c) oi[c] = sc.acc[i * d + c] * inv;
    if (lse) lse[i] = sc.l[i] > 0.0f ? sc.m[i] + std::log(sc.l[i]) : -std::numeric_limits<float>::infinity();
  }
}

}  // namespace kvz::KVZ_ATTN_NS

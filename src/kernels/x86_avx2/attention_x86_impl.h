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
#include <type_traits>

#include "core/fp16.h"

namespace kvz::KVZ_ATTN_NS {
inline void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#endif
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}
// A GGUF Q8_0 block (f16 scale, 32 int8): its scale's bits, and the scale as f32.
inline int16_t q8_scale_bits(const uint8_t* blk) {
  int16_t h;
  std::memcpy(&h, blk, 2);
  return h;
}
inline float q8_block_scale(const uint8_t* blk) { return _cvtsh_ss(static_cast<uint16_t>(q8_scale_bits(blk))); }
// Q8_0 blocks -> f32: sign-extend 8 bytes at a time, convert, scale.
inline void cvt_q8_0_f32(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
    const __m256 d = _mm256_set1_ps(q8_block_scale(src));
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

// Decode attention over a segment for R query rows that see the same keys [k0, k1) (one KV
// head's group in a decode step). Unlike attend_head_impl it converts K and V in registers
// (no f32 tile written and read back through L1) and makes every converted key or value
// vector feed all R rows: per key, d/8 loads and conversions of K and of V, and 2 * R * d/8
// FMAs. Same online softmax, exp and accumulation order per row as attend_head_impl, and
// the same f32 values of K and V (the row formats below convert as cvt_rows does), so over
// f16 rows its results are bitwise the general kernel's. Over q8_0 rows the scores are
// integer dot products with the query rounded to 8 bits (QuantRow below), so they differ
// from the general kernel's by that rounding; the values are converted as cvt_rows does.

// The row formats: 8 values at column c of a row as f32, in 32-column spans (a q8_0 block)
// whose scale is read once per span.
struct F16Rows {
  static size_t bytes(int d) { return static_cast<size_t>(d) * 2; }
  struct Span {
    const uint8_t* row;
    v8f at(int c) const {
      return reinterpret_cast<v8f>(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + static_cast<size_t>(c) * 2))));
    }
  };
  static Span span(const uint8_t* row, int) { return {row}; }
#ifdef __AVX512F__
  // 32 values from column c as f32 in two halves (per lane what `at` gives)
  static void at32(const uint8_t* row, int c, __m512* out) {
    for (int h = 0; h < 2; ++h)
      out[h] = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + static_cast<size_t>(c + 16 * h) * 2)));
  }
#endif
};
// GGUF Q8_0: per 32 values an f16 scale then 32 int8; value = scale * q (one f32 multiply,
// as cvt_q8_0_f32).
struct Q8Rows {
  static size_t bytes(int d) { return static_cast<size_t>(d / 32) * 34; }
  struct Span {
    const uint8_t* blk;  // the span's block
    __m256 d;
    int c0;
    v8f at(int c) const {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + (c - c0)));
      return reinterpret_cast<v8f>(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
    }
  };
  static Span span(const uint8_t* row, int c0) {
    const uint8_t* blk = row + static_cast<size_t>(c0 / 32) * 34;
    return {blk, _mm256_set1_ps(q8_block_scale(blk)), c0};
  }
#ifdef __AVX512F__
  // 32 values from column c (c % 32 == 0: one block) as f32 in two halves: per lane the same
  // sign extension, conversion and one multiply by the block's scale as `at`
  static void at32(const uint8_t* row, int c, __m512* out) {
    const uint8_t* blk = row + static_cast<size_t>(c / 32) * 34;
    const __m512 d = _mm512_set1_ps(q8_block_scale(blk));
    for (int h = 0; h < 2; ++h) {
      const __m128i q8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + 16 * h));
      out[h] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8)));
    }
  }
#endif
};

// Decode scores over q8_0 keys in integers (the way llama.cpp's q8_0 dot product works):
// each query row is rounded once per call to 8 bits per 32-value block (its own f32 scale
// max|q| / 127, q8_0's rule), so the 32 products of a key block are one VNNI vpdpbusd
// (AVX2: vpmaddubsw + vpmaddwd) over the key's bytes as stored, exact in int32, and the
// floats come in once per (row, key, block): I_b * (dq_b * dk_b), summed over the blocks in
// order with FMA from 0. Exact integers and the same float steps make the AVX2 and AVX-512 builds
// bitwise equal; against the general kernel (f32 queries times keys converted to f32) each
// logit moves by the query's rounding, at most sum_b dq_b / 2 * dk_b * sum_i |k_bi|
// (test_attention: Q8DecodeScoresAreTheRoundedQuery's).
struct QuantRow {
  alignas(32) int8_t q[kMaxD];
  float dq[kMaxD / 32];
  int32_t bias[kMaxD / 32];  // -128 * sum of the block's q (q8_dots16's unsigned keys)
};
inline void quantize_query(const float* x, int d, QuantRow& out) {
  for (int b = 0; b < d / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    const float dq = amax / 127.0f;
    const float inv = dq > 0.0f ? 1.0f / dq : 0.0f;
    out.dq[b] = dq;
    // x * inv rounded to nearest-even (vcvtps2dq under the default MXCSR, as lrintf), |q| <= 127
    const __m256 vi = _mm256_set1_ps(inv);
    __m256i q[4];
    for (int u = 0; u < 4; ++u) q[u] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * b + 8 * u), vi));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out.q + 32 * b),
                       _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) sum += out.q[32 * b + i];
    out.bias[b] = -128 * sum;
  }
}
// Eight int32 lanes of sum_i q_i k_i over 32 pairs: |k| as the unsigned operand (128 for a
// stored -128 too) and q carrying k's sign (|q| <= 127, so no lane of vpmaddubsw saturates:
// 2 * 128 * 127 < 32768).
inline __m256i dot_q8_block(__m256i k_abs, __m256i q_signed) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), k_abs, q_signed);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(k_abs, q_signed), _mm256_set1_epi16(1));
#endif
}
inline __m256i load_q8_quants(const uint8_t* blk) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
}
inline int32_t hsum_i32(__m256i x) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Four keys (j..j+3) for R rows: per block, 4 x R integer dot products reduced to one sum
// per (row, key), then the float step for the four keys at once.
template <int R>
inline void q8_dots4(const QuantRow* const* qr, const uint8_t* k, size_t rb, int d, float scale, float (*s)[kTile],
                     int j) {
  __m128 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm_setzero_ps();
  for (int b = 0; b < d / 32; ++b) {
    const size_t off = static_cast<size_t>(b) * 34;
    __m256i I[R][4];
    for (int u = 0; u < 4; ++u) {
      const __m256i kq = load_q8_quants(k + u * rb + off);
      const __m256i ka = _mm256_abs_epi8(kq);
      for (int r = 0; r < R; ++r)
        I[r][u] = dot_q8_block(
            ka, _mm256_sign_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(qr[r]->q + 32 * b)), kq));
    }
    const __m128 dk = _mm_cvtph_ps(_mm_setr_epi16(q8_scale_bits(k + off), q8_scale_bits(k + rb + off),
                                                  q8_scale_bits(k + 2 * rb + off), q8_scale_bits(k + 3 * rb + off), 0,
                                                  0, 0, 0));
    for (int r = 0; r < R; ++r) {
      // lanes of the four sums: hadd twice, then the two 128-bit halves
      const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(I[r][0], I[r][1]), _mm256_hadd_epi32(I[r][2], I[r][3]));
      const __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      const __m128 w = _mm_mul_ps(_mm_set1_ps(qr[r]->dq[b]), dk);
      acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(sum), w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm_storeu_ps(s[r] + j, _mm_mul_ps(acc[r], _mm_set1_ps(scale)));
}

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
// Sixteen keys (j..j+15) for R rows without a horizontal reduction: per block the keys'
// 32-byte quants are transposed so that one zmm holds 4 bytes of each of the 16 keys
// (register c: bytes 4c..4c+3), and each vpdpbusd with 4 bytes of a query row broadcast adds
// 4 products per key, lane = key. vpdpbusd wants one operand unsigned: the keys go in as
// k + 128 (k ^ 0x80) and the row's bias -128 * sum(q) starts the sum. Sums stay exact in
// int32 (|sum| < 32 * 255 * 127 + 128 * 32 * 127), so every key gets the integer q8_dots4
// gets, then the same float steps per block: the same bits as the AVX2 build.
//
// The transpose: register p starts with keys p (lanes 0-7) and p + 8 (lanes 8-15), dword c
// in lane c; the register index holds key bits 2..0, lane bit 3 key bit 3, lane bits 2..0
// the dword. Stage i swaps register bit i with lane bit i (vpermt2d on the register pair that
// differs in bit i), after three stages register c holds dword c of key = lane.
struct Q8TransposeIdx {
  alignas(64) int32_t lo[3][16];  // per stage: the index for the pair's register with bit i clear
  alignas(64) int32_t hi[3][16];  // ... and with bit i set
};
constexpr Q8TransposeIdx make_q8_transpose_idx() {
  Q8TransposeIdx t{};
  for (int i = 0; i < 3; ++i)
    for (int l = 0; l < 16; ++l) {
      const int bit = 1 << i;
      t.lo[i][l] = (l & bit) ? 16 + (l & ~bit) : l;
      t.hi[i][l] = (l & bit) ? 16 + l : (l | bit);
    }
  return t;
}
inline constexpr Q8TransposeIdx kQ8TransposeIdx = make_q8_transpose_idx();
template <int R>
inline void q8_dots16(const QuantRow* const* qr, const uint8_t* k, size_t rb, int d, float scale, float (*s)[kTile],
                      int j) {
  __m512i tlo[3], thi[3];
  for (int i = 0; i < 3; ++i) {
    tlo[i] = _mm512_load_si512(kQ8TransposeIdx.lo[i]);
    thi[i] = _mm512_load_si512(kQ8TransposeIdx.hi[i]);
  }
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i key_off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(static_cast<int>(rb)));
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int b = 0; b < d / 32; ++b) {
    const size_t off = static_cast<size_t>(b) * 34;
    __m512i z[8];
    for (int p = 0; p < 8; ++p) {
      const __m512i lo = _mm512_castsi256_si512(load_q8_quants(k + p * rb + off));
      z[p] = _mm512_xor_si512(_mm512_inserti64x4(lo, load_q8_quants(k + (p + 8) * rb + off), 1), flip);
    }
    for (int i = 0; i < 3; ++i)
      for (int p = 0; p < 8; ++p) {
        if (p & (1 << i)) continue;
        const __m512i a = z[p], c = z[p | (1 << i)];
        z[p] = _mm512_permutex2var_epi32(a, tlo[i], c);
        z[p | (1 << i)] = _mm512_permutex2var_epi32(a, thi[i], c);
      }
    // the 16 keys' scales: 4 bytes at each block's start, the low 2 the f16 scale
    const __m512 dk = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(key_off, k + off, 1)));
    for (int r = 0; r < R; ++r) {
      const int8_t* qb = qr[r]->q + 32 * b;
      __m512i sum = _mm512_set1_epi32(qr[r]->bias[b]);
      for (int c = 0; c < 8; ++c) {
        int32_t q4;
        std::memcpy(&q4, qb + 4 * c, 4);
        sum = _mm512_dpbusd_epi32(sum, z[c], _mm512_set1_epi32(q4));
      }
      const __m512 w = _mm512_mul_ps(_mm512_set1_ps(qr[r]->dq[b]), dk);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(s[r] + j, _mm512_mul_ps(acc[r], _mm512_set1_ps(scale)));
}
#endif

// One key for R rows, the same integers and float steps as q8_dots4.
template <int R>
inline void q8_dot1(const QuantRow* const* qr, const uint8_t* kj, int d, float scale, float (*s)[kTile], int j) {
  float acc[R] = {};
  for (int b = 0; b < d / 32; ++b) {
    const uint8_t* blk = kj + static_cast<size_t>(b) * 34;
    const __m256i kq = load_q8_quants(blk);
    const __m256i ka = _mm256_abs_epi8(kq);
    const float dk = q8_block_scale(blk);
    for (int r = 0; r < R; ++r) {
      const auto sum = static_cast<float>(hsum_i32(dot_q8_block(
          ka, _mm256_sign_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(qr[r]->q + 32 * b)), kq))));
      const float w = qr[r]->dq[b] * dk;
      acc[r] = std::fma(sum, w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) s[r][j] = acc[r] * scale;
}

// Four dot products per row (keys j..j+3): R x 4 accumulators, q from memory.
template <class Fmt, int R>
inline void dots4(const float* const* qr, const uint8_t* k, size_t rb, int d, float scale, float (*s)[kTile], int j) {
  v8f a[R][4];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < 4; ++u) a[r][u] = splat(0.0f);
  for (int c0 = 0; c0 < d; c0 += 32) {
    typename Fmt::Span sp[4];
    for (int u = 0; u < 4; ++u) sp[u] = Fmt::span(k + u * rb, c0);
    const int c1 = std::min(c0 + 32, d);
    for (int c = c0; c < c1; c += 8) {
      v8f kv[4];
      for (int u = 0; u < 4; ++u) kv[u] = sp[u].at(c);
      for (int r = 0; r < R; ++r) {
        const v8f qc = load8(qr[r] + c);
        for (int u = 0; u < 4; ++u) a[r][u] += qc * kv[u];
      }
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

// One key's dot product per row as dot8 sums it (two alternating accumulators).
template <class Fmt, int R>
inline void dot1(const float* const* qr, const uint8_t* kj, int d, float scale, float (*s)[kTile], int j) {
  for (int r = 0; r < R; ++r) {
    v8f a0 = splat(0.0f), a1 = splat(0.0f);
    int c = 0;
    for (; c + 16 <= d; c += 16) {
      a0 += load8(qr[r] + c) * Fmt::span(kj, c / 32 * 32).at(c);
      a1 += load8(qr[r] + c + 8) * Fmt::span(kj, (c + 8) / 32 * 32).at(c + 8);
    }
    if (c < d) a0 += load8(qr[r] + c) * Fmt::span(kj, c / 32 * 32).at(c);
    s[r][j] = hsum(a0 + a1) * scale;
  }
}

// acc[r][c0, c0 + 8U) = acc * corr[r] + sum_i s[r][i] * V[i][c0, c0 + 8U), in registers.
template <class Fmt, int R, int U>
inline void pv_pass(float (*acc)[kMaxD], int c0, const float* corr, const float (*s)[kTile], int n,
                    const uint8_t* vt, size_t rb) {
  v8f a[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) a[r][u] = load8(acc[r] + c0 + 8 * u) * splat(corr[r]);
  const uint8_t* vi = vt;
  for (int i = 0; i < n; ++i, vi += rb) {
    v8f vv[U];
    typename Fmt::Span sp = Fmt::span(vi, c0 / 32 * 32);
    for (int u = 0; u < U; ++u) {
      const int c = c0 + 8 * u;
      if (c % 32 == 0 && u > 0) sp = Fmt::span(vi, c);
      vv[u] = sp.at(c);
    }
    for (int r = 0; r < R; ++r) {
      const v8f p = splat(s[r][i]);
      for (int u = 0; u < U; ++u) a[r][u] += p * vv[u];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) store8(acc[r] + c0 + 8 * u, a[r][u]);
}

#ifdef __AVX512F__
// pv_pass in 16-lane vectors: per lane the same multiply by corr, value conversion and one
// FMA per key in key order as the 8-lane pass, so the same bits in half the instructions
// (what a lane computes does not depend on the vector's width).
// U counts 16-lane vectors, in pairs (a pair is one 32-column span of the row format).
template <class Fmt, int R, int U>
inline void pv_pass16(float (*acc)[kMaxD], int c0, const float* corr, const float (*s)[kTile], int n,
                      const uint8_t* vt, size_t rb) {
  static_assert(U % 2 == 0);
  typedef float v16f __attribute__((vector_size(64)));
  v16f a[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u)
      a[r][u] = reinterpret_cast<v16f>(_mm512_loadu_ps(acc[r] + c0 + 16 * u)) *
                reinterpret_cast<v16f>(_mm512_set1_ps(corr[r]));
  const uint8_t* vi = vt;
  for (int i = 0; i < n; ++i, vi += rb) {
    __m512 vv[U];
    for (int u = 0; u < U; u += 2) Fmt::at32(vi, c0 + 16 * u, vv + u);
    for (int r = 0; r < R; ++r) {
      const v16f p = reinterpret_cast<v16f>(_mm512_set1_ps(s[r][i]));
      for (int u = 0; u < U; ++u) a[r][u] += p * reinterpret_cast<v16f>(vv[u]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) _mm512_storeu_ps(acc[r] + c0 + 16 * u, reinterpret_cast<__m512>(a[r][u]));
}
#endif

// pv_pass over every value chunk for RC rows: U chunks of 8 per pass, then single chunks
// (AVX-512: chunks of 16 first). RC * U accumulators + U values + 1 broadcast must fit the
// register file (a spilled accumulator costs a store-forward chain per key).
template <class Fmt, int RC>
inline void pv_chunk(float (*acc)[kMaxD], const float* corr, const float (*s)[kTile], int n, const uint8_t* vt,
                     size_t rb, int d) {
  constexpr int kU = RC <= 2 ? KVZ_ATTN_PV_U_NARROW : KVZ_ATTN_PV_U_WIDE;
  int c0 = 0;
#ifdef __AVX512F__
  for (; c0 + 16 * kU <= d; c0 += 16 * kU) pv_pass16<Fmt, RC, kU>(acc, c0, corr, s, n, vt, rb);
  if constexpr (kU >= 4)  // e.g. 64 columns for the narrow passes' 128
    for (; c0 + 8 * kU <= d; c0 += 8 * kU) pv_pass16<Fmt, RC, kU / 2>(acc, c0, corr, s, n, vt, rb);
  for (; c0 + 32 <= d; c0 += 32) pv_pass16<Fmt, RC, 2>(acc, c0, corr, s, n, vt, rb);
#endif
  for (; c0 + 8 * kU <= d; c0 += 8 * kU) pv_pass<Fmt, RC, kU>(acc, c0, corr, s, n, vt, rb);
  for (; c0 < d; c0 += 8) pv_pass<Fmt, RC, 1>(acc, c0, corr, s, n, vt, rb);
}
// Rows in chunks of KVZ_ATTN_PV_ROWS (a V vector converted once feeds them all), the rest.
template <class Fmt, int R>
inline void pv_rows(float (*acc)[kMaxD], const float* corr, const float (*s)[kTile], int n, const uint8_t* vt,
                    size_t rb, int d) {
  int r = 0;
  constexpr int kRC = KVZ_ATTN_PV_ROWS;
  for (; r + kRC <= R; r += kRC) pv_chunk<Fmt, kRC>(acc + r, corr + r, s + r, n, vt, rb, d);
  if constexpr (R % kRC != 0) pv_chunk<Fmt, R % kRC>(acc + r, corr + r, s + r, n, vt, rb, d);
}

template <class Fmt, int R>
void attend_decode(const float* q, int64_t q_stride, int64_t k0, int64_t k1, const uint8_t* K, const uint8_t* V,
                   int d, float scale, float* out, int64_t out_stride, float* lse) {
  struct Buf {
    alignas(32) float acc[R][kMaxD];
    alignas(32) float s[R][kTile];
    QuantRow qrow[R];  // q8_0 keys: the rows rounded to 8 bits
  };
  Buf& buf = thread_scratch<Buf>();
  auto& acc = buf.acc;
  auto& s = buf.s;
  const size_t rb = Fmt::bytes(d);
  float m[R], l[R];
  const float* qr[R];
  const QuantRow* qq[R];
  for (int r = 0; r < R; ++r) {
    qr[r] = q + r * q_stride;
    qq[r] = &buf.qrow[r];
    if constexpr (std::is_same_v<Fmt, Q8Rows>) quantize_query(qr[r], d, buf.qrow[r]);
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
    std::memset(acc[r], 0, sizeof(float) * d);
  }
  // The tiles, maxima, exponentials, sums and products of attend_head_impl in the same order
  // (tile_rows(d) keys per online-softmax step, per-8 partial sums added in turn), so over
  // f16 rows a decode step gives bitwise what the general kernel gave: batched and
  // incremental forward passes, and the greedy continuations checked against llama.cpp, do
  // not move. (q8_0 rows: integer scores, see QuantRow.)
  const int tile = tile_rows(d);
  for (int64_t t0 = k0; t0 < k1; t0 += tile) {
    const int n = static_cast<int>(std::min<int64_t>(tile, k1 - t0));
    const uint8_t* kt = K + t0 * rb;
    const uint8_t* vt = V + t0 * rb;
    // Keys in groups of 4 up to the last multiple of 8 (per key the sum order of dot8x8),
    // the rest one by one as dot8 sums them (two alternating accumulators). 4 keys x at most
    // 2 rows per sweep keep 8 accumulators + 4 keys + q in registers (4 x 3 spilled one).
    constexpr int kDR = KVZ_ATTN_DOT_ROWS;
    if constexpr (std::is_same_v<Fmt, Q8Rows>) {
      const int n4 = n / 4 * 4;
      int j = 0;
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
      for (; j + 16 <= n; j += 16) q8_dots16<R>(qq, kt + j * rb, rb, d, scale, s, j);
#endif
      for (; j < n4; j += 4) {
        int r = 0;
        for (; r + kDR <= R; r += kDR) q8_dots4<kDR>(qq + r, kt + j * rb, rb, d, scale, s + r, j);
        if constexpr (R % kDR != 0) q8_dots4<R % kDR>(qq + r, kt + j * rb, rb, d, scale, s + r, j);
      }
      for (; j < n; ++j) q8_dot1<R>(qq, kt + j * rb, d, scale, s, j);
    } else {
      const int n8 = n / 8 * 8;
      for (int j = 0; j < n8; j += 4) {
        int r = 0;
        for (; r + kDR <= R; r += kDR) dots4<Fmt, kDR>(qr + r, kt + j * rb, rb, d, scale, s + r, j);
        if constexpr (R % kDR != 0) dots4<Fmt, R % kDR>(qr + r, kt + j * rb, rb, d, scale, s + r, j);
      }
      for (int j = n8; j < n; ++j) dot1<Fmt, R>(qr, kt + j * rb, d, scale, s, j);
    }
    float corr[R];
    for (int r = 0; r < R; ++r) corr[r] = softmax_tile(s[r], n, tile_max(s[r], n), m[r], l[r]);
    // acc = acc * corr + P V
    pv_rows<Fmt, R>(acc, corr, s, n, vt, rb, d);
  }
  for (int r = 0; r < R; ++r) {
    float* o = out + r * out_stride;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int c = 0; c < d; ++c) o[c] = acc[r][c] * inv;
    if (lse) lse[r] = l[r] > 0.0f ? m[r] + std::log(l[r]) : -std::numeric_limits<float>::infinity();
  }
}

template <class Fmt>
inline void attend_decode_rows(int n_rows, const float* q, int64_t q_stride, int64_t k0, int64_t k1, const uint8_t* K,
                               const uint8_t* V, int d, float scale, float* out, int64_t out_stride, float* lse) {
  switch (n_rows) {
    case 1: return attend_decode<Fmt, 1>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 2: return attend_decode<Fmt, 2>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 3: return attend_decode<Fmt, 3>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 4: return attend_decode<Fmt, 4>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 5: return attend_decode<Fmt, 5>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 6: return attend_decode<Fmt, 6>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    case 7: return attend_decode<Fmt, 7>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    default: return attend_decode<Fmt, 8>(q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
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
  if (n_rows >= 1 && n_rows <= 8 && d % 8 == 0 && d <= kMaxD && same_keys(n_rows, start, limit)) {
    const int64_t k0 = start ? std::max<int64_t>(start[0], 0) : 0, k1 = limit[0];
    const auto* K = static_cast<const uint8_t*>(k);
    const auto* V = static_cast<const uint8_t*>(v);
    if (kt == KvType::F16) return attend_decode_rows<F16Rows>(n_rows, q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
    if (d % 32 == 0) return attend_decode_rows<Q8Rows>(n_rows, q, q_stride, k0, k1, K, V, d, scale, out, out_stride, lse);
  }
  attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}

}  // namespace kvz::KVZ_ATTN_NS

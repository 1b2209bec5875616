// AVX2 matmul kernels. Integer dot products follow ggml's scheme (ggml-cpu/arch/x86/quants.c):
// weights unpacked to bytes, _mm256_maddubs_epi16 (u8 x s8 -> i16 pairs), _mm256_madd_epi16
// to i32, one f32 FMA per 32-element block with the product of the two block scales.
//
// Register tiling: a tile of R weight rows x C tokens keeps R*C f32 accumulators; each
// weight block is unpacked once and reused for C tokens, each activation block is loaded
// once and reused for R rows. Every output is produced by the same instruction sequence
// for any (R, C), so results are independent of tiling, batch size and thread split.
//
// Unsigned weights (Q4_*, Q5_*) multiply directly with maddubs; their offset (Q4_1/Q5_1
// min m, or -8d / -16d for Q4_0 / Q5_0) contributes m * s per block, where s = d_x * sum(q_x)
// comes with the activations. Those terms are added 8 blocks at a time with one FMA of
// the row's 8 m values against the token's 8 s values (blocks.h keeps s contiguous).
// Nothing here may use functions defined in shared headers unless they are inlined:
// an out-of-line copy compiled with AVX2 could be picked by the linker for ref code.
//
// Not a standalone header: the body of the x86 integer kernels, compiled once per ISA like
// kernels/attention_impl.h. The includer defines KVZ_QUANT_NS (namespace), KVZ_QUANT_VNNI
// (1: AVX-512 VNNI dot products on ymm registers, needs -mavx512vl -mavx512vnni) and
// KVZ_QUANT_CMAX (widest prefill tile in tokens of the 32-element block types),
// KVZ_QUANT_KC45 / KVZ_QUANT_KC6 (tokens per Q4_K/Q5_K and Q6_K tile), KVZ_QUANT_KQ4R
// (tokens per tile of the row-interleaved Q4_K layout), then calls
// fill_common<R, C>.
#include "kernels/x86_intrin.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/dispatch.h"

namespace kvz::KVZ_QUANT_NS {

namespace {

using namespace kvz::blk;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// Per 32-bit lane, the sum of its four u8 x s8 byte products. AVX2: maddubs to i16 pairs,
// then madd with ones; VNNI: one vpdpbusd. Equal bit for bit: no pair sum here reaches
// maddubs' i16 saturation (weights are at most 6-bit unsigned or |q| <= 128 after sign,
// activations |q| <= 127).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if KVZ_QUANT_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// acc + madd(p, s): i16 pairs times i16 scales summed into i32 lanes (VNNI: one vpdpwssd).
inline __m256i madd_acc(__m256i acc, __m256i p, __m256i s) {
#if KVZ_QUANT_VNNI
  return _mm256_dpwssd_epi32(acc, p, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
#endif
}

inline float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// The lane sums of a, b, c, d as out[0..3]: exact integers, the same as four hsum_i32 calls
// in a third of the instructions (K-quant tiles reduce two vectors per token and block).
inline void hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d, int* out) {
  const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1)));
}
// For each of C tokens the lane sums of x[t] and y[t]: xs[t], ys[t].
template <int C>
inline void hsum_pairs_i32(const __m256i* x, const __m256i* y, int* xs, int* ys) {
  int t = 0;
  for (; t + 2 <= C; t += 2) {
    int r[4];
    hsum4_i32(x[t], y[t], x[t + 1], y[t + 1], r);
    xs[t] = r[0], ys[t] = r[1], xs[t + 1] = r[2], ys[t + 1] = r[3];
  }
  if (t < C) {
    int r[4];
    hsum4_i32(x[t], y[t], _mm256_setzero_si256(), _mm256_setzero_si256(), r);
    xs[t] = r[0], ys[t] = r[1];
  }
}

// 16 packed bytes -> 32 nibbles: bytes 0..15 the low nibbles, 16..31 the high nibbles
// (the element order of Q4_0 / Q4_1 / Q5_* blocks).
// One broadcast load (no ALU uop) and a per-lane variable shift instead of shift + insert.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
}

// Byte j = 0x10 if bit j of the 32-bit little-endian qh is set, else 0.
inline __m256i qh_bits32(const uint8_t* qh4) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
#if KVZ_QUANT_VNNI  // AVX512BW: the 32 bits are a byte mask
  return _mm256_maskz_mov_epi8(static_cast<__mmask32>(qh), _mm256_set1_epi8(0x10));
#endif
  const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

// Weight traits of the 32-element block types: q(b) the 32 quants (u8, or s8 if kSigned)
// with x = d * q + m; m is the block's fp16 field if kMinField, else kOffset * d.
struct WQ4_0 {
  using B = Q4_0;
  static constexpr bool kSigned = false, kHasMin = true, kMinField = false;
  static constexpr float kOffset = -8.f;
  static __m256i q(const B* b) { return nibbles32(b->qs); }
};
struct WQ4_1 {
  using B = Q4_1;
  static constexpr bool kSigned = false, kHasMin = true, kMinField = true;
  static constexpr float kOffset = 0.f;
  static __m256i q(const B* b) { return nibbles32(b->qs); }
};
struct WQ5_0 {
  using B = Q5_0;
  static constexpr bool kSigned = false, kHasMin = true, kMinField = false;
  static constexpr float kOffset = -16.f;
  static __m256i q(const B* b) { return _mm256_or_si256(nibbles32(b->qs), qh_bits32(b->qh)); }
};
struct WQ5_1 {
  using B = Q5_1;
  static constexpr bool kSigned = false, kHasMin = true, kMinField = true;
  static constexpr float kOffset = 0.f;
  static __m256i q(const B* b) { return _mm256_or_si256(nibbles32(b->qs), qh_bits32(b->qh)); }
};
struct WQ8_0 {
  using B = Q8_0;
  static constexpr bool kSigned = true, kHasMin = false, kMinField = false;
  static constexpr float kOffset = 0.f;
  static __m256i q(const B* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)); }
};

// The first 4 bytes (d, and m for Q4_1 / Q5_1) of up to 8 consecutive blocks, one block
// per 32-bit lane; lanes >= ng are 0 and not read. Plain loads, no vpgatherdd: on Zen a
// gather is microcoded, and as the first touch of each weight line it also absorbed the
// DRAM misses serially (it was half of decode time).
// I: blocks are I * sizeof(B) bytes apart (1 row-major, kInterleaveRows interleaved).
template <class B, int I = 1>
inline __m256i load_heads(const B* b, int ng) {
  constexpr int kS = sizeof(B) * I;
  const auto* p = reinterpret_cast<const uint8_t*>(b);
  if (ng == 8) {
    if constexpr (kS == 20) {
      // Q4_1: the 32 bytes at 40k hold head 2k in dword 0 and head 2k+1 in dword 5.
      // The blend mask must be an immediate: one call per pair of lanes.
      const __m256i idx = _mm256_setr_epi32(0, 5, 0, 5, 0, 5, 0, 5);
      auto pair = [&](int k) {
        return _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 40 * k)), idx);
      };
      __m256i v = _mm256_blend_epi32(_mm256_setzero_si256(), pair(0), 0x03);
      v = _mm256_blend_epi32(v, pair(1), 0x0C);
      v = _mm256_blend_epi32(v, pair(2), 0x30);
      return _mm256_blend_epi32(v, pair(3), 0xC0);
    } else {
      uint32_t h[8];
      for (int j = 0; j < 8; ++j) std::memcpy(&h[j], p + j * kS, 4);
      return _mm256_setr_epi32(static_cast<int>(h[0]), static_cast<int>(h[1]), static_cast<int>(h[2]),
                               static_cast<int>(h[3]), static_cast<int>(h[4]), static_cast<int>(h[5]),
                               static_cast<int>(h[6]), static_cast<int>(h[7]));
    }
  }
  alignas(32) uint32_t h[8] = {};
  for (int j = 0; j < ng; ++j) std::memcpy(&h[j], p + j * kS, 4);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(h));
}
// fp16 in the low / high 16 bits of each 32-bit lane -> 8 x f32.
inline __m256 half_lo_to_ps(__m256i v) {
  const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
  return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1)));
}
inline __m256 half_hi_to_ps(__m256i v) {
  const __m256i hi = _mm256_srli_epi32(v, 16);
  return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)));
}

// Software prefetch distance of the decode tiles, in weight rows (4 tiles ahead; 4..32
// measured within noise of each other, none is worse than no prefetch).
constexpr int kPrefetchRows = 16;

// One R x C tile over the whole row: y[c * ldy + r] = dot(w row r, x row c). Block ib of
// row r is wr[r][ib * I]: I = 1 row-major (rows ws bytes apart), I = kInterleaveRows the
// interleaved layout (w at a group start, rows ws = sizeof(B) apart).
template <class W, int R, int C, int I = 1>
void tile_q8a(int64_t n_in, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy) {
  using B = typename W::B;
  const int64_t nb = n_in / kQK;
  const B* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const B*>(w + r * ws);
  Q8ARow xr[C];
  for (int c = 0; c < C; ++c) xr[c] = q8a_row(x + c * xs, n_in);

  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();

  for (int64_t b0 = 0; b0 < nb; b0 += 8) {
    const int ng = nb - b0 < 8 ? static_cast<int>(nb - b0) : 8;
    // Scales (and offsets) of the R rows for this group of up to 8 blocks, as f32;
    // lanes past the last block are 0 (the token's s is 0-padded too).
    alignas(32) float mw[R][8];
    alignas(32) float scale[R][C][8];  // d_w * d_x per (row, token, block): 1 mul per 8 blocks
    if constexpr (C == 1 && I == 1) {
      // Decode streams each weight byte once from DRAM: fetch the same blocks kPrefetchRows
      // rows further on while this tile computes (+50% decode on one thread; the hardware
      // prefetcher alone does not keep enough misses in flight for 4 short row streams).
      for (int r = 0; r < R; ++r) {
        const char* pf = reinterpret_cast<const char*>(&wr[r][b0]) + kPrefetchRows * ws;
        for (int off = 0; off < 8 * static_cast<int>(sizeof(B)); off += 64) _mm_prefetch(pf + off, _MM_HINT_T0);
      }
    } else if constexpr (C == 1) {
      // Interleaved: this group of 8 blocks of the tile's rows is one contiguous span;
      // fetch the span kPrefetchRows rows further on.
      const char* pf = reinterpret_cast<const char*>(&wr[0][b0 * I]) + kPrefetchRows * nb * sizeof(B);
      for (int off = 0; off < 8 * I * static_cast<int>(sizeof(B)); off += 64) _mm_prefetch(pf + off, _MM_HINT_T0);
    }
    for (int r = 0; r < R; ++r) {
      const __m256i dm = load_heads<B, I>(&wr[r][b0 * I], ng);
      const __m256 d = half_lo_to_ps(dm);
      for (int c = 0; c < C; ++c) _mm256_store_ps(scale[r][c], _mm256_mul_ps(d, _mm256_loadu_ps(xr[c].d + b0)));
      if constexpr (W::kMinField)
        _mm256_store_ps(mw[r], half_hi_to_ps(dm));
      else if constexpr (W::kHasMin)
        _mm256_store_ps(mw[r], _mm256_mul_ps(d, _mm256_set1_ps(W::kOffset)));
    }
    for (int j = 0; j < ng; ++j) {
      const int64_t ib = b0 + j;
      __m256i q[R], aq[R];
      for (int r = 0; r < R; ++r) {
        q[r] = W::q(&wr[r][ib * I]);
        if constexpr (W::kSigned) aq[r] = _mm256_sign_epi8(q[r], q[r]);
      }
      for (int c = 0; c < C; ++c) {
        const __m256i yv = _mm256_load_si256(reinterpret_cast<const __m256i*>(xr[c].qs + ib * kQK));
        for (int r = 0; r < R; ++r) {
          __m256i p;
          if constexpr (W::kSigned)
            p = dot_u8s8(aq[r], _mm256_sign_epi8(yv, q[r]));
          else
            p = dot_u8s8(q[r], yv);
          const __m256 f = _mm256_cvtepi32_ps(p);
          acc[r][c] = _mm256_fmadd_ps(f, _mm256_broadcast_ss(&scale[r][c][j]), acc[r][c]);
        }
      }
    }
    if constexpr (W::kHasMin) {
      for (int c = 0; c < C; ++c) {
        const __m256 sv = _mm256_loadu_ps(xr[c].s + b0);
        for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(_mm256_load_ps(mw[r]), sv, acc[r][c]);
      }
    }
  }
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) y[c * ldy + r] = hsum(acc[r][c]);
}

// ---------------------------------------------------------------- float weights

struct LF32 {
  static __m256 load(const void* p, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(p) + i); }
  static float one(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
};
struct LF16 {
  static __m256 load(const void* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
  static float one(const void* p, int64_t i) { return h2f(static_cast<const uint16_t*>(p)[i]); }
};
struct LBF16 {
  static __m256 load(const void* p, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float one(const void* p, int64_t i) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

template <class L, int R, int C>
void tile_f(int64_t n_in, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t n8 = n_in / 8 * 8;
  for (int64_t i = 0; i < n8; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = L::load(w + r * ws, i);
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_loadu_ps(reinterpret_cast<const float*>(x + c * xs) + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[r][c]);
      const auto* xc = reinterpret_cast<const float*>(x + c * xs);
      for (int64_t i = n8; i < n_in; ++i) s = std::fma(L::one(w + r * ws, i), xc[i], s);
      y[c * ldy + r] = s;
    }
}

// ---------------------------------------------------------------- tiling driver

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, int64_t);

// table[r-1][c-1] = Tile<r, c>, so edge tiles use the same code with fewer rows / tokens.
template <template <int, int> class T, int RMax, int CMax>
struct TileTable {
  TileFn fn[RMax][CMax];
  constexpr TileTable() : fn() { fill<1, 1>(); }
  template <int R, int C>
  constexpr void fill() {
    fn[R - 1][C - 1] = &T<R, C>::run;
    if constexpr (C < CMax)
      fill<R, C + 1>();
    else if constexpr (R < RMax)
      fill<R + 1, 1>();
  }
};

template <class W, int I = 1>
struct Q8ATile {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy) {
      tile_q8a<W, R, C, I>(n, w, ws, x, xs, y, ldy);
    }
  };
};
template <class L>
struct FTile {
  template <int R, int C>
  struct T {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, int64_t ldy) {
      tile_f<L, R, C>(n, w, ws, x, xs, y, ldy);
    }
  };
};

// Tile shapes: prefill (kR x kC) chosen by bench on Zen (16 ymm registers: R*C
// accumulators + R unpacked weight blocks); decode uses kR rows x 1 token.
constexpr int kRMax = 4, kCMax = KVZ_QUANT_CMAX;

// Decode tiles of 8 rows measured 30% slower than 4 (accumulator + weight registers spill).
template <class Tiles>
void gemm_tiled(const Tiles& tab, int rt, int ct, int64_t n_in, const void* w, size_t ws, const void* x,
                size_t xs, int64_t n_rows, int64_t n_tok, float* y, int64_t ldy) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  const int rstep = n_tok == 1 ? kRMax : rt;
  const int cstep = n_tok == 1 ? 1 : ct;
  for (int64_t t = 0; t < n_tok; t += cstep) {
    const int nc = static_cast<int>(n_tok - t < cstep ? n_tok - t : cstep);
    for (int64_t r = 0; r < n_rows; r += rstep) {
      const int nr = static_cast<int>(n_rows - r < rstep ? n_rows - r : rstep);
      tab.fn[nr - 1][nc - 1](n_in, wb + r * ws, ws, xb + t * xs, xs, y + t * ldy + r, ldy);
    }
  }
}

template <class W>
constexpr TileTable<Q8ATile<W>::template T, kRMax, kCMax> kQ8ATiles{};
template <class W>
constexpr TileTable<Q8ATile<W, kInterleaveRows>::template T, kRMax, kCMax> kQ8ATilesI4{};
template <class L>
constexpr TileTable<FTile<L>::template T, kRMax, kCMax> kFTiles{};

template <class W, int R, int C>
void gemm_q8a(int64_t n_in, const void* w, size_t ws, const void* x, size_t xs, int64_t n_rows, int64_t n_tok,
              float* y, int64_t ldy) {
  gemm_tiled(kQ8ATiles<W>, R, C, n_in, w, ws, x, xs, n_rows, n_tok, y, ldy);
}
// Interleaved layout: tiles of the full groups read the group stream (a tile of rt rows
// starts at row r of its group, sizeof(B) bytes in, rows sizeof(B) apart); the last
// n_rows % 4 rows are row-major. Same tile shapes as gemm_q8a, so the same results.
template <class W, int R, int C>
void gemm_q8a_i4(int64_t n_in, const void* w, size_t ws, const void* x, size_t xs, int64_t n_rows, int64_t n_tok,
                 float* y, int64_t ldy) {
  static_assert(kRMax == kInterleaveRows && kInterleaveRows % R == 0, "tiles must not straddle groups");
  using B = typename W::B;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  const int64_t n_full = n_rows / kInterleaveRows * kInterleaveRows;
  const int rstep = n_tok == 1 ? kRMax : R;
  const int cstep = n_tok == 1 ? 1 : C;
  for (int64_t t = 0; t < n_tok; t += cstep) {
    const int nc = static_cast<int>(n_tok - t < cstep ? n_tok - t : cstep);
    for (int64_t r = 0; r < n_full; r += rstep) {
      const uint8_t* g = wb + (r / kInterleaveRows) * kInterleaveRows * ws + (r % kInterleaveRows) * sizeof(B);
      kQ8ATilesI4<W>.fn[rstep - 1][nc - 1](n_in, g, sizeof(B), xb + t * xs, xs, y + t * ldy + r, ldy);
    }
  }
  if (n_full < n_rows)
    gemm_tiled(kQ8ATiles<W>, R, C, n_in, wb + n_full * ws, ws, x, xs, n_rows - n_full, n_tok, y + n_full, ldy);
}
template <class W>
float dot_q8a(int64_t n, const void* w, const void* x) {
  float y;
  tile_q8a<W, 1, 1>(n, static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(x), 0, &y, 0);
  return y;
}

template <class L, int R, int C>
void gemm_f(int64_t n_in, const void* w, size_t ws, const void* x, size_t xs, int64_t n_rows, int64_t n_tok,
            float* y, int64_t ldy) {
  gemm_tiled(kFTiles<L>, R, C, n_in, w, ws, x, xs, n_rows, n_tok, y, ldy);
}
template <class L>
float dot_f(int64_t n, const void* w, const void* x) {
  float y;
  tile_f<L, 1, 1>(n, static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(x), 0, &y, 0);
  return y;
}

// ---------------------------------------------------------------- K-quants
// Per super-block the integer sums are exact and combined in f32 exactly as the reference
// does (kernels/ref/quant_ref.cpp dot_k45 / dot_q6_k), except that here the f32 update is
// fused (FMA), so results differ from the reference in the last bits only.

// The 8 scales (16-bit words 0..7) and 8 mins (words 8..15) of a Q4_K / Q5_K super-block's
// 12 packed bytes, the values scales_mins_k4 unpacks, with ggml's 32-bit word arithmetic.
inline __m256i scales_mins_k4_epi16(const uint8_t* q) {
  uint32_t u[4];
  std::memcpy(u, q, 12);
  constexpr uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
  u[3] = ((u[2] >> 4) & km2) | (((u[1] >> 6) & km3) << 4);  // mins 4..7
  const uint32_t m03 = u[1] & km1;                             // mins 0..3
  u[1] = (u[2] & km2) | (((u[0] >> 6) & km3) << 4);           // scales 4..7
  u[2] = m03;
  u[0] &= km1;                                                  // scales 0..3
  return _mm256_cvtepu8_epi16(_mm_set_epi32(static_cast<int>(u[3]), static_cast<int>(u[2]), static_cast<int>(u[1]),
                                            static_cast<int>(u[0])));
}

// Two tile shapes share each K-quant block's integer work (the *_sums functions below):
//  - one row x C tokens (tile_k45, tile_q6_k): vec_dot (C = 1) and the rows left over;
//  - eight rows x C tokens (tile_k8): the super-block of each row is unpacked once and
//    multiplied with C activation rows as in the one-row tile, but what follows the integer
//    sums runs across the eight rows at once. The lane sums of 8 rows reduce in one hadd tree
//    (hsum8_i32), the mins term of 8 rows is four madds against the token's 8 pair sums,
//    and the f32 update is one vector FMA per token with lane r holding row r. Per output it
//    is the one-row tile's arithmetic: the same exact integers, then the same f32 multiplies
//    and FMAs lane-wise, so any tile shape and any C give the vec_dot result bitwise.
//
// With VNNI (AVX-512) the integer part runs on zmm registers: the two 32-element sub-blocks
// of each 64-element step (low and high nibbles) sit in one register's halves against their
// 64 contiguous activation bytes, so one maddubs + one vpdpwssd do the work of two of each.
// The super-block's i32 sum is the same integer, so results stay bitwise the AVX2 kernels'.
#if KVZ_QUANT_VNNI
// The 8 i32 lanes of the AVX2 kernels' sum: lane i of the low half (low nibbles, or groups
// 0 / 2) plus lane i of the high half holds exactly the integer AVX2's lane i holds.
inline __m256i fold_i32_512(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}
// Words of 16-bit lanes: the low 256 bits the value lo, the high 256 bits hi.
inline __m512i halves_epi16(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(lo))),
                            _mm256_set1_epi16(static_cast<int16_t>(hi)), 1);
}
inline __m512i bcast256(const uint8_t* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
#endif

// Lane r of the result: the sum of v[r]'s 8 lanes, r < 8 (exact integers).
inline __m256i hsum8_i32(const __m256i* v) {
  // Per 128-bit lane: a = (v0, v1, v2, v3) summed over lanes 0-3 (low) and 4-7 (high).
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// Constants of the Q4_K / Q5_K block sums, built once per tile call.
struct K45Consts {
#if KVZ_QUANT_VNNI
  __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1), nib = halves_epi16(0, 4);
  // vpermw indices: the low 256 bits take scale word 2k, the high 256 bits word 2k + 1.
  __m512i pick[4] = {halves_epi16(0, 1), halves_epi16(2, 3), halves_epi16(4, 5), halves_epi16(6, 7)};
#else
  __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  // vpshufb indices broadcasting scale word j over a 128-bit lane (both lanes hold the scales).
  __m256i pick[8];
  K45Consts() {
    for (int j = 0; j < 8; ++j) pick[j] = _mm256_set1_epi16(static_cast<int16_t>((2 * j + 1) << 8 | 2 * j));
  }
#endif
};

// One Q4_K / Q5_K super-block b against the activation blocks a[t][ib] of C tokens: the lanes
// of iv[t] sum to the block's exact sum over sub-blocks j of sc[j] * <q_j, y_j> (the mins
// term aside). ms = scales_mins_k4_epi16(b.scales).
template <class B, int C>
inline void k45_sums(const K45Consts& k, const B& b, __m256i ms, const Q8_K* const* a, int64_t ib, __m256i* iv) {
#if KVZ_QUANT_VNNI
  const __m512i ms512 = _mm512_castsi256_si512(ms);
  __m512i hb = _mm512_setzero_si512();
  if constexpr (std::is_same_v<B, Q5_K>) hb = bcast256(b.qh);
  __m512i sumi[C];
  for (int t = 0; t < C; ++t) sumi[t] = _mm512_setzero_si512();
  for (int j = 0; j < 4; ++j) {  // 64 elements: sub-block 2j (low half), 2j+1 (high half)
    __m512i q = _mm512_and_si512(_mm512_srlv_epi16(bcast256(b.qs + 32 * j), k.nib), k.m4);
    if constexpr (std::is_same_v<B, Q5_K>)
      q = _mm512_or_si512(
          q, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, halves_epi16(2 * j, 2 * j + 1)), k.one), 4));
    const __m512i sv = _mm512_permutexvar_epi16(k.pick[j], ms512);
    for (int t = 0; t < C; ++t) {
      const __m512i y = _mm512_loadu_si512(a[t][ib].qs + 64 * j);
      sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q, y), sv);
    }
  }
  for (int t = 0; t < C; ++t) iv[t] = fold_i32_512(sumi[t]);
#else
  const __m256i sc2 = _mm256_permute2x128_si256(ms, ms, 0x00);  // the 8 scale words in both lanes
  __m256i hb = _mm256_setzero_si256();
  if constexpr (std::is_same_v<B, Q5_K>) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int t = 0; t < C; ++t) iv[t] = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {  // 64 elements: sub-blocks 2j (low nibbles), 2j+1 (high)
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j));
    __m256i lo = _mm256_and_si256(qv, k.m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), k.m4);
    if constexpr (std::is_same_v<B, Q5_K>) {
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * j)), k.one), 4));
      hi = _mm256_or_si256(hi,
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * j + 1)), k.one), 4));
    }
    const __m256i s0 = _mm256_shuffle_epi8(sc2, k.pick[2 * j]), s1 = _mm256_shuffle_epi8(sc2, k.pick[2 * j + 1]);
    for (int t = 0; t < C; ++t) {
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][ib].qs + 64 * j));
      const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][ib].qs + 64 * j + 32));
      iv[t] = madd_acc(madd_acc(iv[t], _mm256_maddubs_epi16(lo, y0), s0), _mm256_maddubs_epi16(hi, y1), s1);
    }
  }
#endif
}

// The 8 pair sums of a Q8_K block's 16 sums of 16: bsums[2j] + bsums[2j + 1], one per
// 32-element sub-block j, as the 8 words of the result.
inline __m128i bsum_pairs(const Q8_K& q) {
  return _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q.bsums)),
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(q.bsums + 8)));
}

template <class B, int C>
void tile_k45(int64_t n, const B* b, const Q8_K* const* a, float* out) {
  const K45Consts k;
  float sumf[C] = {};
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    const __m256i ms = scales_mins_k4_epi16(b[ib].scales);
    __m256i iv[C], mv[C];
    k45_sums<B, C>(k, b[ib], ms, a, ib, iv);
    // m[j] against the pair sums of the 16 sub-block sums of 16 (one per 32-element
    // sub-block j): one madd; the same integer as m[j] twice against each sum.
    const __m128i m8 = _mm256_extracti128_si256(ms, 1);
    for (int t = 0; t < C; ++t) mv[t] = _mm256_zextsi128_si256(_mm_madd_epi16(m8, bsum_pairs(a[t][ib])));
    // The block's two integer sums per token (exact, so the reduction order cannot matter),
    // reduced for two tokens at a time.
    int isum[C], summ[C];
    hsum_pairs_i32<C>(iv, mv, isum, summ);
    for (int t = 0; t < C; ++t) {
      const float d = a[t][ib].d * h2f(b[ib].d), dmin = a[t][ib].d * h2f(b[ib].dmin);
      // Explicit FMAs: left to -ffp-contract the instantiations for different C could
      // round differently.
      sumf[t] = std::fma(d, static_cast<float>(isum[t]), std::fma(-dmin, static_cast<float>(summ[t]), sumf[t]));
    }
  }
  for (int t = 0; t < C; ++t) out[t] = sumf[t];
}

// Constants of the Q6_K block sums, built once per tile call.
struct Q6Consts {
#if KVZ_QUANT_VNNI
  // Groups g = 0, 1 (and 2, 3) of a half h side by side in one zmm: their 64 activation bytes
  // are contiguous; each 128-bit lane (16 elements) has its own scale.
  __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
  __m512i sh01 = halves_epi16(0, 2), sh23 = halves_epi16(4, 6);
  // vpermw indices: 128-bit lane j takes scale word 8h + j (first 64 elements of half h) or
  // 8h + 4 + j (its last 64).
  __m512i pick[2][2];
  Q6Consts() {
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 2; ++g) {
        alignas(64) int16_t idx[32];
        for (int w = 0; w < 32; ++w) idx[w] = static_cast<int16_t>(8 * h + 4 * g + w / 8);
        pick[h][g] = _mm512_load_si512(idx);
      }
  }
#else
  __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
  // vpshufb indices: the low lane takes scale word 2g of a lane holding 8 scale words, the
  // high lane word 2g + 1.
  __m256i pick[4];
  Q6Consts() {
    for (int g = 0; g < 4; ++g)
      pick[g] = _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>((4 * g + 1) << 8 | 4 * g)),
                                  _mm_set1_epi16(static_cast<int16_t>((4 * g + 3) << 8 | (4 * g + 2))));
  }
#endif
};

// One Q6_K super-block b against the activation blocks a[t][ib] of C tokens, with the
// quants taken unsigned (0..63): the lanes of iv[t] sum to sum_k sc[k] * <q_k, y_k> and those
// of ov[t] to sum_k sc[k] * bsums[k]; the block's integer is isum - 32 * osum (the -32 offset).
template <int C>
inline void q6k_sums(const Q6Consts& k, const Q6_K& b, const Q8_K* const* a, int64_t ib, __m256i* iv, __m256i* ov) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
#if KVZ_QUANT_VNNI
  const __m512i sc512 = _mm512_castsi256_si512(sc16);
  __m512i sumi[C];
  for (int t = 0; t < C; ++t) sumi[t] = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(b.ql + 64 * h);  // ql0 | ql1
    const __m512i qh = bcast256(b.qh + 32 * h);
    const __m512i q01 = _mm512_or_si512(_mm512_and_si512(ql, k.m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, k.sh01), k.m2), 4));
    const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), k.m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, k.sh23), k.m2), 4));
    const __m512i sva = _mm512_permutexvar_epi16(k.pick[h][0], sc512), svb = _mm512_permutexvar_epi16(k.pick[h][1], sc512);
    for (int t = 0; t < C; ++t) {
      const int8_t* y = a[t][ib].qs + 128 * h;
      sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q01, _mm512_loadu_si512(y)), sva);
      sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q23, _mm512_loadu_si512(y + 64)), svb);
    }
  }
  for (int t = 0; t < C; ++t) iv[t] = fold_i32_512(sumi[t]);
#else
  for (int t = 0; t < C; ++t) iv[t] = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    __m256i q[4];  // unsigned 6-bit quants, q - 32 is the value
    q[0] = _mm256_or_si256(_mm256_and_si256(ql0, k.m4), _mm256_slli_epi16(_mm256_and_si256(qh, k.m2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, k.m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), k.m2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), k.m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), k.m2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), k.m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), k.m2), 4));
    // scale words 8h .. 8h + 7 in both lanes
    const __m256i sch = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
    for (int g = 0; g < 4; ++g) {
      const __m256i sv = _mm256_shuffle_epi8(sch, k.pick[g]);
      for (int t = 0; t < C; ++t) {
        const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][ib].qs + 128 * h + 32 * g));
        iv[t] = madd_acc(iv[t], _mm256_maddubs_epi16(q[g], yv), sv);
      }
    }
  }
#endif
  for (int t = 0; t < C; ++t)
    ov[t] = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][ib].bsums)), sc16);
}

template <int C>
void tile_q6_k(int64_t n, const Q6_K* b, const Q8_K* const* a, float* out) {
  const Q6Consts k;
  float sumf[C] = {};
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    __m256i iv[C], ov[C];
    q6k_sums<C>(k, b[ib], a, ib, iv, ov);
    int isum[C], osum[C];
    hsum_pairs_i32<C>(iv, ov, isum, osum);
    for (int t = 0; t < C; ++t)
      sumf[t] = std::fma(a[t][ib].d * h2f(b[ib].d), static_cast<float>(isum[t] - 32 * osum[t]), sumf[t]);
  }
  for (int t = 0; t < C; ++t) out[t] = sumf[t];
}

// The fp16 field f of eight blocks as 8 x f32, lane r from row[r] (exact conversions).
template <class B>
inline __m256 f16x8(const B* const* row, uint16_t B::*f) {
  auto h = [&](int r) { return static_cast<int16_t>(row[r]->*f); };
  return _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)));
}

// The f32 update of eight Q4_K / Q5_K rows (lane r = row r) by one token's super-block q:
// isum the rows' scaled sub-block sums, mp[p] lane r the row's mins 2p and 2p + 1 as the two
// words of an i32, d8 / dm8 the rows' d and dmin. The mins integer is the one-row tile's,
// sum_j m[j] * (bsums[2j] + bsums[2j + 1]); fnmadd(dmin, s, acc) rounds -(dmin * s) + acc
// once: the one-row tile's fma(-dmin, s, acc).
inline __m256 k45_update8(__m256 acc, const Q8_K& q, __m256i isum, const __m256i* mp, __m256 d8, __m256 dm8) {
  const __m256i bp = _mm256_broadcastsi128_si256(bsum_pairs(q));
  const __m256i summ =
      _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(mp[0], _mm256_shuffle_epi32(bp, 0x00)),
                                        _mm256_madd_epi16(mp[1], _mm256_shuffle_epi32(bp, 0x55))),
                       _mm256_add_epi32(_mm256_madd_epi16(mp[2], _mm256_shuffle_epi32(bp, 0xAA)),
                                        _mm256_madd_epi16(mp[3], _mm256_shuffle_epi32(bp, 0xFF))));
  const __m256 ad = _mm256_set1_ps(q.d);
  return _mm256_fmadd_ps(_mm256_mul_ps(ad, d8), _mm256_cvtepi32_ps(isum),
                         _mm256_fnmadd_ps(_mm256_mul_ps(ad, dm8), _mm256_cvtepi32_ps(summ), acc));
}

// Eight rows (w, w + ws, ..., w + 7 ws) x C tokens of a K-quant type; y[t * ldy + r] for
// r < 8, t < C. Lane r of every vector below belongs to row r.
template <class B, int C>
void tile_k8(int64_t n, const uint8_t* w, size_t ws, const Q8_K* const* a, float* y, int64_t ldy) {
  constexpr bool k45 = !std::is_same_v<B, Q6_K>;
  const std::conditional_t<k45, K45Consts, Q6Consts> k;
  __m256 acc[C];
  for (int t = 0; t < C; ++t) acc[t] = _mm256_setzero_ps();
  // Decode reads each weight once from DRAM. Eight rows read block by block are eight short
  // interleaved streams, which the hardware prefetchers follow poorly when rows are short
  // (Q4_K at n_in 1536, one thread, rows from DRAM: 13.0 GB/s row by row, 7.1 in eights).
  // So each block step prefetches its share of the next eight rows, in address order.
  const int64_t nb = n / kQKK;
  const auto* next = reinterpret_cast<const char*>(w + 8 * ws);
  const int64_t lines_per_step = C == 1 ? (static_cast<int64_t>(8 * ws) / 64 + nb - 1) / nb : 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    for (int64_t i = ib * lines_per_step; i < (ib + 1) * lines_per_step; ++i) _mm_prefetch(next + 64 * i, _MM_HINT_T1);
    const B* row[8];
    for (int r = 0; r < 8; ++r) row[r] = reinterpret_cast<const B*>(w + r * ws) + ib;
    __m256i iv[C][8];  // [token][row]
    __m128i m8[8];     // Q4_K / Q5_K: each row's 8 mins
    for (int r = 0; r < 8; ++r) {
      __m256i s[C];
      if constexpr (k45) {
        const __m256i ms = scales_mins_k4_epi16(row[r]->scales);
        m8[r] = _mm256_extracti128_si256(ms, 1);
        k45_sums<B, C>(k, *row[r], ms, a, ib, s);
      } else {
        __m256i o[C];
        q6k_sums<C>(k, *row[r], a, ib, s, o);
        for (int t = 0; t < C; ++t) s[t] = _mm256_sub_epi32(s[t], _mm256_slli_epi32(o[t], 5));  // isum - 32 osum
      }
      for (int t = 0; t < C; ++t) iv[t][r] = s[t];
    }
    const __m256 d8 = f16x8(row, &B::d);
    if constexpr (k45) {
      const __m256 dm8 = f16x8(row, &B::dmin);
      // mp[p], lane r: row r's mins 2p and 2p + 1 as the two words of an i32 (a transpose of
      // the 8 x 4 pairs in m8).
      __m256i mr[4];
      for (int r = 0; r < 4; ++r) mr[r] = _mm256_setr_m128i(m8[r], m8[r + 4]);
      const __m256i t0 = _mm256_unpacklo_epi32(mr[0], mr[1]), t1 = _mm256_unpackhi_epi32(mr[0], mr[1]);
      const __m256i t2 = _mm256_unpacklo_epi32(mr[2], mr[3]), t3 = _mm256_unpackhi_epi32(mr[2], mr[3]);
      const __m256i mp[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                             _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
      for (int t = 0; t < C; ++t) {
        acc[t] = k45_update8(acc[t], a[t][ib], hsum8_i32(iv[t]), mp, d8, dm8);
      }
    } else {
      for (int t = 0; t < C; ++t)
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(a[t][ib].d), d8), _mm256_cvtepi32_ps(hsum8_i32(iv[t])),
                                 acc[t]);
    }
  }
  for (int t = 0; t < C; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

template <class B, int C>
void tile_k(int64_t n, const void* w, const Q8_K* const* a, float* out) {
  if constexpr (std::is_same_v<B, Q6_K>)
    tile_q6_k<C>(n, static_cast<const Q6_K*>(w), a, out);
  else
    tile_k45<B, C>(n, static_cast<const B*>(w), a, out);
}

template <class B>
float dot_k(int64_t n, const void* w, const void* x) {
  const Q8_K* a[1] = {static_cast<const Q8_K*>(x)};
  float y;
  tile_k<B, 1>(n, w, a, &y);
  return y;
}

// tile_k / tile_k8 with C = nc (1 <= nc <= CMax) picked at run time.
template <class B, int CMax>
void tile_k_n(int nc, int64_t n, const void* w, const Q8_K* const* a, float* out) {
  if constexpr (CMax > 1)
    if (nc < CMax) return tile_k_n<B, CMax - 1>(nc, n, w, a, out);
  tile_k<B, CMax>(n, w, a, out);
}
template <class B, int CMax>
void tile_k8_n(int nc, int64_t n, const uint8_t* w, size_t ws, const Q8_K* const* a, float* y, int64_t ldy) {
  if constexpr (CMax > 1)
    if (nc < CMax) return tile_k8_n<B, CMax - 1>(nc, n, w, ws, a, y, ldy);
  tile_k8<B, CMax>(n, w, ws, a, y, ldy);
}

// Rows in chunks of 16 (L1-resident) x kC tokens per tile call: eight-row tiles, then
// one-row tiles for the rows left over.
template <class B, int kC>
void gemm_k(int64_t n_in, const void* w, size_t ws, const void* x, size_t xs, int64_t n_rows, int64_t n_tok,
            float* y, int64_t ldy) {
  constexpr int64_t kRowTile = 16;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRowTile) {
    const int64_t r1 = r0 + kRowTile < n_rows ? r0 + kRowTile : n_rows;
    for (int64_t t = 0; t < n_tok; t += kC) {
      const int nc = static_cast<int>(n_tok - t < kC ? n_tok - t : kC);
      const Q8_K* a[kC];
      for (int i = 0; i < nc; ++i) a[i] = reinterpret_cast<const Q8_K*>(xb + (t + i) * xs);
      int64_t r = r0;
      for (; r + 8 <= r1; r += 8) tile_k8_n<B, kC>(nc, n_in, wb + r * ws, ws, a, y + t * ldy + r, ldy);
      for (; r < r1; ++r) {
        float out[kC] = {};  // (gcc 12 cannot see that tile_k_n fills the first nc)
        tile_k_n<B, kC>(nc, n_in, wb + r * ws, a, out);
        for (int i = 0; i < nc; ++i) y[(t + i) * ldy + r] = out[i];
      }
    }
  }
}
// ---------------------------------------------------------------- Q4_K, rows interleaved
// Weights in the interleaved Q4_K layout (blk::Q4_K_rows<R>: R rows' super-block ib
// together, four quant bytes of one row per 32-bit lane): R = 8 on AVX2, 16 on AVX-512. One
// maddubs (AVX2) or vpdpbusd (AVX-512) multiplies four quants of every row by the same four
// activation bytes, broadcast from memory, so lane r holds row r's sums: no per-row
// horizontal reduction, no per-row scale shuffles, and the scales of all R rows unpack at
// once. The mins term and the f32 update are the one-row tile's, lane-wise. Every output is
// the one-row tile's exact integers and the same f32 multiplies and FMAs, so results are
// bitwise gemm_k's.

// Row r's 6-bit scales (sc) and mins (m) of sub-blocks 0..7 in byte r of each vector, from
// the transposed packed bytes (scale_min_k4's unpacking, all R rows at once).
template <int R>
inline void k4_scales_rows(const blk::Q4_K_rows<R>& g, __m128i* sc, __m128i* m) {
  __m128i q[12];
  for (int k = 0; k < 12; ++k)
    q[k] = R == 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(g.scales[k]))
                   : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g.scales[k]));
  const __m128i m63 = _mm_set1_epi8(63), m15 = _mm_set1_epi8(15), m3 = _mm_set1_epi8(3);
  auto top2 = [&](__m128i v) { return _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(v, 6), m3), 4); };  // (v >> 6) << 4
  for (int j = 0; j < 4; ++j) {
    sc[j] = _mm_and_si128(q[j], m63);
    m[j] = _mm_and_si128(q[j + 4], m63);
    sc[j + 4] = _mm_or_si128(_mm_and_si128(q[j + 8], m15), top2(q[j]));
    m[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(q[j + 8], 4), m15), top2(q[j + 4]));
  }
}

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if KVZ_QUANT_VNNI
// 16 rows (one group) x C tokens over the whole row; y[t * ldy + r] for r < 16. A
// sub-block's lane sum (32 products, up to 61,440 in magnitude) is scaled exactly in 32 bits
// (vpmulld).
template <int C>
void tile_q4k_rows(int64_t n, const blk::Q4_K_rows<16>* g, const Q8_K* const* a, float* y, int64_t ldy) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 acc[C];
  for (int t = 0; t < C; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    const blk::Q4_K_rows<16>& b = g[ib];
    __m128i sc[8], mn[8];
    k4_scales_rows(b, sc, mn);
    __m512i isum[C];
    for (int t = 0; t < C; ++t) isum[t] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {  // sub-blocks 2j (low nibbles) and 2j + 1 (high)
      __m512i lo[C], hi[C];
      for (int t = 0; t < C; ++t) lo[t] = hi[t] = _mm512_setzero_si512();
      for (int c = 0; c < 8; ++c) {
        const __m512i w = _mm512_loadu_si512(b.qs[j][c]);
        const __m512i wl = _mm512_and_si512(w, m4), wh = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
        for (int t = 0; t < C; ++t) {
          lo[t] = _mm512_dpbusd_epi32(lo[t], wl, _mm512_set1_epi32(load_i32(a[t][ib].qs + 64 * j + 4 * c)));
          hi[t] = _mm512_dpbusd_epi32(hi[t], wh, _mm512_set1_epi32(load_i32(a[t][ib].qs + 64 * j + 32 + 4 * c)));
        }
      }
      const __m512i sl = _mm512_cvtepu8_epi32(sc[2 * j]), sh = _mm512_cvtepu8_epi32(sc[2 * j + 1]);
      for (int t = 0; t < C; ++t)
        isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(lo[t], sl), _mm512_mullo_epi32(hi[t], sh)));
    }
    // mp[p], lane r: row r's mins 2p and 2p + 1 as the two words of an i32.
    __m512i mp[4];
    for (int p = 0; p < 4; ++p)
      mp[p] = _mm512_cvtepu8_epi16(_mm256_setr_m128i(_mm_unpacklo_epi8(mn[2 * p], mn[2 * p + 1]),
                                                     _mm_unpackhi_epi8(mn[2 * p], mn[2 * p + 1])));
    const __m512 d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.d)));
    const __m512 dm16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.dmin)));
    for (int t = 0; t < C; ++t) {
      // sum_j m[j] * (bsums[2j] + bsums[2j + 1]), the one-row tile's mins integer
      const __m512i bp = _mm512_broadcast_i32x4(bsum_pairs(a[t][ib]));
      __m512i summ = _mm512_madd_epi16(mp[0], _mm512_shuffle_epi32(bp, _MM_PERM_AAAA));
      summ = _mm512_dpwssd_epi32(summ, mp[1], _mm512_shuffle_epi32(bp, _MM_PERM_BBBB));
      summ = _mm512_dpwssd_epi32(summ, mp[2], _mm512_shuffle_epi32(bp, _MM_PERM_CCCC));
      summ = _mm512_dpwssd_epi32(summ, mp[3], _mm512_shuffle_epi32(bp, _MM_PERM_DDDD));
      const __m512 ad = _mm512_set1_ps(a[t][ib].d);
      // fnmadd(dmin, s, acc) rounds -(dmin * s) + acc once: the one-row tile's fma(-dmin, s, acc).
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(ad, d16), _mm512_cvtepi32_ps(isum[t]),
                               _mm512_fnmadd_ps(_mm512_mul_ps(ad, dm16), _mm512_cvtepi32_ps(summ), acc[t]));
    }
  }
  for (int t = 0; t < C; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}
#endif

// 8 rows (one group) x C tokens over the whole row; y[t * ldy + r] for r < 8. maddubs gives
// each row two words of two products; eight of them summed in 16 bits hold 16 products each
// (at most 16 * 15 * 128 = 30,720 in magnitude: exact), and one madd against the sub-block's
// scale (both words of lane r) makes row r's scaled sub-block sum. With 16 vector registers
// the group's unpacked quants go to a stack buffer once per super-block and each token reads
// them from L1, so C is not bounded by registers; decode (C = 1) unpacks in registers.
template <int C>
void tile_q4k_rows(int64_t n, const blk::Q4_K_rows<8>* g, const Q8_K* const* a, float* y, int64_t ldy) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256 acc[C];
  for (int t = 0; t < C; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    const blk::Q4_K_rows<8>& b = g[ib];
    __m128i sc[8], mn[8];
    k4_scales_rows(b, sc, mn);
    __m256i sw[8];  // lane r: row r's scale of sub-block s in both words
    for (int s = 0; s < 8; ++s) sw[s] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc[s], sc[s]));
    __m256i mp[4];  // lane r: row r's mins 2p and 2p + 1 as the two words of an i32
    for (int p = 0; p < 4; ++p) mp[p] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn[2 * p], mn[2 * p + 1]));
    alignas(32) __m256i wq[C == 1 ? 1 : 4][2][8];  // [j][low / high nibbles][c]
    if constexpr (C > 1)
      for (int j = 0; j < 4; ++j)
        for (int c = 0; c < 8; ++c) {
          const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[j][c]));
          wq[j][0][c] = _mm256_and_si256(w, m4);
          wq[j][1][c] = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
        }
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.d)));
    const __m256 dm8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.dmin)));
    for (int t = 0; t < C; ++t) {
      const int8_t* x = a[t][ib].qs;
      __m256i isum = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          __m256i wl, wh;
          if constexpr (C == 1) {
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs[j][c]));
            wl = _mm256_and_si256(w, m4);
            wh = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
          } else {
            wl = wq[j][0][c];
            wh = wq[j][1][c];
          }
          lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(wl, _mm256_set1_epi32(load_i32(x + 64 * j + 4 * c))));
          hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(wh, _mm256_set1_epi32(load_i32(x + 64 * j + 32 + 4 * c))));
        }
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(lo, sw[2 * j]), _mm256_madd_epi16(hi, sw[2 * j + 1])));
      }
      acc[t] = k45_update8(acc[t], a[t][ib], isum, mp, d8, dm8);
    }
  }
  for (int t = 0; t < C; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

template <int R, int CMax>
void tile_q4k_rows_n(int nc, int64_t n, const blk::Q4_K_rows<R>* g, const Q8_K* const* a, float* y, int64_t ldy) {
  if constexpr (CMax > 1)
    if (nc < CMax) return tile_q4k_rows_n<R, CMax - 1>(nc, n, g, a, y, ldy);
  tile_q4k_rows<CMax>(n, g, a, y, ldy);
}

// GemmFn over the R-row Q4_K layout: whole groups by the R-row tile (kC tokens per call),
// a row-major tail (n_rows % R) by gemm_k.
template <int R, int kC>
void gemm_q4k_rows(int64_t n_in, const void* w, size_t ws, const void* x, size_t xs, int64_t n_rows, int64_t n_tok,
                   float* y, int64_t ldy) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  const int64_t n_full = n_rows / R * R;
  for (int64_t r = 0; r < n_full; r += R) {
    const auto* g = reinterpret_cast<const blk::Q4_K_rows<R>*>(wb + r * ws);
    for (int64_t t = 0; t < n_tok; t += kC) {
      const int nc = static_cast<int>(n_tok - t < kC ? n_tok - t : kC);
      const Q8_K* a[kC];
      for (int i = 0; i < nc; ++i) a[i] = reinterpret_cast<const Q8_K*>(xb + (t + i) * xs);
      tile_q4k_rows_n<R, kC>(nc, n_in, g, a, y + t * ldy + r, ldy);
    }
  }
  if (n_full < n_rows) gemm_k<Q4_K, KVZ_QUANT_KC45>(n_in, wb + n_full * ws, ws, x, xs, n_rows - n_full, n_tok, y + n_full, ldy);
}

// ---------------------------------------------------------------- activation quantization
// The largest of v's 8 lanes.
inline float hmax_ps(__m256 v) {
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}
// 32 int32 in [-128, 127] (q[0] holds elements 0..7, q[3] 24..31) -> 32 int8 in order.
inline void store_i8x32(int8_t* dst, const __m256i* q) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
// Same arithmetic as qref::quantize_q8a (ggml's AVX2 quantize_row_q8_0 / q8_1), bitwise.
void quantize_q8a(const float* x, int64_t n_in, void* dst, Q8AMode mode) {
  auto* qs = static_cast<int8_t*>(dst);
  const int64_t nb = n_in / kQK, nbp = q8a_nbp(n_in);
  auto* d = reinterpret_cast<float*>(qs + nb * kQK);
  float* s = d + nbp;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t ib = 0; ib < nb; ++ib, x += kQK) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 ma = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = hmax_ps(ma);
    const float dv = amax / 127.f;
    const __m256 id = _mm256_set1_ps(amax != 0.f ? 127.f / amax : 0.f);
    const __m256i i[4] = {_mm256_cvtps_epi32(_mm256_mul_ps(v0, id)),  // MXCSR default: half to even
                          _mm256_cvtps_epi32(_mm256_mul_ps(v1, id)), _mm256_cvtps_epi32(_mm256_mul_ps(v2, id)),
                          _mm256_cvtps_epi32(_mm256_mul_ps(v3, id))};
    const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    store_i8x32(qs + ib * kQK, i);
    d[ib] = h2f(_cvtss_sh(dv, _MM_FROUND_TO_NEAREST_INT));
    switch (mode) {
      case Q8AMode::kNone: s[ib] = 0; break;
      case Q8AMode::kSumFp16: s[ib] = h2f(_cvtss_sh(dv * static_cast<float>(sum), _MM_FROUND_TO_NEAREST_INT)); break;
      case Q8AMode::kSumExact: s[ib] = d[ib] * static_cast<float>(sum); break;
    }
  }
  for (int64_t ib = nb; ib < nbp; ++ib) d[ib] = s[ib] = 0;
}

// Q8_K activation blocks for the K-quant tiles (256 values, d = 1 / iscale, iscale =
// -127 / the first value of largest magnitude, 16 sums of 16 quants): the arithmetic of
// qref::quantize_q8k, bitwise (its round_even is nearest-even, as vcvtps2dq under the default
// MXCSR; NaN inputs are skipped by the maximum as there).
void quantize_q8k(const float* x, int64_t n_in, void* dst) {
  auto* y = static_cast<Q8_K*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t ib = 0; ib < n_in / kQKK; ++ib, x += kQKK) {
    __m256 ma = _mm256_setzero_ps();
    for (int j = 0; j < kQKK; j += 8) ma = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), ma);
    const float amax = hmax_ps(ma);
    if (amax == 0.f) {
      std::memset(&y[ib], 0, sizeof(Q8_K));
      continue;
    }
    float vmax = amax;  // the first x with |x| == amax carries the sign
    for (int j = 0; j < kQKK; j += 8) {
      const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j));
      const int m = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (m) {
        vmax = x[j + __builtin_ctz(static_cast<unsigned>(m))];
        break;
      }
    }
    const float iscale = -127.f / vmax;
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i top = _mm256_set1_epi32(127);
    for (int j = 0; j < kQKK; j += 32) {
      __m256i q[4];
      for (int u = 0; u < 4; ++u)
        q[u] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * u))), top);
      store_i8x32(y[ib].qs + j, q);
      y[ib].bsums[j / 16] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      y[ib].bsums[j / 16 + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
    }
    y[ib].d = 1 / iscale;
  }
}

// Every entry this body has, with the prefill tile shape (R rows x C tokens) of the
// 32-element block types given by the includer.
template <int QR, int QC>
void fill_common(KernelTable& t) {
  static_assert(QR <= kRMax && QC <= kCMax, "the prefill tile must fit the tile table (KVZ_QUANT_CMAX)");
  t.quantize_q8a = quantize_q8a;
  t.quantize_q8k = quantize_q8k;
  auto set = [&](DType ty, VecDotFn dot, GemmFn gemm, GemmFn gemm_i4 = nullptr) {
    t.by_type[static_cast<uint32_t>(ty)] = {dot, gemm, gemm_i4, gemm_i4 ? kInterleaveRows : 0};
  };
  set(DType::F32, dot_f<LF32>, gemm_f<LF32, 4, 3>);
  set(DType::F16, dot_f<LF16>, gemm_f<LF16, 4, 3>);
  set(DType::BF16, dot_f<LBF16>, gemm_f<LBF16, 4, 3>);
  set(DType::Q4_0, dot_q8a<WQ4_0>, gemm_q8a<WQ4_0, QR, QC>, gemm_q8a_i4<WQ4_0, QR, QC>);
  set(DType::Q4_1, dot_q8a<WQ4_1>, gemm_q8a<WQ4_1, QR, QC>, gemm_q8a_i4<WQ4_1, QR, QC>);
  set(DType::Q5_0, dot_q8a<WQ5_0>, gemm_q8a<WQ5_0, QR, QC>, gemm_q8a_i4<WQ5_0, QR, QC>);
  set(DType::Q5_1, dot_q8a<WQ5_1>, gemm_q8a<WQ5_1, QR, QC>, gemm_q8a_i4<WQ5_1, QR, QC>);
  set(DType::Q8_0, dot_q8a<WQ8_0>, gemm_q8a<WQ8_0, QR, QC>, gemm_q8a_i4<WQ8_0, QR, QC>);
  set(DType::Q4_K, dot_k<Q4_K>, gemm_k<Q4_K, KVZ_QUANT_KC45>);
  TypeKernels& q4k = t.by_type[static_cast<uint32_t>(DType::Q4_K)];
#if KVZ_QUANT_VNNI
  q4k.gemm_i = gemm_q4k_rows<16, KVZ_QUANT_KQ4R>;
  q4k.group = 16;
#else
  q4k.gemm_i = gemm_q4k_rows<8, KVZ_QUANT_KQ4R>;
  q4k.group = 8;
#endif
  set(DType::Q5_K, dot_k<Q5_K>, gemm_k<Q5_K, KVZ_QUANT_KC45>);
  set(DType::Q6_K, dot_k<Q6_K>, gemm_k<Q6_K, KVZ_QUANT_KC6>);
}

}  // namespace

}  // namespace kvz::KVZ_QUANT_NS

// Byte layouts of the GGUF quantized blocks (ggml's block_* structs; the format is described
// in ggml/src/ggml-common.h and mirrored by gguf-py/gguf/quants.py) and of our own internal
// activation formats, the dot-product partners the weights are multiplied with.
// All fp16 fields are raw IEEE half bits (uint16_t); blocks are packed, no padding.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvz::blk {

constexpr int kQK = 32;    // elements per block of the legacy types (Q4_0 .. Q8_1)
constexpr int kQKK = 256;  // elements per super-block of the K-quants

struct Q4_0 {  // x = d * (q - 8), q in [0, 15]; qs[j] low nibble = x[j], high = x[j + 16]
  uint16_t d;
  uint8_t qs[16];
};
struct Q4_1 {  // x = d * q + m, q in [0, 15]
  uint16_t d, m;
  uint8_t qs[16];
};
struct Q5_0 {  // x = d * (q - 16); bit j of qh (little-endian u32) is bit 4 of q[j]
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct Q5_1 {  // x = d * q + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct Q8_0 {  // x = d * q
  uint16_t d;
  int8_t qs[32];
};
// Q4_K: 8 sub-blocks of 32; 6-bit scale and min per sub-block packed into scales[12]
// (see scale_min_k4); x = d * sc * q - dmin * m. qs: 4 chunks of 32 bytes, chunk c holds
// sub-block 2c in low nibbles and 2c+1 in high nibbles.
struct Q4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
// R rows' Q4_K super-block ib (one per row) in the kernels' interleaved layout (WeightView
// interleave R: 8 for AVX2, 16 for AVX-512): the same bytes, regrouped so one 32-bit lane
// holds four quant bytes of one row and one 32- or 64-byte load holds that for every row;
// a single maddubs / vpdpbusd then multiplies all R rows by the same four activation bytes,
// each row's sum in its own lane. Exactly R * sizeof(Q4_K) bytes.
template <int R>
struct Q4_K_rows {
  uint16_t d[R], dmin[R];   // row r's d and dmin
  uint8_t scales[12][R];    // [k][r]: byte k of row r's packed scales
  uint8_t qs[4][8][R][4];   // [j][c][r][i]: row r's qs[32 j + 4 c + i]
};
// Q5_K: Q4_K plus a 5th bit: bit s of qh[l] belongs to element l of sub-block s.
struct Q5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
// Q6_K: 16 sub-blocks of 16 with int8 scales; q = (4 low bits | 2 high bits << 4) - 32.
struct Q6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
// Q8_K as ggml defines it: f32 scale, bsums[k] = sum of qs[16k .. 16k+15].
struct Q8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};

static_assert(sizeof(Q4_0) == 18 && sizeof(Q4_1) == 20 && sizeof(Q5_0) == 22 && sizeof(Q5_1) == 24);
static_assert(sizeof(Q8_0) == 34 && sizeof(Q4_K) == 144 && sizeof(Q5_K) == 176 && sizeof(Q6_K) == 210);
static_assert(sizeof(Q8_K) == 292);
static_assert(sizeof(Q4_K_rows<8>) == 8 * sizeof(Q4_K) && sizeof(Q4_K_rows<16>) == 16 * sizeof(Q4_K));

// Helpers here are always_inline: x86_avx2/ code includes this header, and an out-of-line
// copy compiled with AVX2 must never be what portable code links against.

// Sizes of types we know but cannot compute with (kept for row_bytes / file validation).
constexpr size_t kQ8_1Bytes = 36, kQ2_KBytes = 84, kQ3_KBytes = 110;

// Unpacks the j-th (0..7) 6-bit scale and min of a Q4_K / Q5_K super-block
// (ggml-quants.c get_scale_min_k4).
[[gnu::always_inline]] inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// ---- Internal activation format for the 32-element block types ("Q8A rows") ----
// One token's row of n_in activations, nb = n_in / 32 blocks, nbp = nb rounded up to 8:
//   int8  qs[nb][32]   q = round_half_even(x * 127 / amax), the ggml quantize_row_q8_0 rule
//   float d[nbp]       block scale, the fp16-rounded value ggml would store (0-padded)
//   float s[nbp]       partner sum term (0-padded), see Q8AMode
// Scales live in their own arrays so kernels can load 8 consecutive blocks' scales at once.
// The row stride is a multiple of 32 bytes; the buffer start is 64-byte aligned.
enum class Q8AMode {
  kNone,      // s unused (Q8_0 weights)
  kSumFp16,   // s = fp16(d_unrounded * sum(q)), exactly ggml's block_q8_1.s (Q4_1, Q5_1)
  kSumExact,  // s = d * sum(q) in f32 (Q4_0, Q5_0: the -8 / -16 offset folded in as a min)
};

[[gnu::always_inline]] inline int64_t q8a_nbp(int64_t n_in) { return ((n_in / kQK) + 7) / 8 * 8; }
[[gnu::always_inline]] inline size_t q8a_row_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK) * kQK + static_cast<size_t>(q8a_nbp(n_in)) * 8;
}
struct Q8ARow {
  const int8_t* qs;
  const float* d;
  const float* s;
};
[[gnu::always_inline]] inline Q8ARow q8a_row(const void* row, int64_t n_in) {
  const auto* p = static_cast<const uint8_t*>(row);
  const int64_t nb = n_in / kQK;
  const auto* d = reinterpret_cast<const float*>(p + nb * kQK);
  return {reinterpret_cast<const int8_t*>(p), d, d + q8a_nbp(n_in)};
}

}  // namespace kvz::blk

// Portable scalar reference for every supported block type: dequantization (bitwise equal
// to gguf-py's dequantizer), activation quantization (bitwise equal to ggml's x86 AVX2
// quantize_row_q8_0 / q8_1 and to quantize_row_q8_K_ref) and dot products whose integer
// parts are exact, so ISA kernels differ from it only in f32 summation order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dispatch.h"

namespace kvz::qref {

using DequantFn = void (*)(const void* src, float* dst, int64_t n);
// Dequantizer for type t; nullptr if unsupported.
DequantFn dequantizer(DType t);

void quantize_q8a(const float* x, int64_t n_in, void* dst, blk::Q8AMode mode);
void quantize_q8k(const float* x, int64_t n_in, void* dst);

// Fills the reference vec_dot / gemm / quantize entries of t.
void fill_table(KernelTable& t);

// Tile loop over vec_dot, for types without a register-tiled gemm.
template <VecDotFn kDot>
void gemm_by_vec_dot(int64_t n_in, const void* w, size_t w_stride, const void* x, size_t x_stride,
                     int64_t n_rows, int64_t n_tok, float* y, int64_t ldy) {
  constexpr int64_t kRowTile = 16;  // rows reused from L1 across all tokens
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRowTile) {
    const int64_t r1 = r0 + kRowTile < n_rows ? r0 + kRowTile : n_rows;
    for (int64_t it = 0; it < n_tok; ++it)
      for (int64_t r = r0; r < r1; ++r) y[it * ldy + r] = kDot(n_in, wb + r * w_stride, xb + it * x_stride);
  }
}

}  // namespace kvz::qref

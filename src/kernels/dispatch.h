// The kernel table: one set of function pointers per ISA, picked once at first use from
// runtime CPU detection. Only src/kernels/ includes this header; the rest of the engine
// uses kernels/types.h (matmul, dequantize_row).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ref/blocks.h"
#include "kernels/types.h"

namespace kvz {

// Activation format a weight type is multiplied with.
enum class Partner {
  kF32,  // F32 / F16 / BF16 weights: plain f32 activations, stride n_in floats
  kQ8A,  // 32-element block types: blk "Q8A rows" (blocks.h)
  kQ8K,  // K-quants: blk::Q8_K blocks of 256
};

// Dot product of one weight row (n elements, the weight type's blocks) with one activation
// row in the partner format.
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* x_row);

// y[t * ldy + r] = dot(weight row r, activation row t) for r < n_rows, t < n_tok.
// w: n_rows rows, w_stride bytes apart; x: n_tok partner rows, x_stride bytes apart.
// Every output is computed by the same instruction sequence whatever the tile it falls
// in, so results do not depend on n_rows, n_tok or the thread split.
using GemmFn = void (*)(int64_t n_in, const void* w, size_t w_stride, const void* x, size_t x_stride,
                        int64_t n_rows, int64_t n_tok, float* y, int64_t ldy);

// One activation row of n_in floats to the partner format at dst.
using QuantizeQ8AFn = void (*)(const float* x, int64_t n_in, void* dst, blk::Q8AMode mode);
using QuantizeQ8KFn = void (*)(const float* x, int64_t n_in, void* dst);

struct TypeKernels {
  VecDotFn vec_dot = nullptr;
  GemmFn gemm = nullptr;
  // The same for weights in the interleaved layout of `group` rows (WeightView::interleave):
  // w points at a group start; full groups are interleaved, a last n_rows % group rows
  // row-major; w_stride is still the row size. Results equal gemm's bitwise. Null (group 0):
  // not available.
  GemmFn gemm_i = nullptr;
  int group = 0;
};

constexpr int kMaxTypeId = 31;  // by_type is indexed by the GGUF type id

struct KernelTable {
  const char* isa = "ref";
  QuantizeQ8AFn quantize_q8a = nullptr;
  QuantizeQ8KFn quantize_q8k = nullptr;
  TypeKernels by_type[kMaxTypeId] = {};

  const TypeKernels& of(DType t) const { return by_type[static_cast<uint32_t>(t)]; }
};

// Best table for this CPU (AVX-512 VNNI, else AVX2+FMA+F16C+BMI2, else the reference),
// chosen once; the environment variable KVZ_ISA=ref|avx2 picks a lesser one.
const KernelTable& kernels();
// The portable scalar table; tests compare every ISA against it.
const KernelTable& kernels_reference();
// The AVX2 table, or nullptr if this CPU cannot run it.
const KernelTable* kernels_avx2();
// The AVX-512 VNNI table (AVX2 entries where it has none), or nullptr.
const KernelTable* kernels_avx512();

// Kernel sets in increasing order of what they need from the CPU.
enum class Isa { kRef, kAvx2, kAvx512Vnni };
// The set every kernel family uses (matmul here, attention in kernels/attention.cpp): the
// best this CPU runs, or KVZ_ISA's; chosen once. An unknown or unavailable KVZ_ISA throws.
Isa active_isa();

Partner partner_of(DType t);
blk::Q8AMode q8a_mode_of(DType t);
// Bytes of one activation row of n_in elements in the partner format of weight type t.
size_t partner_row_bytes(DType t, int64_t n_in);

// matmul (types.h) with an explicit kernel table; matmul() uses kernels().
void matmul_with(const KernelTable& k, const WeightView& w, const float* x, int64_t n_tok, float* y,
                 ThreadPool* pool);

}  // namespace kvz

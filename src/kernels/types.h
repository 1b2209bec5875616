// Tensor element types as numbered in GGUF (ggml_type), and the per-type facts every
// other module needs: block size, bytes per block, dequantization, dot products.
// Block layouts follow the GGUF format description; they are file formats, so the byte
// layout is fixed and tested against the `gguf` Python package's own dequantizer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvz {

class ThreadPool;

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct TypeInfo {
  const char* name;  // "q4_1"
  int block_size;    // elements per block (1 for float types)
  size_t type_size;  // bytes per block
  bool supported;    // we can dequantize and multiply it
};

// Info for a raw GGUF type id; nullptr if the id is unknown to us.
const TypeInfo* type_info(uint32_t raw);
const TypeInfo& type_info(DType t);
const char* type_name(DType t);

// Bytes of a row of n elements; n must be a multiple of the block size (callers check).
size_t row_bytes(DType t, int64_t n);

// Dequantizes n elements (a multiple of the block size) of type t into dst (f32).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// A weight matrix: n_out rows of n_in elements of type `type` (row_bytes(type, n_in) bytes
// per row), row-major as in GGUF, or in one of the kernels' interleaved layouts.
struct WeightView {
  DType type = DType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const void* data = nullptr;
  // Rows per interleaved group; the last n_out % interleave rows stay row-major, and a group
  // fills exactly the bytes its rows did. Made by interleave_rows.
  //  1: row-major.
  //  kInterleaveRows (4): rows in groups of 4 whose blocks alternate (row 0 block 0, row 1
  //     block 0, row 2 block 0, row 3 block 0, row 0 block 1, ...), so a 4-row decode tile
  //     reads one sequential stream instead of four short ones (32-element block types).
  //  8 or 16 (Q4_K only): super-block ib of the group's rows as one blk::Q4_K_rows<8 / 16>,
  //     the rows' quant bytes interleaved four at a time for 8-row maddubs (AVX2) or
  //     16-row vpdpbusd (AVX-512) tiles.
  int interleave = 1;
};

constexpr int kInterleaveRows = 4;
constexpr int kInterleaveRowsMax = 16;  // the largest group of any layout

// Rows per group of the interleaved layout the active kernels multiply type t in; 0 when
// they read t row-major only.
int interleave_group(DType t);
// Writes w (row-major) into dst (row_bytes * n_out bytes) in the layout of `group` rows
// (kInterleaveRows; 8 or 16 for Q4_K) and returns the view of dst.
WeightView interleave_rows(const WeightView& w, void* dst, int group);

// y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tok.
// x: [n_tok][n_in] f32, y: [n_tok][n_out] f32. Activations are quantized internally to
// the weight type's dot-product partner (Q8_0 / Q8_1 / Q8_K blocks), as llama.cpp does,
// so results match llama.cpp's to within that rounding. `pool` may be null (one thread).
void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool* pool);

// Name of the matmul kernel set in use: "avx512vnni", "avx2" or "ref" (KVZ_ISA can pick a
// lesser one, kernels/dispatch.h).
const char* kernel_isa();

// Gathers row `row` of w as f32 (embedding lookup): dst[n_in].
void get_row(const WeightView& w, int64_t row, float* dst);

}  // namespace kvz

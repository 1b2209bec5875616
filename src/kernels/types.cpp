#include "kernels/types.h"

#include <cstring>

#include "core/error.h"
#include "kernels/dispatch.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/quant_ref.h"

namespace kvz {

namespace {

struct Entry {
  DType type;
  TypeInfo info;
};

// Block sizes and bytes per block from the GGUF format (ggml-common.h block_* structs).
constexpr Entry kTypes[] = {
    {DType::F32, {"f32", 1, 4, true}},
    {DType::F16, {"f16", 1, 2, true}},
    {DType::BF16, {"bf16", 1, 2, true}},
    {DType::Q4_0, {"q4_0", blk::kQK, sizeof(blk::Q4_0), true}},
    {DType::Q4_1, {"q4_1", blk::kQK, sizeof(blk::Q4_1), true}},
    {DType::Q5_0, {"q5_0", blk::kQK, sizeof(blk::Q5_0), true}},
    {DType::Q5_1, {"q5_1", blk::kQK, sizeof(blk::Q5_1), true}},
    {DType::Q8_0, {"q8_0", blk::kQK, sizeof(blk::Q8_0), true}},
    {DType::Q8_1, {"q8_1", blk::kQK, blk::kQ8_1Bytes, false}},
    {DType::Q2_K, {"q2_k", blk::kQKK, blk::kQ2_KBytes, false}},
    {DType::Q3_K, {"q3_k", blk::kQKK, blk::kQ3_KBytes, false}},
    {DType::Q4_K, {"q4_k", blk::kQKK, sizeof(blk::Q4_K), true}},
    {DType::Q5_K, {"q5_k", blk::kQKK, sizeof(blk::Q5_K), true}},
    {DType::Q6_K, {"q6_k", blk::kQKK, sizeof(blk::Q6_K), true}},
    {DType::Q8_K, {"q8_k", blk::kQKK, sizeof(blk::Q8_K), false}},
};

const TypeInfo* find(uint32_t raw) {
  for (const Entry& e : kTypes)
    if (static_cast<uint32_t>(e.type) == raw) return &e.info;
  return nullptr;
}

const TypeInfo& checked(DType t) {
  const TypeInfo* ti = find(static_cast<uint32_t>(t));
  if (!ti) fail("unknown tensor type id {}", static_cast<uint32_t>(t));
  return *ti;
}

void require_supported(DType t, const char* what) {
  const TypeInfo& ti = checked(t);
  if (!ti.supported)
    fail("{}: tensor type {} is not supported (supported: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k)",
         what, ti.name);
}

}  // namespace

const TypeInfo* type_info(uint32_t raw) { return find(raw); }
const TypeInfo& type_info(DType t) { return checked(t); }
const char* type_name(DType t) {
  const TypeInfo* ti = find(static_cast<uint32_t>(t));
  return ti ? ti->name : "unknown";
}

size_t row_bytes(DType t, int64_t n) {
  const TypeInfo& ti = checked(t);
  return static_cast<size_t>(n / ti.block_size) * ti.type_size;
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  require_supported(t, "dequantize_row");
  const TypeInfo& ti = checked(t);
  if (n % ti.block_size != 0) fail("dequantize_row: {} elements is not a multiple of the {} block size {}", n, ti.name, ti.block_size);
  qref::dequantizer(t)(src, dst, n);
}

namespace {

// Row r's Q4_K block out of an R-row super-block group, and back.
template <int R>
void q4k_from_rows(const blk::Q4_K_rows<R>& g, int r, blk::Q4_K& b) {
  b.d = g.d[r];
  b.dmin = g.dmin[r];
  for (int k = 0; k < 12; ++k) b.scales[k] = g.scales[k][r];
  for (int j = 0; j < 4; ++j)
    for (int c = 0; c < 8; ++c) std::memcpy(b.qs + 32 * j + 4 * c, g.qs[j][c][r], 4);
}
template <int R>
void q4k_to_rows(const blk::Q4_K& b, int r, blk::Q4_K_rows<R>& g) {
  g.d[r] = b.d;
  g.dmin[r] = b.dmin;
  for (int k = 0; k < 12; ++k) g.scales[k][r] = b.scales[k];
  for (int j = 0; j < 4; ++j)
    for (int c = 0; c < 8; ++c) std::memcpy(g.qs[j][c][r], b.qs + 32 * j + 4 * c, 4);
}

// Row r (< R) of the Q4_K group at g, n_in elements, dequantized.
template <int R>
void q4k_group_row(const uint8_t* g, int r, int64_t n_in, float* dst) {
  const auto* gb = reinterpret_cast<const blk::Q4_K_rows<R>*>(g);
  for (int64_t b = 0; b < n_in / blk::kQKK; ++b) {
    blk::Q4_K q;
    q4k_from_rows(gb[b], r, q);
    dequantize_row(DType::Q4_K, &q, dst + b * blk::kQKK, blk::kQKK);
  }
}
// Rows [0, R) of a row-major Q4_K matrix (rows rb bytes apart) into one R-row group at out.
template <int R>
void q4k_make_group(const uint8_t* src, size_t rb, int64_t n_in, uint8_t* out) {
  auto* gb = reinterpret_cast<blk::Q4_K_rows<R>*>(out);
  for (int64_t b = 0; b < n_in / blk::kQKK; ++b)
    for (int r = 0; r < R; ++r) {
      blk::Q4_K q;
      std::memcpy(&q, src + r * rb + b * sizeof q, sizeof q);
      q4k_to_rows(q, r, gb[b]);
    }
}

bool is_q4k_group(DType t, int group) { return t == DType::Q4_K && (group == 8 || group == 16); }

}  // namespace

void get_row(const WeightView& w, int64_t row, float* dst) {
  if (row < 0 || row >= w.n_out) fail("get_row: row {} out of range [0, {})", row, w.n_out);
  const size_t rb = row_bytes(w.type, w.n_in);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int gr = w.interleave;
  if (gr == 1 || row >= w.n_out / gr * gr) {
    dequantize_row(w.type, base + static_cast<size_t>(row) * rb, dst, w.n_in);
    return;
  }
  const TypeInfo& ti = checked(w.type);
  const uint8_t* g = base + static_cast<size_t>(row / gr) * gr * rb;
  const int r = static_cast<int>(row % gr);
  if (is_q4k_group(w.type, gr)) {
    (gr == 8 ? q4k_group_row<8> : q4k_group_row<16>)(g, r, w.n_in, dst);
    return;
  }
  if (gr != kInterleaveRows) fail("get_row: unknown interleaved layout of {} rows", gr);
  // Block b of row r sits at group start + (b * 4 + r) blocks.
  for (int64_t b = 0; b < w.n_in / ti.block_size; ++b)
    dequantize_row(w.type, g + static_cast<size_t>(b * kInterleaveRows + r) * ti.type_size, dst + b * ti.block_size,
                   ti.block_size);
}

WeightView interleave_rows(const WeightView& w, void* dst, int group) {
  if (w.interleave != 1) fail("interleave_rows: the weight is already interleaved");
  const TypeInfo& ti = checked(w.type);
  if (ti.block_size == 1) fail("interleave_rows: {} has no blocks to interleave", ti.name);
  if (group != kInterleaveRows && !is_q4k_group(w.type, group))
    fail("interleave_rows: no {}-row interleaved layout for {}", group, ti.name);
  const size_t rb = row_bytes(w.type, w.n_in), bs = ti.type_size;
  const int64_t nb = w.n_in / ti.block_size, n_full = w.n_out / group * group;
  const auto* src = static_cast<const uint8_t*>(w.data);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n_full; g += group) {
    if (group != kInterleaveRows) {
      (group == 8 ? q4k_make_group<8> : q4k_make_group<16>)(src + g * rb, rb, w.n_in, out + g * rb);
      continue;
    }
    for (int64_t b = 0; b < nb; ++b)
      for (int r = 0; r < group; ++r) std::memcpy(out + g * rb + (b * group + r) * bs, src + (g + r) * rb + b * bs, bs);
  }
  std::memcpy(out + n_full * rb, src + n_full * rb, (w.n_out - n_full) * rb);
  WeightView v = w;
  v.data = dst;
  v.interleave = group;
  return v;
}

}  // namespace kvz

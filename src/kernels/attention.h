// Attention of a block of query rows against ONE KV head's segment (kvzip-spec §5): the
// segment is read once for all query rows given (the G query heads of its group, and in
// prefill several tokens), which is where a compressed cache saves time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvz {

// Storage type of the KV cache rows (one row = one token's key or value for one KV head,
// d values): F16 (the default, as llama.cpp's), or Q8_0 blocks in GGUF's layout (an f16
// scale and 32 int8 per 32 values: 34 bytes per 32 values, 53% of f16) for d a multiple
// of 32. Kernels convert K/V tiles to f32 either way; Q8_0 halves the bytes a long-context
// decode streams, at the cost of ~0.4% relative rounding per value.
enum class KvType : uint8_t { F16 = 0, Q8_0 = 1 };
size_t kv_row_bytes(KvType t, int d);
const char* kv_type_name(KvType t);
// "f16" / "q8_0"; anything else is a kvz::Error listing the choices.
KvType parse_kv_type(const std::string& s);
// n_rows rows of d values between f32 and the storage type (dst/src: n_rows * kv_row_bytes).
void kv_rows_to_f32(KvType t, const void* src, float* dst, int64_t n_rows, int d);
void f32_to_kv_rows(KvType t, const float* src, void* dst, int64_t n_rows, int d);

// q:     [n_rows][d] f32, row stride q_stride (floats)
// k, v:  [len] rows of the head's segment (post-RoPE keys), each kv_row_bytes(kt, d) bytes
// start: [n_rows] or nullptr (= all 0); limit: [n_rows]. Row i attends to keys
//        [start[i], limit[i]): limit gives causality by row index, start a sliding window
//        (each row of a prefill batch has its own window start).
// out:   [n_rows][d] f32, row stride out_stride
// scale: softmax scale (1/sqrt(d), or the model's own)
// d must be a multiple of 8; n_rows <= kAttnMaxRows (callers split larger blocks).
// lse:   [n_rows] or nullptr: each row's log-sum-exp of its scaled scores (-inf for an
//        empty range), so results over disjoint key ranges can be merged (split-K decode:
//        out = sum_s exp(lse_s - LSE) out_s with LSE = log sum_s exp(lse_s)).
// A row with an empty range (limit <= start) gets zeros.
constexpr int kAttnMaxRows = 64;
void attend_head(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                 const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                 float* lse = nullptr);

// KVzip scoring fused into the model's attention (kv/presses/kvzip.cpp): while
// attend_head_capture computes a block's logits it also copies, for up to three key ranges
// of the segment, each row's scaled logits: row i's logit of key j in range r goes to
// out[i * stride + col[r] + (j - lo[r])]. Keys a row does not see (past its limit, before
// its start) are not written.
struct LogitCapture {
  int n_ranges = 0;
  int64_t lo[3] = {}, hi[3] = {}, col[3] = {};
  float* out = nullptr;
  int64_t stride = 0;
};
// attend_head, always on the general (prefill) path, also filling `cap`. Outputs are bitwise
// those of attend_head (the decode-shaped path is bitwise the general one too).
void attend_head_capture(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                         const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                         float* lse, const LogitCapture& cap);

// Converts n f16 values to f32 / f32 to f16 (vectorised where the CPU allows).
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace kvz

// Portable attention kernel (see kernels/attention_impl.h).
#include <cstdint>
#include <cstring>

#include "core/fp16.h"

namespace kvz::attn_ref {
inline void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}
// GGUF Q8_0 blocks: f16 scale, then 32 int8.
inline void cvt_q8_0_f32(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
    uint16_t h;
    std::memcpy(&h, src, 2);
    const float d = fp16_to_f32(h);
    for (int j = 0; j < 32; ++j) dst[j] = d * static_cast<float>(static_cast<int8_t>(src[2 + j]));
  }
}
}  // namespace kvz::attn_ref

#define KVZ_ATTN_NS attn_ref
#include "kernels/attention_impl.h"
#include "kernels/kvzip_score_impl.h"

namespace kvz {
void attend_head_ref(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                     const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                     float* lse) {
  attn_ref::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}
void f16_to_f32_row_ref(const uint16_t* src, float* dst, int64_t n) { attn_ref::cvt_f16_f32(src, dst, n); }
void f32_to_f16_row_ref(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
}
void q8_0_to_f32_ref(const uint8_t* src, float* dst, int64_t n_blocks) { attn_ref::cvt_q8_0_f32(src, dst, n_blocks); }
void kvzip_score_head_ref(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const void* sys,
                          int64_t n_sys, const void* chunk, int64_t n_chunk, const void* rep, KvType kt,
                          const float* row_log_w, int d, float scale, float* colmax) {
  attn_ref::kvzip_score_impl(q, q_stride, n_rows, r_limit, sys, n_sys, chunk, n_chunk, rep, kt, row_log_w, d, scale,
                             colmax);
}
void swiglu_ref(const float* g, const float* u, float* o, int64_t n) { attn_ref::swiglu_impl(g, u, o, n); }
void geglu_tanh_ref(const float* g, const float* u, float* o, int64_t n) { attn_ref::geglu_impl(g, u, o, n); }
void attend_head_capture_ref(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit, const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride, float* lse, const LogitCapture& cap) {
  attn_ref::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse, &cap);
}
void kvzip_colmax_ref(const float* L, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys, int64_t n_chunk, const float* row_log_w, float* const* colmax) {
  attn_ref::kvzip_colmax_impl(L, stride, n_rows, r_limit, n_sys, n_chunk, row_log_w, colmax);
}
}  // namespace kvz

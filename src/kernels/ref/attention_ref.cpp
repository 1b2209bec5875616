// Portable attention kernel (see kernels/attention_impl.h).
#include <cstdint>

#include "core/fp16.h"

namespace kvz::attn_ref {
inline void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}
}  // namespace kvz::attn_ref

#define KVZ_ATTN_NS attn_ref
#include "kernels/attention_impl.h"
#include "kernels/kvzip_score_impl.h"

namespace kvz {
void attend_head_ref(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                     const uint16_t* k, const uint16_t* v, int d, float scale, float* out, int64_t out_stride,
                     float* lse) {
  attn_ref::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, d, scale, out, out_stride, lse);
}
void f16_to_f32_row_ref(const uint16_t* src, float* dst, int64_t n) { attn_ref::cvt_f16_f32(src, dst, n); }
void f32_to_f16_row_ref(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
}
void kvzip_score_head_ref(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const uint16_t* sys,
                         int64_t n_sys, const uint16_t* chunk, int64_t n_chunk, const uint16_t* rep, int d, float scale,
                         float* colmax) {
  attn_ref::kvzip_score_impl(q, q_stride, n_rows, r_limit, sys, n_sys, chunk, n_chunk, rep, d, scale, colmax);
}
}  // namespace kvz

// AVX2/FMA/F16C attention kernels (kernels/attention_impl.h, x86_avx2/attention_x86_impl.h).
// Only called after runtime detection (kernels/attention.cpp).
#define KVZ_ATTN_NS attn_avx2
#define KVZ_ATTN_DOT_ROWS 2
#define KVZ_ATTN_PV_ROWS 3
#define KVZ_ATTN_PV_U_NARROW 4
#define KVZ_ATTN_PV_U_WIDE 2
#include "kernels/x86_avx2/attention_x86_impl.h"

namespace kvz {
void attend_head_avx2(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                      const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                      float* lse) {
  attn_avx2::attend_head_x86(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}
void f16_to_f32_row_avx2(const uint16_t* src, float* dst, int64_t n) { attn_avx2::cvt_f16_f32(src, dst, n); }
void f32_to_f16_row_avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
}
void q8_0_to_f32_avx2(const uint8_t* src, float* dst, int64_t n_blocks) { attn_avx2::cvt_q8_0_f32(src, dst, n_blocks); }
void kvzip_score_head_avx2(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const void* sys,
                           int64_t n_sys, const void* chunk, int64_t n_chunk, const void* rep, KvType kt,
                           const float* row_log_w, int d, float scale, float* colmax) {
  attn_avx2::kvzip_score_impl(q, q_stride, n_rows, r_limit, sys, n_sys, chunk, n_chunk, rep, kt, row_log_w, d, scale,
                              colmax);
}
void swiglu_avx2(const float* g, const float* u, float* o, int64_t n) { attn_avx2::swiglu_impl(g, u, o, n); }
void geglu_tanh_avx2(const float* g, const float* u, float* o, int64_t n) { attn_avx2::geglu_impl(g, u, o, n); }
void attend_head_capture_avx2(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit, const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride, float* lse, const LogitCapture& cap) {
  attn_avx2::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse, &cap);
}
void kvzip_colmax_avx2(const float* L, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys, int64_t n_chunk, const float* row_log_w, float* const* colmax) {
  attn_avx2::kvzip_colmax_impl(L, stride, n_rows, r_limit, n_sys, n_chunk, row_log_w, colmax);
}
}  // namespace kvz

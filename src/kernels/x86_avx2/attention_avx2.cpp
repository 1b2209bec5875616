// AVX2/FMA/F16C attention kernel (see kernels/attention_impl.h). Only called after
// runtime detection (kernels/attention.cpp).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/fp16.h"

namespace kvz::attn_avx2 {
inline void cvt_f16_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = fp16_to_f32(src[i]);
}
// GGUF Q8_0 blocks (f16 scale, 32 int8) -> f32: sign-extend 8 bytes at a time, convert, scale.
inline void cvt_q8_0_f32(const uint8_t* src, float* dst, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
    uint16_t h;
    std::memcpy(&h, src, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(h));
    for (int j = 0; j < 32; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + j));
      _mm256_storeu_ps(dst + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
    }
  }
}
}  // namespace kvz::attn_avx2

#define KVZ_ATTN_NS attn_avx2
#include "kernels/attention_impl.h"
#include "kernels/kvzip_score_impl.h"

namespace kvz {
void attend_head_avx2(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                      const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                      float* lse) {
  attn_avx2::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
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
void swiglu_avx2(const float* g, const float* u, float* o, int64_t n) { attn_avx2::gated_impl<false>(g, u, o, n); }
void geglu_tanh_avx2(const float* g, const float* u, float* o, int64_t n) { attn_avx2::gated_impl<true>(g, u, o, n); }
}  // namespace kvz

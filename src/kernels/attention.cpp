// Entry points of the attention kernels: validate, then call the ISA variant chosen once
// from the CPU's features.
#include "kernels/attention.h"
#include "kernels/kvzip_score.h"

#include "core/error.h"

namespace kvz {

void attend_head_ref(const float*, int64_t, int, const int64_t*, const int64_t*, const uint16_t*, const uint16_t*,
                     int, float, float*, int64_t, float*);
void attend_head_avx2(const float*, int64_t, int, const int64_t*, const int64_t*, const uint16_t*, const uint16_t*,
                      int, float, float*, int64_t, float*);
void kvzip_score_head_ref(const float*, int64_t, int, const int64_t*, const uint16_t*, int64_t, const uint16_t*, int64_t,
                          const uint16_t*, int, float, float*);
void kvzip_score_head_avx2(const float*, int64_t, int, const int64_t*, const uint16_t*, int64_t, const uint16_t*,
                           int64_t, const uint16_t*, int, float, float*);
void f16_to_f32_row_ref(const uint16_t*, float*, int64_t);
void f16_to_f32_row_avx2(const uint16_t*, float*, int64_t);
void f32_to_f16_row_ref(const float*, uint16_t*, int64_t);
void f32_to_f16_row_avx2(const float*, uint16_t*, int64_t);

namespace {
struct AttnTable {
  decltype(&attend_head_ref) attend;
  decltype(&f16_to_f32_row_ref) to_f32;
  decltype(&f32_to_f16_row_ref) to_f16;
  decltype(&kvzip_score_head_ref) score;
};

AttnTable pick() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return {attend_head_avx2, f16_to_f32_row_avx2, f32_to_f16_row_avx2, kvzip_score_head_avx2};
#endif
  return {attend_head_ref, f16_to_f32_row_ref, f32_to_f16_row_ref, kvzip_score_head_ref};
}

// Chosen once; read-only afterwards (CPU features do not change under us).
const AttnTable& table() {
  static const AttnTable t = pick();
  return t;
}
}  // namespace

void attend_head(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                 const uint16_t* k, const uint16_t* v, int d, float scale, float* out, int64_t out_stride,
                 float* lse) {
  KVZ_ASSERT(d % 8 == 0 && d <= 256, "attention head size {} unsupported (multiple of 8, <= 256)", d);
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "attention block of {} rows", n_rows);
  table().attend(q, q_stride, n_rows, start, limit, k, v, d, scale, out, out_stride, lse);
}

void kvzip_score_head(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const ScoreKeys& keys,
                      int d, float scale, float* colmax) {
  KVZ_ASSERT(d % 8 == 0 && d <= 256, "score head size {} unsupported", d);
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "score block of {} rows", n_rows);
  table().score(q, q_stride, n_rows, r_limit, keys.sys, keys.n_sys, keys.chunk, keys.n_chunk, keys.rep, d, scale,
                colmax);
}

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) { table().to_f32(src, dst, n); }
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) { table().to_f16(src, dst, n); }

}  // namespace kvz

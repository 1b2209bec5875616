// Entry points of the attention kernels: validate, then call the ISA variant chosen once
// from the CPU's features.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/activation.h"
#include "kernels/dispatch.h"
#include "kernels/kvzip_score.h"

namespace kvz {

void attend_head_ref(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType, int,
                     float, float*, int64_t, float*);
void attend_head_avx2(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType,
                      int, float, float*, int64_t, float*);
void attend_head_avx512(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*, KvType,
                        int, float, float*, int64_t, float*);
void kvzip_score_head_avx512(const float*, int64_t, int, const int64_t*, const void*, int64_t, const void*, int64_t,
                             const void*, KvType, const float*, int, float, float*);
void kvzip_score_head_ref(const float*, int64_t, int, const int64_t*, const void*, int64_t, const void*, int64_t,
                          const void*, KvType, const float*, int, float, float*);
void kvzip_score_head_avx2(const float*, int64_t, int, const int64_t*, const void*, int64_t, const void*, int64_t,
                           const void*, KvType, const float*, int, float, float*);
void attend_head_capture_ref(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*,
                              KvType, int, float, float*, int64_t, float*, const LogitCapture&);
void kvzip_colmax_ref(const float*, int64_t, int, const int64_t*, int64_t, int64_t, const float*, float* const*);
void attend_head_capture_avx2(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*,
                              KvType, int, float, float*, int64_t, float*, const LogitCapture&);
void kvzip_colmax_avx2(const float*, int64_t, int, const int64_t*, int64_t, int64_t, const float*, float* const*);
void attend_head_capture_avx512(const float*, int64_t, int, const int64_t*, const int64_t*, const void*, const void*,
                              KvType, int, float, float*, int64_t, float*, const LogitCapture&);
void kvzip_colmax_avx512(const float*, int64_t, int, const int64_t*, int64_t, int64_t, const float*, float* const*);
void f16_to_f32_row_ref(const uint16_t*, float*, int64_t);
void f16_to_f32_row_avx2(const uint16_t*, float*, int64_t);
void f32_to_f16_row_ref(const float*, uint16_t*, int64_t);
void f32_to_f16_row_avx2(const float*, uint16_t*, int64_t);
void q8_0_to_f32_ref(const uint8_t*, float*, int64_t);
void q8_0_to_f32_avx2(const uint8_t*, float*, int64_t);
void swiglu_ref(const float*, const float*, float*, int64_t);
void swiglu_avx2(const float*, const float*, float*, int64_t);
void geglu_tanh_ref(const float*, const float*, float*, int64_t);
void geglu_tanh_avx2(const float*, const float*, float*, int64_t);

namespace {

struct AttnTable {
  decltype(&attend_head_ref) attend;
  decltype(&f16_to_f32_row_ref) to_f32;
  decltype(&f32_to_f16_row_ref) to_f16;
  decltype(&q8_0_to_f32_ref) q8_to_f32;
  decltype(&kvzip_score_head_ref) score;
  decltype(&swiglu_ref) swiglu;
  decltype(&geglu_tanh_ref) geglu;
  decltype(&attend_head_capture_ref) attend_capture;
  decltype(&kvzip_colmax_ref) colmax;
};

AttnTable reference_table() {
  return {attend_head_ref, f16_to_f32_row_ref,   f32_to_f16_row_ref, q8_0_to_f32_ref,
          kvzip_score_head_ref, swiglu_ref, geglu_tanh_ref, attend_head_capture_ref, kvzip_colmax_ref};
}

AttnTable pick() {
  // The matmul kernels' choice (same CPU checks, same compile flags per folder, same KVZ_ISA).
  switch (active_isa()) {
    case Isa::kAvx512Vnni:
      return {attend_head_avx512,      f16_to_f32_row_avx2, f32_to_f16_row_avx2, q8_0_to_f32_avx2,
              kvzip_score_head_avx512, swiglu_avx2,         geglu_tanh_avx2,     attend_head_capture_avx512,
              kvzip_colmax_avx512};
    case Isa::kAvx2:
      return {attend_head_avx2,      f16_to_f32_row_avx2, f32_to_f16_row_avx2, q8_0_to_f32_avx2,
              kvzip_score_head_avx2, swiglu_avx2,         geglu_tanh_avx2,     attend_head_capture_avx2,
              kvzip_colmax_avx2};
    case Isa::kRef: break;
  }
  return reference_table();
}

// Chosen once; read-only afterwards (CPU features do not change under us).
const AttnTable& table() {
  static const AttnTable t = pick();
  return t;
}

constexpr int kQ8Block = 32;
constexpr size_t kQ8BlockBytes = 2 + kQ8Block;

// One row to Q8_0 blocks: d = max|x| / 127, q = round(x / d) (GGUF's Q8_0 rule).
void quantize_row_q8_0(const float* x, uint8_t* dst, int d) {
  for (int b = 0; b < d / kQ8Block; ++b, x += kQ8Block, dst += kQ8BlockBytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    const uint16_t h = f32_to_fp16(scale);
    std::memcpy(dst, &h, 2);
    for (int j = 0; j < kQ8Block; ++j) dst[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lrintf(x[j] * inv)));
  }
}

}  // namespace

size_t kv_row_bytes(KvType t, int d) {
  return t == KvType::F16 ? static_cast<size_t>(d) * 2 : static_cast<size_t>(d / kQ8Block) * kQ8BlockBytes;
}

const char* kv_type_name(KvType t) { return t == KvType::F16 ? "f16" : "q8_0"; }

KvType parse_kv_type(const std::string& s) {
  if (s == "f16") return KvType::F16;
  if (s == "q8_0" || s == "q8") return KvType::Q8_0;
  fail("unknown KV cache type '{}' (choices: f16, q8_0)", s);
}

void kv_rows_to_f32(KvType t, const void* src, float* dst, int64_t n_rows, int d) {
  if (t == KvType::F16)
    table().to_f32(static_cast<const uint16_t*>(src), dst, n_rows * d);
  else
    table().q8_to_f32(static_cast<const uint8_t*>(src), dst, n_rows * (d / kQ8Block));
}

void f32_to_kv_rows(KvType t, const float* src, void* dst, int64_t n_rows, int d) {
  if (t == KvType::F16) {
    table().to_f16(src, static_cast<uint16_t*>(dst), n_rows * d);
    return;
  }
  KVZ_ASSERT(d % kQ8Block == 0, "q8_0 KV rows need d a multiple of {}, got {}", kQ8Block, d);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < n_rows; ++r) quantize_row_q8_0(src + r * d, out + r * kv_row_bytes(t, d), d);
}

void attend_head(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                 const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                 float* lse) {
  KVZ_ASSERT(d % 8 == 0 && d <= 256, "attention head size {} unsupported (multiple of 8, <= 256)", d);
  KVZ_ASSERT(kt == KvType::F16 || d % kQ8Block == 0, "q8_0 KV needs a head size multiple of 32, got {}", d);
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "attention block of {} rows", n_rows);
  table().attend(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}

void attend_head_capture(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                         const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                         float* lse, const LogitCapture& cap) {
  KVZ_ASSERT(d % 8 == 0 && d <= 256, "attention head size {} unsupported (multiple of 8, <= 256)", d);
  KVZ_ASSERT(kt == KvType::F16 || d % kQ8Block == 0, "q8_0 KV needs a head size multiple of 32, got {}", d);
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "attention block of {} rows", n_rows);
  KVZ_ASSERT(cap.n_ranges >= 0 && cap.n_ranges <= 3 && cap.out, "logit capture of {} ranges", cap.n_ranges);
  table().attend_capture(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse, cap);
}

void kvzip_colmax_from_logits(const float* logits, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys,
                              int64_t n_chunk, const float* row_log_w, float* const* colmax) {
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "score block of {} rows", n_rows);
  table().colmax(logits, stride, n_rows, r_limit, n_sys, n_chunk, row_log_w, colmax);
}

void kvzip_score_head(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const ScoreKeys& keys,
                      int d, float scale, float* colmax) {
  KVZ_ASSERT(d % 8 == 0 && d <= 256, "score head size {} unsupported", d);
  KVZ_ASSERT(n_rows >= 0 && n_rows <= kAttnMaxRows, "score block of {} rows", n_rows);
  table().score(q, q_stride, n_rows, r_limit, keys.sys, keys.n_sys, keys.chunk, keys.n_chunk, keys.rep, keys.type,
                keys.row_log_w, d, scale, colmax);
}

void swiglu_vec(const float* gate, const float* up, float* out, int64_t n) { table().swiglu(gate, up, out, n); }
void geglu_tanh_vec(const float* gate, const float* up, float* out, int64_t n) { table().geglu(gate, up, out, n); }

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) { table().to_f32(src, dst, n); }
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) { table().to_f16(src, dst, n); }

}  // namespace kvz

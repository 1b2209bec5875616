// The x86 attention kernels (x86_avx2/attention_x86_impl.h) built with AVX-512VL's 32 vector
// registers: the decode kernel scores 4 query rows per sweep of 4 keys (AVX2: 2, so a group
// of 3 rows converts every key twice) and runs P.V over 4 rows with 4 value vectors at a time.
// The decode P.V (pv_pass16) and the whole-tile prefill path use 16-wide vectors, every lane
// with the 8-wide steps' arithmetic, so results are bitwise the AVX2 build's (test_attention:
// Avx512BuildIsBitwiseAvx2). Only called after runtime detection
// (kernels/attention.cpp).
#define KVZ_ATTN_NS attn_avx512
#define KVZ_ATTN_DOT_ROWS 4
#define KVZ_ATTN_PV_ROWS 4
#define KVZ_ATTN_PV_U_NARROW 8
#define KVZ_ATTN_PV_U_WIDE 4
#define KVZ_ATTN_PAIR_ROWS 1  // prefill rows in pairs sharing K and V loads (32 registers)
#define KVZ_ATTN_FULL_TILES 1  // tiles every row sees whole in 512-bit registers (attention_tiles_avx512.h)
#include "kernels/x86_avx2/attention_x86_impl.h"

namespace kvz {
void attend_head_avx512(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit,
                        const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride,
                        float* lse) {
  attn_avx512::attend_head_x86(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse);
}
void kvzip_score_head_avx512(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const void* sys,
                             int64_t n_sys, const void* chunk, int64_t n_chunk, const void* rep, KvType kt,
                             const float* row_log_w, int d, float scale, float* colmax) {
  attn_avx512::kvzip_score_impl(q, q_stride, n_rows, r_limit, sys, n_sys, chunk, n_chunk, rep, kt, row_log_w, d,
                                scale, colmax);
}
void attend_head_capture_avx512(const float* q, int64_t q_stride, int n_rows, const int64_t* start, const int64_t* limit, const void* k, const void* v, KvType kt, int d, float scale, float* out, int64_t out_stride, float* lse, const LogitCapture& cap) {
  attn_avx512::attend_head_impl(q, q_stride, n_rows, start, limit, k, v, kt, d, scale, out, out_stride, lse, &cap);
}
void kvzip_colmax_avx512(const float* L, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys, int64_t n_chunk, const float* row_log_w, float* const* colmax) {
  attn_avx512::kvzip_colmax_impl(L, stride, n_rows, r_limit, n_sys, n_chunk, row_log_w, colmax);
}
}  // namespace kvz

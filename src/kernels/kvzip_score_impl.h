// Body of the KVzip scoring kernel, compiled per ISA like attention_impl.h (the includer
// defines KVZ_ATTN_NS and cvt_f16_f32, then includes attention_impl.h before this file).
// One pass computes all logits of a row block into a per-thread buffer; per row the
// log-sum-exp comes from those logits, then only the chunk columns are exponentiated
// again to update the running column max.
#include <vector>

namespace kvz::KVZ_ATTN_NS {

// logits of rows [0, n_rows) against n keys (f16, converted per tile), written to
// out[i * out_stride + j]; rows beyond lim[i] are left untouched (callers ignore them).
inline void logits_block(const float* q, int64_t q_stride, int n_rows, const void* k, KvType kvt, int64_t n, int d,
                         float scale, float* out, int64_t out_stride, float* kt) {
  const int nv = d / 8;
  const size_t rb = kv_row_bytes(kvt, d);
  for (int64_t r0 = 0; r0 < n; r0 += kTile) {
    const int nt = static_cast<int>(std::min<int64_t>(kTile, n - r0));
    cvt_rows(kvt, static_cast<const uint8_t*>(k) + r0 * rb, kt, nt, d);
    for (int i = 0; i < n_rows; ++i) {
      const float* qi = q + i * q_stride;
      float* oi = out + i * out_stride + r0;
      int j = 0;
      for (; j + 8 <= nt; j += 8) store8(oi + j, dot8x8(qi, kt + j * d, d) * splat(scale));
      for (; j < nt; ++j) oi[j] = dot8(qi, kt + j * d, nv) * scale;
    }
  }
}

// From logits L (row i at L + i * stride: n_sys system, n_chunk chunk, then r_limit[i] repeat
// columns), per row its log-sum-exp over those, then colmax[i][j] = max(colmax[i][j],
// exp(l_ij - lse_i + row_log_w[i])) over the chunk columns j.
inline void kvzip_colmax_impl(const float* L, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys,
                              int64_t n_chunk, const float* row_log_w, float* const* colmax_of_row) {
  for (int i = 0; i < n_rows; ++i) {
    const float* li = L + static_cast<int64_t>(i) * stride;
    float* colmax = colmax_of_row[i];
    const int64_t n = n_sys + n_chunk + r_limit[i];
    // max and sum of exp, 8 lanes at a time (each lane sums at most n / 8 terms of <= 1)
    int64_t j = 0;
    v8f vmx = splat(-std::numeric_limits<float>::infinity());
    for (; j + 8 <= n; j += 8) {
      const v8f x = load8(li + j);
      vmx = vmx > x ? vmx : x;
    }
    float mx = hmax(vmx);
    for (; j < n; ++j) mx = std::max(mx, li[j]);
    v8f vsum = splat(0.0f);
    for (j = 0; j + 8 <= n; j += 8) vsum += exp8(load8(li + j) - splat(mx));
    double sum = hsum(vsum);
    for (; j < n; ++j) sum += std::exp(li[j] - mx);
    // the row's log normaliser less its log weight: exp(l - lse) = p * w
    const float lse = mx + static_cast<float>(std::log(sum)) - (row_log_w ? row_log_w[i] : 0.0f);
    const float* lc = li + n_sys;
    j = 0;
    for (; j + 8 <= n_chunk; j += 8) {
      const v8f p = exp8(load8(lc + j) - splat(lse));
      v8f m = load8(colmax + j);
      m = p > m ? p : m;
      store8(colmax + j, m);
    }
    for (; j < n_chunk; ++j) colmax[j] = std::max(colmax[j], std::exp(lc[j] - lse));
  }
}

inline void kvzip_score_impl(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit,
                             const void* sys, int64_t n_sys, const void* chunk, int64_t n_chunk,
                             const void* rep, KvType kvt, const float* row_log_w, int d, float scale,
                             float* colmax) {
  int64_t r_max = 0;
  for (int i = 0; i < n_rows; ++i) r_max = std::max(r_max, r_limit[i]);
  const int64_t width = n_sys + n_chunk + r_max;
  thread_local std::vector<float> buf;
  thread_local std::vector<float> kt;
  buf.resize(static_cast<size_t>(n_rows) * width);
  kt.resize(static_cast<size_t>(kTile) * d);
  float* L = buf.data();
  logits_block(q, q_stride, n_rows, sys, kvt, n_sys, d, scale, L, width, kt.data());
  logits_block(q, q_stride, n_rows, chunk, kvt, n_chunk, d, scale, L + n_sys, width, kt.data());
  logits_block(q, q_stride, n_rows, rep, kvt, r_max, d, scale, L + n_sys + n_chunk, width, kt.data());
  float* rows[kMaxRows];
  for (int i = 0; i < n_rows; ++i) rows[i] = colmax;
  kvzip_colmax_impl(L, width, n_rows, r_limit, n_sys, n_chunk, row_log_w, rows);
}

}  // namespace kvz::KVZ_ATTN_NS

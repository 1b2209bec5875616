// Attention of a block of query rows against ONE KV head's segment (kvzip-spec §5): the
// segment is read once for all query rows given (the G query heads of its group, and in
// prefill several tokens), which is where a compressed cache saves time.
#pragma once

#include <cstdint>

namespace kvz {

// q:     [n_rows][d] f32, row stride q_stride (floats)
// k, v:  [len][d] f16 rows of the head's segment (post-RoPE keys)
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
                 const uint16_t* k, const uint16_t* v, int d, float scale, float* out, int64_t out_stride,
                 float* lse = nullptr);

// Converts n f16 values to f32 / f32 to f16 (vectorised where the CPU allows).
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace kvz

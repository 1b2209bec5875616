// The KVzip scoring kernel (kvzip-spec §3.2, §3.3), for one KV head and a block of query
// rows of the repeat pass. The softmax runs over three key blocks of the head's segment:
//   S = the system-prompt rows (always visible),
//   C = the current chunk's context rows (always visible; these are the scored columns),
//   R = the repeat input's own rows (causal: query row i sees R[0, r_limit[i])).
// Other context chunks are NOT in this softmax (they are in the model's real attention).
// For every C column j: colmax[j] = max(colmax[j], max_i softmax_i(j)). fp32 throughout;
// the score matrix is never materialised beyond one row block (memory O(rows * keys)).
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace kvz {

struct ScoreKeys {
  const void* sys;    // [n_sys] key rows (kv_row_bytes(type, d) bytes each)
  int64_t n_sys;
  const void* chunk;  // [n_chunk] key rows
  int64_t n_chunk;
  const void* rep;    // [max r_limit] key rows
  KvType type = KvType::F16;
  // Optional [n_rows]: row i's probabilities are multiplied by exp(row_log_w[i]) before the
  // column max (KVzip+'s 1/||h_j|| factor, kvzap-and-presses.md §1.1); nullptr = 1.
  const float* row_log_w = nullptr;
};

// q: [n_rows][d] f32 (stride q_stride), n_rows <= 64; colmax: [n_chunk], updated in place:
// colmax[j] = max(colmax[j], max_i p_i(j) * exp(row_log_w[i])).
void kvzip_score_head(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const ScoreKeys& keys,
                      int d, float scale, float* colmax);

// The scoring half of kvzip_score_head over logits already computed: the model's own,
// captured from its attention (attend_head_capture with the ranges S, C, R at columns 0,
// n_sys, n_sys + n_chunk), so the repeat pass does not compute them a second time. Row i
// (at logits + i * stride) holds n_sys + n_chunk + r_limit[i] logits; its probabilities
// (times exp(row_log_w[i])) update colmax[i][j] for the n_chunk chunk columns. colmax: one
// array per row, so the rows of one query head (KVzip+) or of one KV group share one.
void kvzip_colmax_from_logits(const float* logits, int64_t stride, int n_rows, const int64_t* r_limit, int64_t n_sys,
                              int64_t n_chunk, const float* row_log_w, float* const* colmax);

}  // namespace kvz

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

namespace kvz {

struct ScoreKeys {
  const uint16_t* sys;    // [n_sys][d] f16
  int64_t n_sys;
  const uint16_t* chunk;  // [n_chunk][d] f16
  int64_t n_chunk;
  const uint16_t* rep;    // [max r_limit][d] f16
};

// q: [n_rows][d] f32 (stride q_stride), n_rows <= 64; colmax: [n_chunk], updated in place.
void kvzip_score_head(const float* q, int64_t q_stride, int n_rows, const int64_t* r_limit, const ScoreKeys& keys,
                      int d, float scale, float* colmax);

}  // namespace kvz

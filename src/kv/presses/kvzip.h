// KVzip (Kim et al., arXiv:2505.23416): query-agnostic importance of each context KV pair,
// measured by how much attention the model pays to it when asked to reconstruct the
// context. Exact procedure: ../shared/docs/kvzip-spec.md §3 (reference: snu-mllab/KVzip
// model/wrapper.py `self_task`, `scoring`; attention/score.py `_get_score`).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cache/scores.h"
#include "model/session.h"

namespace kvz {

// Token pieces of the repeat prompt, tokenized separately (kvzip-spec §2.2).
struct KvzipRepeatPrompt {
  std::vector<int32_t> first;    // enc("\n\nRepeat the previous context exactly.")
  std::vector<int32_t> next;     // enc("\n\nRepeat the part of the previous context exactly, starting with ")
  std::vector<int32_t> postfix;  // closes the user turn, opens the assistant turn
  int n_cue = 8;                 // last ids of the previous chunk appended after `next`
};

struct KvzipScoreOptions {
  int64_t chunk = 2000;  // context tokens per reconstruction chunk
  // KVzip+ (kvzap-and-presses.md §1.1; kvpress kvzip_plus_normalization): each probability
  // a^g_{j,i} is weighted by ||W_O^g v_i|| / ||h_j|| before the max, h_j the repeat row's
  // attention input. `grams`: output_gram_matrices(model); computed when null.
  bool plus = false;
  const std::vector<float>* grams = nullptr;
};

// KVzip's context-length rule. A repeat pass runs after the context, at positions n_full..:
// its prompt (at most `overhead` ids, kvzip_repeat_overhead) and one chunk of context tokens,
// and is rolled back afterwards; so scoring needs overhead + chunk positions past the context
// and nothing more. Near the window the chunk shrinks to what fits, down to kKvzipMinChunk
// (or the whole context when that is shorter): below it the per-chunk prompt would cost more
// forward work than the chunk itself. Returns the chunk to use, or 0 when not even the
// smallest one fits below n_limit.
constexpr int64_t kKvzipMinChunk = 128;
int64_t kvzip_fit_chunk(int64_t n_full, int64_t n_ctx, int64_t n_limit, int64_t overhead, int64_t chunk);
// The longest prompt a repeat pass feeds before its chunk: max(first, next + n_cue) + postfix.
int64_t kvzip_repeat_overhead(const KvzipRepeatPrompt& p);
// Positions past the context that scoring with `chunk` needs at least (the smallest chunk
// kvzip_fit_chunk may shrink it to, plus the prompt): the up-front check of front ends.
int64_t kvzip_min_positions_after(int64_t n_ctx, int64_t overhead, int64_t chunk);

// Per-head Gram matrices of the output projection, G_g = W_O^g^T W_O^g ([d_head][d_head]),
// so ||W_O^g v||^2 = v^T G_g v. [n_layer][n_head][d_head][d_head] f32, built once per model
// from the dequantized weights (pool may be null).
std::vector<float> output_gram_matrices(const Model& m, ThreadPool* pool);

// ||W_O^g v||: sqrt(v^T G v) for one value row v of d_head values (G from output_gram_matrices).
float output_norm(const float* gram, const float* v, int d);
// -log ||h|| of one attention-input row of d values: KVzip+'s row weight, as a log
// (ScoreKeys::row_log_w).
float log_inv_norm(const float* h, int64_t d);

// Scores every context token of a freshly prefilled session whose cache holds exactly
// [sys (n_sys rows) | context (ctx_ids)] in every head, unpruned. Runs one repeat pass per
// chunk at positions n_full.. and restores the cache after each; the chunk is opt.chunk, shrunk
// by kvzip_fit_chunk to what fits in the session's window (an error when nothing fits).
// Returns [L][H][n_ctx].
// progress(done_tokens, total_tokens) after each chunk.
HeadScores kvzip_score(Session& s, int64_t n_sys, const std::vector<int32_t>& ctx_ids, const KvzipRepeatPrompt& prompt,
                       const KvzipScoreOptions& opt = {},
                       const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kvz

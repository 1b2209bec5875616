// KVzip (Kim et al., arXiv:2505.23416): query-agnostic importance of each context KV pair,
// measured by how much attention the model pays to it when asked to reconstruct the
// context. Exact procedure: ../shared/docs/kvzip-spec.md §3 (reference: snu-mllab/KVzip
// model/wrapper.py `self_task`, `scoring`; attention/score.py `_get_score`).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kv/scores.h"
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
};

// Scores every context token of a freshly prefilled session whose cache holds exactly
// [sys (n_sys rows) | context (ctx_ids)] in every head, unpruned. Runs one repeat pass per
// chunk at positions n_full.. and restores the cache after each. Returns [L][H][n_ctx].
// progress(done_tokens, total_tokens) after each chunk.
HeadScores kvzip_score(Session& s, int64_t n_sys, const std::vector<int32_t>& ctx_ids, const KvzipRepeatPrompt& prompt,
                       const KvzipScoreOptions& opt = {},
                       const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kvz

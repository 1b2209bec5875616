// The compression methods `kvzip eval` sweeps, resolved by name in one place
// (resolve_method). A method is a scorer (run once per sample, on the full cache) and a
// pruning step (run once per ratio, from the full cache again). Methods that share a
// scorer share its scores: the three KVzip levels cost one scoring pass per sample. Every
// other press of kv/press.h is available under its registry name; the runner's EvalMode
// decides which question, if any, a press that uses_question sees while scoring.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kv/kvzip_context.h"
#include "cache/scores.h"

namespace kvz {

using ProgressFn = std::function<void(int64_t, int64_t)>;

struct EvalMethodEnv {
  // [n_layer][n_head_kv] context-independent head scores (`kvzip score-heads`); when
  // empty, "head" uses the sample's own max-over-tokens KVzip scores.
  std::vector<float> head_scores;
  // The KVzap surrogate folder for method "kvzap" (the press's `dir` parameter).
  std::string kvzap_dir;
  int64_t kvzap_window = 128;  // kvzap@TAU: protected last context tokens
};

struct EvalMethod {
  std::string name;    // canonical
  std::string scorer;  // key of the shared scoring pass
  // Whether the scores depend on the question (Press::uses_question); false for KVzip,
  // which is query-agnostic by design and ignores `question`.
  bool uses_question = false;
  // question empty: query-agnostic scores; otherwise the question exactly as query() feeds it.
  std::function<HeadScores(KvzipContext&, const std::string& question, const ProgressFn&)> score;
  std::function<PruneReport(KvzipContext&, const HeadScores&, double ratio)> prune;
  // Cache positions the scorer needs for a context of n_ctx tokens in ctx (system prompt and
  // context included; KVzip adds its repeat pass at the smallest chunk it may shrink to):
  // what the runner checks against the window before it prefills a sample.
  std::function<int64_t(const KvzipContext&, int64_t n_ctx)> positions;
  // The prune ignores `ratio` (a threshold rule, kvzap@TAU): the kept fraction is what the
  // rule reaches. Such a method runs once per sample, not once per ratio of the sweep.
  bool ratio_free = false;
};

// Throws kvz::Error listing known_methods() for an unknown name.
EvalMethod resolve_method(const std::string& name, const EvalMethodEnv& env = {});
std::vector<std::string> known_methods();  // canonical names with their aliases, for --help

}  // namespace kvz

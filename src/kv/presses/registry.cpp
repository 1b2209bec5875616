// The one list of compression methods (STYLE.md: no static self-registration). Defaults
// follow kvpress 0.5.4 (../shared/docs/kvzap-and-presses.md §3) unless noted.
#include "kv/press.h"

namespace kvz {

std::unique_ptr<Press> make_kvzip(const PressParams&);
std::unique_ptr<Press> make_kvzip_plus(const PressParams&);
std::unique_ptr<Press> make_snapkv(const PressParams&);
std::unique_ptr<Press> make_pyramidkv(const PressParams&);
std::unique_ptr<Press> make_h2o(const PressParams&);
std::unique_ptr<Press> make_tova(const PressParams&);
std::unique_ptr<Press> make_expected_attention(const PressParams&);
std::unique_ptr<Press> make_knorm(const PressParams&);
std::unique_ptr<Press> make_streaming_llm(const PressParams&);
std::unique_ptr<Press> make_duo_attention(const PressParams&);
std::unique_ptr<Press> make_random(const PressParams&);
std::unique_ptr<Press> make_kvzap(const PressParams&);

const std::vector<MethodInfo>& press_registry() {
  using P = PressParam;
  static const std::vector<MethodInfo> r = {
      {"kvzip", "context reconstruction: max attention paid to each pair while the model repeats the context",
       {{"chunk", P::Int, 2000, 1, 1 << 20, "", "context tokens per repeat chunk"}}, PruneLevel::Pair, make_kvzip},
      {"kvzip_plus", "KVzip+: KVzip's attention weighted by ||W_O v|| / ||h|| (what KVzap learns; kvpress kvzip_plus)",
       {{"chunk", P::Int, 2000, 1, 1 << 20, "", "context tokens per repeat chunk"}}, PruneLevel::Pair, make_kvzip_plus},
      {"kvzap", "KVzap surrogate: predicted log KVzip+ score of each pair from its hidden state (one pass)",
       {{"dir", P::Text, 0, 0, 0, "", "surrogate folder from `kvzip train-kvzap` (ask: default ~/.cache/kvzip/kvzap/<model>-mlp)"}},
       PruneLevel::Pair, make_kvzap},
      {"snapkv", "pooled attention of the last `window` rows (the question in query-aware mode)",
       {{"window", P::Int, 64, 1, 1 << 16, "", "observation window rows"},
        {"kernel", P::Int, 5, 1, 255, "", "average-pooling kernel"}},
       PruneLevel::PairUniform, make_snapkv},
      {"pyramidkv", "SnapKV scores with per-layer budgets falling linearly with depth",
       {{"window", P::Int, 64, 1, 1 << 16, "", "observation window rows"},
        {"kernel", P::Int, 5, 1, 255, "", "average-pooling kernel"},
        {"beta", P::Real, 20, 1, 1e6, "", "pyramid steepness (last layer gets 1/beta of the mean budget)"}},
       PruneLevel::PairUniform, make_pyramidkv},
      {"h2o", "heavy hitters: attention each pair receives over all queries of the sequence",
       {{"normalize", P::Int, 1, 0, 1, "", "1: divide by the number of queries that see the pair (kvpress); 0: raw sum"}},
       PruneLevel::PairUniform, make_h2o},
      {"tova", "attention of the last row, averaged over all query heads",
       {}, PruneLevel::PairUniform, make_tova},
      {"expected_attention", "softmax of expected future-query logits (Gaussian queries, averaged RoPE) x value norm",
       {{"n_future", P::Int, 512, 1, 1 << 20, "", "future positions the RoPE rotation is averaged over"},
        {"n_sink", P::Int, 4, 0, 1 << 20, "", "first rows always kept, excluded from the statistics"},
        {"covariance", P::Int, 1, 0, 1, "", "include the query covariance term"},
        {"vnorm", P::Int, 1, 0, 1, "", "multiply by the value norm"},
        {"epsilon", P::Real, 0, 0, 1e6, "", "added before the value-norm rescaling"}},
       PruneLevel::PairUniform, make_expected_attention},
      {"knorm", "keys with the smallest L2 norm", {}, PruneLevel::PairUniform, make_knorm},
      {"streaming_llm", "attention sinks plus the most recent rows",
       {{"n_sink", P::Int, 4, 0, 1 << 20, "", "first rows (system prompt included) always kept"}},
       PruneLevel::PairUniform, make_streaming_llm},
      {"duo_attention", "retrieval heads keep everything, streaming heads sink + recent (our head scores)",
       {{"head_scores", P::Text, 0, 0, 0, "", "head scores from `kvzip score-heads` (empty: this context's KVzip)"},
        {"sink", P::Int, 128, 0, 1 << 20, "", "first rows kept by streaming heads"},
        {"recent", P::Int, 256, 0, 1 << 20, "", "last context rows kept by streaming heads"}},
       PruneLevel::Pair, make_duo_attention},
      {"random", "uniformly random scores (the floor)",
       {{"seed", P::Int, 0, 0, 9.0e15, "", "generator seed"}}, PruneLevel::PairUniform, make_random},
  };
  return r;
}

}  // namespace kvz

// DuoAttention-style head split (Xiao et al., arXiv:2410.10819): retrieval heads keep the
// whole context, streaming heads keep only `sink` + `recent` rows. Which heads retrieve comes
// from our context-independent head scores (`kvzip score-heads` file, kvzip-spec §4.3) or,
// without a file, from this context's KVzip scores (max over tokens; costs a KVzip scoring).
// As a score, with rank(h) in [0, 1) the head's rank by head score (best = highest):
//   s(h, r) = 2 + rank(h)  for r < sink or r >= n_full - recent   (every head's window)
//   s(h, r) = rank(h)      otherwise
// so the global top-k (level "pair") keeps all windows, then whole heads best-first; the
// budget, not a head ratio, decides how many heads retrieve (one head may be cut partway).
#include <algorithm>
#include <numeric>

#include "io/head_scores_file.h"
#include "kv/press.h"

namespace kvz {

namespace {

struct DuoAttention final : Press {
  std::string path;
  int64_t sink, recent;
  explicit DuoAttention(const PressParams& p)
      : path(p.text("head_scores")), sink(p.integer("sink")), recent(p.integer("recent")) {}
  HeadScores score(PressInput& in) override {
    const Model& m = in.session.model();
    const HParams& hp = m.hp();
    std::vector<float> hs;
    if (!path.empty()) {
      hs = load_head_scores(path, m.identity()).scores;
    } else {
      KvzipScoreOptions so;
      hs = head_scores_from_pairs(kvzip_score(in.session, in.n_sys, in.ctx_ids, in.repeat, so, in.progress));
    }
    // Ranks among the heads of evictable layers (a sliding-window layer's heads keep their
    // window and take no part in the split).
    const int n_heads = hp.n_layer * hp.n_head_kv;
    std::vector<int> order;
    for (int h = 0; h < n_heads; ++h)
      if (!hp.is_swa(h / hp.n_head_kv)) order.push_back(h);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return hs[a] < hs[b]; });  // worst first
    std::vector<float> rank(n_heads, 0.0f);
    for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = static_cast<float>(i) / order.size();
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const float r = rank[il * hp.n_head_kv + ih];
        float* s = out.head(il, ih);
        for (int64_t t = 0; t < in.n_ctx(); ++t) {
          const int64_t row = in.n_sys + t;
          s[t] = (row < sink || row >= in.n_full() - recent) ? 2.0f + r : r;
        }
      }
    return out;
  }
  // Without a head-scores file the head scores come from this context's KVzip repeat pass.
  int64_t positions_after_context(int64_t n_ctx, int64_t overhead) const override {
    return path.empty() ? kvzip_min_positions_after(n_ctx, overhead, KvzipScoreOptions{}.chunk) : 0;
  }
};

}  // namespace

std::unique_ptr<Press> make_duo_attention(const PressParams& p) { return std::make_unique<DuoAttention>(p); }

}  // namespace kvz

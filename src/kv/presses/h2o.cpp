// H2O (Zhang et al., arXiv:2306.14048): "heavy hitters" are the rows that accumulate the most
// attention over all queries of the prefill. With normalize = 1 (default) each row's sum is
// divided by the number of queries that can see it, as kvpress ObservedAttentionPress:
//   s(j) = 1/(G (n_seq - j)) sum_{g in group} sum_{i >= j} softmax_i(j)
// normalize = 0 keeps H2O's raw accumulated sum (favours early rows). Replays the whole
// sequence once with the observer (cost: one extra prefill plus its attention in fp32).
#include "kv/press.h"

namespace kvz {

namespace {

struct H2O final : Press {
  bool normalize;
  explicit H2O(const PressParams& p) : normalize(p.integer("normalize") != 0) {}
  HeadScores score(PressInput& in) override {
    const HParams& hp = in.session.model().hp();
    const int64_t n_seq = in.n_seq();
    AttentionSumObserver obs(hp, n_seq);
    observe_rows(in, 0, obs);
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    const double G = hp.n_group();
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const double* sum = obs.head(il, ih);
        float* s = out.head(il, ih);
        for (int64_t t = 0; t < in.n_ctx(); ++t) {
          const int64_t j = in.n_sys + t;
          s[t] = static_cast<float>(sum[j] / (G * (normalize ? static_cast<double>(n_seq - j) : 1.0)));
        }
      }
    return out;
  }
  bool uses_question() const override { return true; }
};

}  // namespace

std::unique_ptr<Press> make_h2o(const PressParams& p) { return std::make_unique<H2O>(p); }

}  // namespace kvz

// TOVA (Oren et al., arXiv:2401.06104): the last row's attention, averaged over ALL query
// heads of the layer, is the score of every KV head (one ranking per layer):
//   s(j) = 1/n_head sum_{heads} softmax_{last}(j),  s(last) = max_layer(s) + 1
// as kvpress TOVAPress. Query-agnostic: the last context token; query-aware: the question's
// last token.
#include <algorithm>

#include "kv/press.h"

namespace kvz {

namespace {

struct TOVA final : Press {
  HeadScores score(PressInput& in) override {
    const HParams& hp = in.session.model().hp();
    const int64_t n_seq = in.n_seq(), last = n_seq - 1;
    AttentionSumObserver obs(hp, n_seq);
    observe_rows(in, last, obs);
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    std::vector<double> a(n_seq);
    for (int il = 0; il < hp.n_layer; ++il) {
      std::fill(a.begin(), a.end(), 0.0);
      for (int ih = 0; ih < hp.n_head_kv; ++ih)
        for (int64_t j = 0; j < last; ++j) a[j] += obs.head(il, ih)[j] / hp.n_head;
      const double mx = *std::max_element(a.begin(), a.begin() + std::max<int64_t>(last, 1));
      a[last] = mx + 1.0;
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        float* s = out.head(il, ih);
        for (int64_t t = 0; t < in.n_ctx(); ++t) s[t] = static_cast<float>(a[in.n_sys + t]);
      }
    }
    return out;
  }
  bool uses_question() const override { return true; }
};

}  // namespace

std::unique_ptr<Press> make_tova(const PressParams&) { return std::make_unique<TOVA>(); }

}  // namespace kvz

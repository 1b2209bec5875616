// StreamingLLM (Xiao et al., arXiv:2309.17453): keep the first `n_sink` rows (attention
// sinks) and the most recent rows. As a score: sinks rank first, then recency,
//   s(r) = 2 for r < n_sink, else (r + 1) / n_full,
// so top-k at any budget keeps the sinks and the newest rows. kvpress StreamingLLMPress gives
// the same kept set at its budget with 0/1 scores. Rows are absolute ([sys | ctx]), like
// kvpress's n_sink, so with our system prompt (always kept) the sinks lie inside it.
#include "kv/press.h"

namespace kvz {

namespace {

struct StreamingLLM final : Press {
  int64_t n_sink;
  explicit StreamingLLM(const PressParams& p) : n_sink(p.integer("n_sink")) {}
  HeadScores score(PressInput& in) override {
    const HParams& hp = in.session.model().hp();
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    const double n_full = static_cast<double>(in.n_full());
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        float* s = out.head(il, ih);
        for (int64_t t = 0; t < in.n_ctx(); ++t) {
          const int64_t r = in.n_sys + t;
          s[t] = r < n_sink ? 2.0f : static_cast<float>((r + 1) / n_full);
        }
      }
    return out;
  }
};

}  // namespace

std::unique_ptr<Press> make_streaming_llm(const PressParams& p) { return std::make_unique<StreamingLLM>(p); }

}  // namespace kvz

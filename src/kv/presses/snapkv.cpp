// SnapKV (Li et al., arXiv:2404.14469, §4.2). The last w rows of the observed sequence (the
// observation window) vote for the earlier rows:
//   a(j)   = 1/(G w) sum_{g in group} sum_{i in window} softmax_i(j)       for j < n_seq - w
//   s(j)   = 1/k sum_{|j'-j| <= k/2} a(j')      (average pooling, zero padded, kernel k)
//   s(j)   = max_layer(s) + 1 for the window rows themselves (always kept)
// as kvpress SnapKVPress (mean over window and group, avg_pool1d with count_include_pad).
// Query-agnostic: the window is the context's tail. Query-aware: the sequence ends with the
// question, so the question's rows are the window (padded with the context's tail when the
// question has fewer than w tokens).
#include "kv/presses/snapkv.h"

#include <algorithm>

#include "core/error.h"

namespace kvz {

HeadScores snapkv_scores(PressInput& in, int64_t window, int64_t kernel) {
  const HParams& hp = in.session.model().hp();
  const int64_t n_seq = in.n_seq();
  const int64_t w = std::min(window, n_seq - 1);  // kvpress requires n_seq > w; shorter inputs shrink the window
  KVZ_ASSERT(w >= 1, "SnapKV needs at least two rows, the sequence has {}", n_seq);
  const int64_t from = n_seq - w;
  AttentionSumObserver obs(hp, n_seq);
  observe_rows(in, from, obs);
  const int G = hp.n_group();
  HeadScores out;
  out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
  std::vector<double> a(from), pooled(from);
  const int64_t half = kernel / 2;
  for (int il = 0; il < hp.n_layer; ++il) {
    double mx = -1e300;
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const double* sum = obs.head(il, ih);
      for (int64_t j = 0; j < from; ++j) a[j] = sum[j] / (static_cast<double>(G) * w);
      for (int64_t j = 0; j < from; ++j) {
        double acc = 0;
        for (int64_t jj = std::max<int64_t>(0, j - half); jj <= std::min(from - 1, j + half); ++jj) acc += a[jj];
        pooled[j] = acc / static_cast<double>(kernel);
        mx = std::max(mx, pooled[j]);
      }
      float* s = out.head(il, ih);
      for (int64_t t = 0; t < in.n_ctx(); ++t) {
        const int64_t j = in.n_sys + t;
        s[t] = j < from ? static_cast<float>(pooled[j]) : 0.0f;
      }
    }
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {  // window rows: above everything else in the layer
      float* s = out.head(il, ih);
      for (int64_t t = std::max<int64_t>(0, from - in.n_sys); t < in.n_ctx(); ++t) s[t] = static_cast<float>(mx + 1.0);
    }
  }
  return out;
}

namespace {

struct SnapKV final : Press {
  int64_t window, kernel;
  explicit SnapKV(const PressParams& p) : window(p.integer("window")), kernel(p.integer("kernel")) {}
  HeadScores score(PressInput& in) override { return snapkv_scores(in, window, kernel); }
  bool uses_question() const override { return true; }
};

}  // namespace

std::unique_ptr<Press> make_snapkv(const PressParams& p) { return std::make_unique<SnapKV>(p); }

}  // namespace kvz

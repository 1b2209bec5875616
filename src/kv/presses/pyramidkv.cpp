// PyramidKV (Cai et al., arXiv:2406.02069): SnapKV scores, with budgets that fall linearly
// from the first layer to the last. Budget rule as kvpress PyramidKVPress.get_layer_budget
// (itself from KVCache-Factory pyramidkv_utils.py), with q = context tokens, r = kept ratio:
//   cap = w + q r,  lo = (cap - w) / beta,  hi = 2 (cap - w) - lo
//   if hi >= q - w: hi = q - w, lo = 2 (cap - w) - hi
//   budget(l) = round(hi - l (hi - lo) / (L - 1)),  mean over layers = q r
// falling back to the uniform q r when the pyramid does not fit (q >= hi >= lo >= w fails).
#include <algorithm>
#include <cmath>

#include "kv/presses/snapkv.h"

namespace kvz {

namespace {

struct PyramidKV final : Press {
  int64_t window, kernel;
  double beta;
  explicit PyramidKV(const PressParams& p) : window(p.integer("window")), kernel(p.integer("kernel")), beta(p.num("beta")) {}
  HeadScores score(PressInput& in) override { return snapkv_scores(in, window, kernel); }
  bool uses_question() const override { return true; }
  std::vector<double> layer_ratios(int L, int64_t n_ctx, double ratio) const override {
    const double q = static_cast<double>(n_ctx), w = static_cast<double>(window);
    const double cap = w + q * ratio;
    double lo = (cap - w) / beta, hi = (cap - w) * 2 - lo;
    if (hi >= q - w) {
      hi = q - w;
      lo = (cap - w) * 2 - hi;
    }
    std::vector<double> r(L, ratio);
    if (!(q >= hi && hi >= lo && lo >= w)) return r;
    const double step = L > 1 ? (hi - lo) / (L - 1) : 0.0;
    for (int il = 0; il < L; ++il) r[il] = std::clamp(std::round(hi - il * step) / q, 1.0 / q, 1.0);
    return r;
  }
};

}  // namespace

std::unique_ptr<Press> make_pyramidkv(const PressParams& p) { return std::make_unique<PyramidKV>(p); }

}  // namespace kvz

// KNorm (Devoto et al., arXiv:2406.11430): keys with a small L2 norm draw high attention,
// so s(r) = -||k_r||_2 (post-RoPE key; RoPE preserves the norm). As kvpress KnormPress.
#include <cmath>

#include "core/fp16.h"
#include "kv/press.h"

namespace kvz {

namespace {

struct KNorm final : Press {
  HeadScores score(PressInput& in) override {
    const HParams& hp = in.session.model().hp();
    const KvCache& c = in.session.cache();
    const int d = hp.d_head;
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv && !hp.is_swa(il); ++ih) {  // window layers: never evicted, 0
        std::vector<float> k(static_cast<size_t>(in.n_ctx()) * d);
        c.keys_f32(il, ih, in.n_sys, in.n_ctx(), k.data());
        float* s = out.head(il, ih);
        for (int64_t t = 0; t < in.n_ctx(); ++t) {
          double ss = 0;
          for (int i = 0; i < d; ++i) {
            const double x = k[t * d + i];
            ss += x * x;
          }
          s[t] = static_cast<float>(-std::sqrt(ss));
        }
      }
    return out;
  }
};

}  // namespace

std::unique_ptr<Press> make_knorm(const PressParams&) { return std::make_unique<KNorm>(); }

}  // namespace kvz

// KVzap as a ratio-based press (arXiv 2601.07891; docs: kvzap-and-presses.md §1.2): the score
// of context token t in (layer il, KV head h) is the surrogate's predicted log KVzip+ score,
// s = f_il(h_t)[h], with h_t the layer's attention input (post-input-RMSNorm hidden state).
// One forward pass over the context with an observer that runs the surrogate on every
// batch's attention input; the policy then keeps the top fraction, so KVzap and KVzip compare
// at the same kept fraction. (Threshold-based streaming eviction: kv/kvzap_pruner.h.)
#include "core/error.h"
#include "kv/kvzap_model.h"
#include "kv/press.h"

namespace kvz {

namespace {

class SurrogateObserver final : public RowObserver {
 public:
  SurrogateObserver(const KvzapModel& m, HeadScores& out, int64_t n_sys) : m_(m), out_(out), n_sys_(n_sys) {}
  void on_attn_input(int il, const float* h, int64_t n, const KvCache& cache, ThreadPool& pool) override {
    const int64_t row0 = cache.seg(il, 0).len;  // rows are appended after this call
    pred_.resize(static_cast<size_t>(n) * m_.n_out());
    m_.predict(il, h, n, pred_.data(), scratch_, &pool);
    for (int64_t t = 0; t < n; ++t) {
      const int64_t c = row0 + t - n_sys_;
      if (c < 0 || c >= out_.n_ctx) continue;  // system prompt / question rows
      for (int ih = 0; ih < m_.n_out(); ++ih) out_.head(il, ih)[c] = pred_[static_cast<size_t>(t) * m_.n_out() + ih];
    }
  }
  void on_rows(int, const float*, int64_t, int64_t, const KvCache&, ThreadPool&) override {}

 private:
  const KvzapModel& m_;
  HeadScores& out_;
  int64_t n_sys_;
  std::vector<float> pred_, scratch_;
};

struct KvzapPress final : Press {
  std::string dir;
  explicit KvzapPress(std::string d) : dir(std::move(d)) {}
  HeadScores score(PressInput& in) override {
    if (dir.empty())
      fail("method kvzap needs its surrogate folder: --param dir=DIR (train one with `kvzip train-kvzap`)");
    const Model& model = in.session.model();
    const KvzapModel sur = KvzapModel::load(dir, model);
    const HParams& hp = model.hp();
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    SurrogateObserver obs(sur, out, in.n_sys);
    observe_rows(in, in.n_sys, obs);
    return out;
  }
};

}  // namespace

std::unique_ptr<Press> make_kvzap(const PressParams& p) { return std::make_unique<KvzapPress>(p.text("dir")); }

}  // namespace kvz

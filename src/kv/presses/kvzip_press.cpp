// KVzip (Kim et al., arXiv:2505.23416) as a registered press: the reconstruction-attention
// scores of presses/kvzip.cpp (kvzip-spec §3), query-agnostic by construction.
#include "kv/press.h"

namespace kvz {

namespace {

struct KvzipPress final : Press {
  int64_t chunk;
  bool plus;
  const Model* gram_model = nullptr;  // KVzip+: the model `grams` belong to
  std::vector<float> grams;
  KvzipPress(const PressParams& p, bool plus_) : chunk(p.integer("chunk")), plus(plus_) {}
  HeadScores score(PressInput& in) override {
    KvzipScoreOptions so;
    so.chunk = chunk;
    so.plus = plus;
    if (plus) {
      if (gram_model != &in.session.model()) {
        grams = output_gram_matrices(in.session.model(), &in.session.pool());
        gram_model = &in.session.model();
      }
      so.grams = &grams;
    }
    return kvzip_score(in.session, in.n_sys, in.ctx_ids, in.repeat, so, in.progress);
  }
  int64_t positions_after_context(int64_t n_ctx, int64_t overhead) const override {
    return kvzip_min_positions_after(n_ctx, overhead, chunk);
  }
};

}  // namespace

std::unique_ptr<Press> make_kvzip(const PressParams& p) { return std::make_unique<KvzipPress>(p, false); }
std::unique_ptr<Press> make_kvzip_plus(const PressParams& p) { return std::make_unique<KvzipPress>(p, true); }

}  // namespace kvz

// KVzip (Kim et al., arXiv:2505.23416) as a registered press: the reconstruction-attention
// scores of presses/kvzip.cpp (kvzip-spec §3), query-agnostic by construction.
#include "kv/press.h"

namespace kvz {

namespace {

struct KvzipPress final : Press {
  int64_t chunk;
  explicit KvzipPress(const PressParams& p) : chunk(p.integer("chunk")) {}
  HeadScores score(PressInput& in) override {
    KvzipScoreOptions so;
    so.chunk = chunk;
    return kvzip_score(in.session, in.n_sys, in.ctx_ids, in.repeat, so, in.progress);
  }
};

}  // namespace

std::unique_ptr<Press> make_kvzip(const PressParams& p) { return std::make_unique<KvzipPress>(p); }

}  // namespace kvz

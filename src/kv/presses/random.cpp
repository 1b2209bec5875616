// Random eviction: the floor every method must beat. s(l, h, t) ~ U[0, 1), independent,
// from a seeded generator (std::mt19937_64), so a run is reproducible.
#include <random>

#include "kv/press.h"

namespace kvz {

namespace {

struct Random final : Press {
  uint64_t seed;
  explicit Random(const PressParams& p) : seed(static_cast<uint64_t>(p.integer("seed"))) {}
  HeadScores score(PressInput& in) override {
    const HParams& hp = in.session.model().hp();
    HeadScores out;
    out.reset(hp.n_layer, hp.n_head_kv, in.n_ctx(), 0.0f);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (float& x : out.v) x = u(rng);
    return out;
  }
};

}  // namespace

std::unique_ptr<Press> make_random(const PressParams& p) { return std::make_unique<Random>(p); }

}  // namespace kvz

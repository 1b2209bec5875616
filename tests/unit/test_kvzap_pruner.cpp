// Streaming KVzap eviction (kv/kvzap_pruner.h) on the synthetic model, with a hand-made
// linear surrogate: layer 0 scores come from random weights (its input is the normalised
// token embedding, so its scores do not depend on earlier evictions); layer 1 has zero
// weights and biases +1000 (head 0: never evicted) and -1000 (head 1: evicted once out of the window).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <set>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kv/kvzap_pruner.h"
#include "kv/kvzip_context.h"
#include "kv/press.h"
#include "model/session.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

class KvzapPrunerTest : public test::SyntheticModelTest {
 protected:
  static KvzapModel surrogate(const HParams& hp) {
    KvzapModel m = KvzapModel::zeros(KvzapModel::Kind::Linear, hp.n_layer, hp.n_embd, hp.n_head_kv, 0);
    std::mt19937_64 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float& x : m.layer(0).w1) x = nd(rng);
    m.layer(1).b1 = {1e3f, -1e3f};
    return m;
  }
  static std::vector<int32_t> tokens(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % 256);
    return t;
  }
  static std::set<int32_t> positions(const KvCache& c, int il, int ih) {
    const HeadSegment& s = c.seg(il, ih);
    return std::set<int32_t>(s.pos.get(), s.pos.get() + s.len);
  }
  // Prefill in batches of 7, then `n_decode` single-token steps, all through the pruner;
  // logits of every step appended to `out`.
  static void run(KvzapPruner& p, const std::vector<int32_t>& ctx, const std::vector<int32_t>& dec,
                  std::vector<std::vector<float>>& out) {
    std::vector<float> lg;
    p.forward(ctx, LogitsMode::Last, &lg, 7);
    out.push_back(lg);
    for (int32_t t : dec) {
      p.forward(std::span<const int32_t>(&t, 1), LogitsMode::Last, &lg, 1);
      out.push_back(lg);
    }
  }
  static constexpr int kWindow = 8;
};

TEST_F(KvzapPrunerTest, EvictsExactlySubThresholdPairsOutsideWindowPerHead) {
  const HParams& hp = model_->hp();
  const KvzapModel sur = surrogate(hp);
  ThreadPool pool(2);
  const auto ctx = tokens(40, 1), dec = tokens(12, 2);
  std::vector<int32_t> all = ctx;
  all.insert(all.end(), dec.begin(), dec.end());

  // Layer-0 scores of every token, from a run that keeps everything (tau = -inf).
  Session full(*model_, pool);
  std::vector<std::vector<float>> lg_full;
  std::vector<std::vector<float>> s0(2);
  {
    KvzapPruner p(full, sur, {});
    run(p, ctx, dec, lg_full);
    EXPECT_EQ(full.cache().total_rows(), static_cast<int64_t>(all.size()) * hp.n_layer * hp.n_head_kv);
    EXPECT_DOUBLE_EQ(p.stats().kept_fraction(), 1.0);
    for (int ih = 0; ih < 2; ++ih)
      for (size_t r = 0; r < all.size(); ++r) s0[ih].push_back(p.score(0, ih, static_cast<int64_t>(r)));
  }
  // tau = the median of head 0's layer-0 scores.
  std::vector<float> sorted = s0[0];
  std::sort(sorted.begin(), sorted.end());
  const float tau = sorted[sorted.size() / 2];

  Session s(*model_, pool);
  KvzapPruner p(s, sur, {tau, kWindow});
  std::vector<std::vector<float>> lg;
  run(p, ctx, dec, lg);
  const auto n = static_cast<int32_t>(all.size());
  int64_t expect_evicted = 0;
  for (int ih = 0; ih < 2; ++ih) {
    std::set<int32_t> want0, want1;
    for (int32_t pos = 0; pos < n; ++pos) {
      const bool in_window = pos >= n - kWindow;
      if (in_window || s0[ih][pos] >= tau) want0.insert(pos);
      if (in_window || ih == 0) want1.insert(pos);
    }
    EXPECT_EQ(positions(s.cache(), 0, ih), want0) << "layer 0 head " << ih;
    EXPECT_EQ(positions(s.cache(), 1, ih), want1) << "layer 1 head " << ih;
    expect_evicted += 2 * n - static_cast<int64_t>(want0.size() + want1.size());
  }
  const int64_t entered = int64_t{n} * hp.n_layer * hp.n_head_kv;
  EXPECT_GT(expect_evicted, n);  // the test evicts something in both layers
  EXPECT_EQ(s.cache().total_rows(), entered - expect_evicted);
  EXPECT_NEAR(p.stats().kept_fraction(), 1.0 - static_cast<double>(expect_evicted) / entered, 1e-12);
  EXPECT_NEAR(p.stats().kept_fraction(1), 0.5 + 0.5 * kWindow / n, 1e-12);
  // Memory: the retained bytes are exactly the kept rows'.
  EXPECT_EQ(s.cache().bytes_used(), static_cast<size_t>(s.cache().total_rows()) * 2 * s.cache().row_bytes());
  // Eviction changed the output (else the logits comparison below proves nothing).
  EXPECT_NE(lg.back(), lg_full.back());
}

TEST_F(KvzapPrunerTest, LogitsEqualHandEvictionWithCompact) {
  const HParams& hp = model_->hp();
  const KvzapModel sur = surrogate(hp);
  ThreadPool pool(2);
  const auto ctx = tokens(40, 3), dec = tokens(10, 4);
  Session s(*model_, pool);
  KvzapPruner p(s, sur, {-0.5f, kWindow});
  std::vector<std::vector<float>> lg;
  run(p, ctx, dec, lg);
  std::vector<std::set<int32_t>> kept;
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) kept.push_back(positions(s.cache(), il, ih));

  // The same batches without a pruner; after each, rows that left the window and are absent
  // from the pruned run's final cache are evicted by hand with compact().
  Session ref(*model_, pool);
  auto evict_by_hand = [&] {
    const int64_t limit = ref.n_pos() - kWindow;
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const HeadSegment& sg = ref.cache().seg(il, ih);
        std::vector<uint8_t> keep(sg.len, 1);
        for (int64_t r = 0; r < sg.len; ++r)
          keep[r] = sg.pos[r] >= limit || kept[il * hp.n_head_kv + ih].count(sg.pos[r]) > 0;
        ref.cache().compact(il, ih, keep.data(), 16);
      }
  };
  std::vector<float> l;
  for (size_t b = 0; b < ctx.size(); b += 7) {
    const size_t m = std::min<size_t>(7, ctx.size() - b);
    ref.forward(std::span<const int32_t>(ctx.data() + b, m), LogitsMode::Last, &l, m);
    evict_by_hand();
  }
  EXPECT_EQ(l, lg[0]);
  for (size_t i = 0; i < dec.size(); ++i) {
    ref.forward(std::span<const int32_t>(&dec[i], 1), LogitsMode::Last, &l, 1);
    evict_by_hand();
    EXPECT_EQ(l, lg[i + 1]) << "decode step " << i;
  }
  EXPECT_EQ(ref.cache().total_rows(), s.cache().total_rows());
  EXPECT_LT(s.cache().total_rows(), static_cast<int64_t>(ctx.size() + dec.size()) * hp.n_layer * hp.n_head_kv);
}

TEST_F(KvzapPrunerTest, RestoreAfterNonUpdatingQueryIsExact) {
  const HParams& hp = model_->hp();
  const KvzapModel sur = surrogate(hp);
  ThreadPool pool(2);
  const auto ctx = tokens(30, 5), q = tokens(20, 6), after = tokens(6, 7);
  auto go = [&](bool with_query) {
    Session s(*model_, pool);
    KvzapPruner p(s, sur, {0.0f, kWindow});
    std::vector<float> lg;
    p.forward(ctx, LogitsMode::Last, &lg, 8);
    const KvCache before = s.cache().clone();
    if (with_query) {
      const Session::Checkpoint cp = s.checkpoint();
      p.begin_query();
      int64_t removed = 0;
      for (int32_t t : q) {
        s.forward(std::span<const int32_t>(&t, 1), LogitsMode::Last, &lg, 1);
        removed += p.prune();
      }
      EXPECT_GT(removed, 0);  // the query's own rows were evicted
      // Context rows are untouched inside the query.
      for (int il = 0; il < hp.n_layer; ++il)
        for (int ih = 0; ih < hp.n_head_kv; ++ih) {
          const auto pos = positions(s.cache(), il, ih);
          for (int32_t x : positions(before, il, ih)) EXPECT_TRUE(pos.count(x)) << il << " " << ih << " " << x;
        }
      s.restore(cp);
      p.end_query();
      for (int il = 0; il < hp.n_layer; ++il)
        for (int ih = 0; ih < hp.n_head_kv; ++ih) {
          const HeadSegment &a = s.cache().seg(il, ih), &b = before.seg(il, ih);
          EXPECT_EQ(a.len, b.len);
          if (a.len != b.len) continue;
          EXPECT_TRUE(std::equal(a.pos.get(), a.pos.get() + a.len, b.pos.get()));
          EXPECT_EQ(0, std::memcmp(a.k.get(), b.k.get(), a.len * before.row_bytes()));
          EXPECT_EQ(0, std::memcmp(a.v.get(), b.v.get(), a.len * before.row_bytes()));
        }
    }
    std::vector<std::vector<float>> out;
    for (int32_t t : after) {
      p.forward(std::span<const int32_t>(&t, 1), LogitsMode::Last, &lg, 1);
      out.push_back(lg);
    }
    return std::make_pair(out, s.cache().total_rows());
  };
  const auto a = go(false), b = go(true);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
}

TEST_F(KvzapPrunerTest, MinusInfinityKeepsEverythingBitIdentical) {
  const KvzapModel sur = surrogate(model_->hp());
  ThreadPool pool(2);
  const auto ctx = tokens(33, 8);
  Session a(*model_, pool), b(*model_, pool);
  std::vector<float> la, lb;
  KvzapPruner p(a, sur, {});
  p.forward(ctx, LogitsMode::All, &la, 5);
  b.forward(ctx, LogitsMode::All, &lb, 5);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a.cache().total_rows(), b.cache().total_rows());
}

TEST_F(KvzapPrunerTest, ProtectedPrefixIsKept) {
  const HParams& hp = model_->hp();
  const KvzapModel sur = surrogate(hp);
  ThreadPool pool(2);
  Session s(*model_, pool);
  KvzapPruner p(s, sur, {0.0f, kWindow});
  p.protect_prefix(10);
  std::vector<float> lg;
  p.forward(tokens(40, 9), LogitsMode::Last, &lg, 7);
  std::set<int32_t> want;  // layer 1 head 1 scores -1000 everywhere: only prefix and window stay
  for (int32_t x = 0; x < 10; ++x) want.insert(x);
  for (int32_t x = 40 - kWindow; x < 40; ++x) want.insert(x);
  EXPECT_EQ(positions(s.cache(), 1, 1), want);
}

// The ratio-based press scores each context token with the same surrogate on the same
// hidden states: equal to what the streaming pruner records (tau = -inf: nothing evicted).
TEST_F(KvzapPrunerTest, PressScoresMatchStreamingScores) {
  const HParams& hp = model_->hp();
  const KvzapModel sur = surrogate(hp);
  const std::string dir = test::temp_path("kvz-kvzap-pruner-press");
  sur.save(dir, *model_);
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model_, pool, co);
  const auto ctx = tokens(60, 11);
  std::vector<float> streamed;
  {
    KvzapPruner p(c.session(), sur, {});
    c.prefill_ids(ctx);
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih)
        for (int64_t t = 0; t < 60; ++t) streamed.push_back(p.score(il, ih, c.n_sys() + t));
  }
  auto press = make_press("kvzap", {{"dir", dir}});
  const HeadScores& s = c.score(*press);
  ASSERT_EQ(s.v.size(), streamed.size());
  for (size_t i = 0; i < streamed.size(); ++i) EXPECT_NEAR(s.v[i], streamed[i], 1e-3f * (1 + std::fabs(streamed[i])));
  std::filesystem::remove_all(dir);
}

TEST_F(KvzapPrunerTest, MismatchedSurrogateIsAnError) {
  const HParams& hp = model_->hp();
  ThreadPool pool(1);
  Session s(*model_, pool);
  const KvzapModel bad = KvzapModel::zeros(KvzapModel::Kind::Linear, hp.n_layer, hp.n_embd + 1, hp.n_head_kv, 0);
  EXPECT_THROW(KvzapPruner(s, bad, {}), Error);
  EXPECT_THROW(kvzap_default_dir("/nonexistent/kvzap", "m.gguf", "/tmp"), Error);
}

// Sliding-window models: a surrogate that would evict every pair (bias -1000) evicts only in
// the global layers; each local layer keeps exactly its rolling window, through prefill,
// decode and a non-updating query.
TEST(KvzapPrunerGemma3, LocalLayersKeepTheirWindow) {
  auto model = test::load_tiny_gemma3(4, "kvzap-pruner-gemma3");  // layers 0, 2, ... local (window 8)
  const HParams& hp = model->hp();
  KvzapModel sur = KvzapModel::zeros(KvzapModel::Kind::Linear, hp.n_layer, hp.n_embd, hp.n_head_kv, 0);
  for (int il = 0; il < hp.n_layer; ++il) sur.layer(il).b1.assign(hp.n_head_kv, -1e3f);
  ThreadPool pool(2);
  Session s(*model, pool);
  KvzapOptions o;
  o.threshold = 0.0f;
  o.window = 4;
  KvzapPruner p(s, sur, o);
  std::vector<int32_t> ctx(40);
  for (int i = 0; i < 40; ++i) ctx[i] = (i * 37 + 5) % 256;
  std::vector<float> lg;
  p.forward(ctx, LogitsMode::Last, &lg, 7);
  for (int t = 0; t < 6; ++t) {
    const int32_t one = (t * 11 + 3) % 256;
    p.forward(std::span<const int32_t>(&one, 1), LogitsMode::Last, &lg, 1);
  }
  const int64_t n_pos = s.n_pos();
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const HeadSegment& sg = s.cache().seg(il, ih);
      if (hp.is_swa(il)) {  // every position the window still sees is there
        ASSERT_GE(sg.len, hp.n_swa - 1) << "local layer " << il;
        EXPECT_EQ(sg.pos[sg.len - 1], n_pos - 1);
        for (int64_t r = 1; r < sg.len; ++r) ASSERT_EQ(sg.pos[r], sg.pos[r - 1] + 1) << "local layer " << il << " has a gap";
      } else {  // only the protected recent window survives
        EXPECT_EQ(sg.len, o.window) << "global layer " << il;
      }
    }
  EXPECT_EQ(p.stats().entered[0], 0) << "local layers are not counted";
  EXPECT_GT(p.stats().entered[1], 0);
}

}  // namespace

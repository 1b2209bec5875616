// The press matrix (STYLE.md "Adding a compression method"): every registered method on a
// tiny synthetic model, both modes, plus the shared selection rules (AdaKV, per-layer
// budgets) and the method-specific invariants that need no reference implementation.
// Numerical agreement with kvpress: test_presses_kvpress.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/fp16.h"
#include "io/head_scores_file.h"
#include "kv/kvzip_context.h"
#include "kv/kvzap_model.h"
#include "kv/press.h"
#include "kvzap_random.h"
#include "synthetic_model.h"
#include "test_paths.h"

using namespace kvz;

namespace {

std::vector<int32_t> ids_of(int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 53 + salt * 7 + 3) % 256;
  return t;
}

// Bitwise snapshot of every head's rows.
struct CacheSnapshot {
  std::vector<int64_t> lens;
  std::vector<std::vector<uint8_t>> k, v;
  explicit CacheSnapshot(const KvCache& c) : lens(c.lengths()) {
    for (int il = 0; il < c.n_layer(); ++il)
      for (int ih = 0; ih < c.n_head_kv(); ++ih) {
        const HeadSegment& s = c.seg(il, ih);
        k.emplace_back(s.k.get(), s.k.get() + s.len * c.row_bytes());
        v.emplace_back(s.v.get(), s.v.get() + s.len * c.row_bytes());
      }
  }
  bool operator==(const CacheSnapshot& o) const { return lens == o.lens && k == o.k && v == o.v; }
};

class PressTest : public test::SyntheticModelTest {
 protected:
  // A random linear KVzap surrogate for the synthetic model, written once per suite and
  // removed with it.
  static std::string kvzap_dir() {
    const std::string d = test::temp_path("kvz-press-kvzap");
    if (!std::filesystem::exists(d)) test::random_linear_kvzap(*model_).save(d, *model_);
    return d;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(test::temp_path("kvz-press-kvzap"));
    SyntheticModelTest::TearDownTestSuite();
  }
  static std::map<std::string, std::string> test_params(const std::string& name) {
    if (name == "kvzap") return {{"dir", kvzap_dir()}};
    return {};
  }
};

constexpr int kCtx = 90;

ContextOptions small_opts() {  // KVzip's prefill check reserves one repeat chunk; the model has 512 positions
  ContextOptions co;
  co.scoring.chunk = 32;
  return co;
}

}  // namespace

TEST(PressRegistry, FactoryParsesAndRejects) {
  for (const MethodInfo& m : press_registry()) {
    EXPECT_NE(make_press(m.name), nullptr) << m.name;
    EXPECT_FALSE(m.description.empty()) << m.name;
  }
  EXPECT_EQ(parse_press_params("window=32,kernel=7"),
            (std::map<std::string, std::string>{{"window", "32"}, {"kernel", "7"}}));
  EXPECT_TRUE(parse_press_params("").empty());
  EXPECT_NE(make_press("snapkv", {{"window", "8"}}), nullptr);
  EXPECT_THROW(make_press("nope"), Error);
  EXPECT_THROW(make_press("snapkv", {{"windw", "8"}}), Error);
  EXPECT_THROW(make_press("snapkv", {{"window", "0"}}), Error);
  EXPECT_THROW(make_press("snapkv", {{"window", "2.5"}}), Error);
  EXPECT_THROW(make_press("snapkv", {{"window", "x"}}), Error);
  EXPECT_THROW(parse_press_params("window"), Error);
  EXPECT_EQ(resolve_press_params("pyramidkv", {{"beta", "4"}}).num("beta"), 4.0);
  EXPECT_EQ(resolve_press_params("pyramidkv", {}).integer("window"), 64);
}

// Every method, query-agnostic and query-aware: right shape, finite scores, the cache left
// bit-identical (replayed rows reproduce themselves), a prune at the method's own level
// meets the budget, and a second question rebuilds from the full cache.
TEST_F(PressTest, EveryMethodScoresPrunesAndRestores) {
  ThreadPool pool(2);
  for (const MethodInfo& mi : press_registry()) {
    SCOPED_TRACE(mi.name);
    ContextOptions co;
    co.retain_full = true;
    co.scoring.chunk = 32;
    KvzipContext c(*model_, pool, co);
    c.prefill_ids(ids_of(kCtx, 2));
    const CacheSnapshot before(c.session().cache());
    // Small windows so the synthetic context is long enough for them.
    std::map<std::string, std::string> params;
    if (mi.name == "snapkv" || mi.name == "pyramidkv") params = {{"window", "8"}};
    if (mi.name == "duo_attention") params = {{"sink", "8"}, {"recent", "16"}};
    if (mi.name == "expected_attention") params = {{"n_future", "32"}};
    if (mi.name == "kvzap") params = test_params(mi.name);
    auto press = make_press(mi.name, params);
    for (const std::string q : {"", "ab ab"}) {
      SCOPED_TRACE(q.empty() ? "query-agnostic" : "query-aware");
      const HeadScores& s = c.score(*press, q);
      ASSERT_EQ(s.n_layer, model_->hp().n_layer);
      ASSERT_EQ(s.n_head_kv, model_->hp().n_head_kv);
      ASSERT_EQ(s.n_ctx, kCtx);
      for (float x : s.v) ASSERT_TRUE(std::isfinite(x));
      EXPECT_TRUE(CacheSnapshot(c.session().cache()) == before) << "scoring must leave the cache as it was";
      EXPECT_EQ(c.session().n_pos(), c.n_sys() + kCtx);
      SelectOptions so;
      so.ratio = 0.5;
      so.level = mi.level;
      const PruneReport r = c.compress(*press, so, q);
      if (mi.name != "pyramidkv") {
        EXPECT_NEAR(r.ratio_true, 0.5, 0.5 / kCtx) << "budget met";
      }
      EXPECT_LT(r.kv_bytes_after, r.kv_bytes_before);
      GenerateParams gp;
      gp.n_predict = 3;
      gp.stop_at_eog = false;
      c.query("ab", gp, false);
    }
  }
}

// Sliding-window models (Gemma 3): every method on a tiny random gemma3 whose layers 0 and 2
// are local (window 8) and 1 and 3 global, both modes. Local layers get no scores and are
// never evicted: after scoring the cache is bit-identical (local windows included), a prune
// meets the budget over the global layers' pairs and leaves each local layer exactly its
// visible window, and a non-updating query puts every head back. (kvzap is left out: its
// surrogate file is made for the other synthetic model.)
TEST(PressSlidingWindow, EveryMethodScoresOnlyGlobalLayersOnGemma3) {
  auto model = test::load_tiny_gemma3(4, "press-gemma3");  // layers 0, 2, ... local (window 8)
  const HParams& hp = model->hp();
  ASSERT_TRUE(hp.is_swa(0) && !hp.is_swa(1) && hp.is_swa(2) && !hp.is_swa(3));
  ThreadPool pool(2);
  constexpr int kN = 48;  // six windows
  for (const MethodInfo& mi : press_registry()) {
    if (mi.name == "kvzap") continue;
    SCOPED_TRACE(mi.name);
    std::map<std::string, std::string> params;
    if (mi.name == "snapkv" || mi.name == "pyramidkv") params = {{"window", "8"}};
    if (mi.name == "duo_attention") params = {{"sink", "4"}, {"recent", "8"}};
    if (mi.name == "expected_attention") params = {{"n_future", "16"}};
    auto press = make_press(mi.name, params);
    for (const std::string q : {"", "ab ab"}) {
      SCOPED_TRACE(q.empty() ? "query-agnostic" : "query-aware");
      ContextOptions co;
      co.retain_full = true;
      co.scoring.chunk = 16;
      KvzipContext c(*model, pool, co);
      c.prefill_ids(ids_of(kN, 3));
      const CacheSnapshot before(c.session().cache());
      const HeadScores& s = c.score(*press, q);
      for (int il = 0; il < hp.n_layer; ++il)
        for (int ih = 0; ih < hp.n_head_kv && hp.is_swa(il); ++ih)
          for (int64_t t = 0; t < kN; ++t) ASSERT_EQ(s.head(il, ih)[t], 0.0f) << "local layer " << il << " scored";
      for (float x : s.v) ASSERT_TRUE(std::isfinite(x));
      EXPECT_TRUE(CacheSnapshot(c.session().cache()) == before) << "scoring must leave the cache as it was";

      SelectOptions so;
      so.ratio = 0.5;
      so.level = mi.level;
      const PruneReport r = c.compress(*press, so, q);
      const int64_t n_global_pairs = 2 * hp.n_head_kv * kN;
      if (mi.name != "pyramidkv") {
        EXPECT_NEAR(r.ratio_true, 0.5, 1.0 / n_global_pairs) << "budget over global pairs";
      }
      int64_t kept = 0;
      for (int il = 0; il < hp.n_layer; ++il)
        for (int ih = 0; ih < hp.n_head_kv; ++ih) {
          const HeadSegment& sg = c.session().cache().seg(il, ih);
          if (hp.is_swa(il)) {
            ASSERT_EQ(sg.len, hp.n_swa - 1) << "local layer " << il << ": its visible window, nothing evicted";
            EXPECT_EQ(sg.pos[sg.len - 1], c.n_sys() + kN - 1);
          } else {
            kept += sg.len - c.n_sys();
          }
        }
      if (mi.name != "pyramidkv") {
        EXPECT_NEAR(static_cast<double>(kept) / n_global_pairs, 0.5, 1.0 / n_global_pairs);
      }
      const CacheSnapshot pruned(c.session().cache());
      GenerateParams gp;
      gp.n_predict = 10;  // rolls the local windows
      gp.stop_at_eog = false;
      c.query("ab", gp, false);
      EXPECT_TRUE(CacheSnapshot(c.session().cache()) == pruned) << "a non-updating query restores every head";
    }
  }
}

// PyramidKV's per-layer budgets on a model with local layers are laid over the global
// layers: the first global layer keeps more than the last, and the total meets the ratio.
TEST(PressSlidingWindow, PyramidBudgetsSpanTheGlobalLayers) {
  auto model = test::load_tiny_gemma3(6, "press-gemma3-pyr");  // layers 0, 2, ... local (window 8)
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model, pool, co);
  constexpr int kN = 120;
  c.prefill_ids(ids_of(kN, 5));
  SelectOptions so;
  so.ratio = 0.5;
  so.level = PruneLevel::PairUniform;  // pyramidkv's own level: per-layer budgets apply
  const PruneReport r = c.compress(*make_press("pyramidkv", {{"window", "4"}, {"beta", "4"}}), so);
  std::vector<int64_t> kept;
  for (int il : {1, 3, 5}) kept.push_back(c.session().cache().seg(il, 0).len - c.n_sys());
  EXPECT_GT(kept[0], kept[1]);
  EXPECT_GT(kept[1], kept[2]);
  EXPECT_NEAR(r.ratio_true, 0.5, 0.02);
}

TEST_F(PressTest, QueryAwareScoresDependOnTheQuestionOnlyForQueryAwareMethods) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(kCtx, 5));
  for (const MethodInfo& mi : press_registry()) {
    SCOPED_TRACE(mi.name);
    auto press = make_press(mi.name, mi.name == "duo_attention" ? std::map<std::string, std::string>{{"recent", "16"}}
                                                                : test_params(mi.name));
    const std::vector<float> a = c.score(*press, "").v, b = c.score(*press, "ab cd ab").v;
    const std::vector<float> a2 = c.score(*press, "").v;
    EXPECT_EQ(a, a2) << "deterministic";
    EXPECT_EQ(a != b, press->uses_question()) << "the question changes the scores iff the method uses it";
  }
}

TEST_F(PressTest, StreamingLLMKeepsSinksAndTheNewestRows) {
  ThreadPool pool(1);
  KvzipContext c(*model_, pool, small_opts());
  c.prefill_ids(ids_of(kCtx, 3));
  const int64_t n_sink = c.n_sys() + 3;  // sinks reach 3 rows into the context
  auto press = make_press("streaming_llm", {{"n_sink", std::to_string(n_sink)}});
  SelectOptions so;
  so.ratio = 0.4;
  so.level = PruneLevel::PairUniform;
  c.compress(*press, so);
  const int64_t k = static_cast<int64_t>(std::floor(kCtx * 0.4));
  for (int il = 0; il < c.session().cache().n_layer(); ++il)
    for (int ih = 0; ih < c.session().cache().n_head_kv(); ++ih) {
      const HeadSegment& s = c.session().cache().seg(il, ih);
      ASSERT_EQ(s.len, c.n_sys() + k);
      std::vector<int32_t> want;
      for (int64_t r = 0; r < n_sink; ++r) want.push_back(static_cast<int32_t>(r));
      for (int64_t r = c.n_sys() + kCtx - (k - 3); r < c.n_sys() + kCtx; ++r) want.push_back(static_cast<int32_t>(r));
      EXPECT_EQ(std::vector<int32_t>(s.pos.get(), s.pos.get() + s.len), want);
    }
}

TEST_F(PressTest, SnapKVWindowIsAlwaysKeptAndPyramidBudgetsFall) {
  ThreadPool pool(2);
  KvzipContext c(*model_, pool, small_opts());
  c.prefill_ids(ids_of(kCtx, 4));
  auto press = make_press("snapkv", {{"window", "8"}});
  const HeadScores& s = c.score(*press);
  for (int il = 0; il < s.n_layer; ++il) {
    float mx_rest = -1;
    for (int ih = 0; ih < s.n_head_kv; ++ih)
      for (int t = 0; t < kCtx - 8; ++t) mx_rest = std::max(mx_rest, s.head(il, ih)[t]);
    // max + 1 over the layer's scored rows (the system prompt's included, as kvpress)
    const float win = s.head(il, 0)[kCtx - 1];
    EXPECT_GE(win, mx_rest + 1.0f);
    EXPECT_LT(win, 2.0f);
    for (int ih = 0; ih < s.n_head_kv; ++ih)
      for (int t = kCtx - 8; t < kCtx; ++t) EXPECT_EQ(s.head(il, ih)[t], win);
    EXPECT_GT(mx_rest, 0.0f);
  }
  // PyramidKV (kvpress get_layer_budget): 4000 tokens, keep 50%, window 64, beta 20, 32 layers:
  // lo = 2000 / 20 = 100, hi = 2 * 2000 - 100 = 3900, falling by 3800 / 31 per layer.
  auto pyr = make_press("pyramidkv");
  const std::vector<double> r = pyr->layer_ratios(32, 4000, 0.5);
  ASSERT_EQ(r.size(), 32u);
  EXPECT_NEAR(std::accumulate(r.begin(), r.end(), 0.0) / 32, 0.5, 1e-3) << "mean budget = ratio";
  for (int il = 1; il < 32; ++il) EXPECT_LE(r[il], r[il - 1]);
  EXPECT_DOUBLE_EQ(r[0], 3900.0 / 4000);
  EXPECT_DOUBLE_EQ(r[31], 100.0 / 4000);
  // No pyramid fits (keep 25%: lo = 50 < window): uniform, as kvpress.
  const std::vector<double> u = pyr->layer_ratios(32, 4000, 0.5 / 2);
  for (double x : u) EXPECT_EQ(x, 0.25);
}

TEST(PressPolicy, AdaKVSafeguardAndLayerBudgets) {
  // 2 layers x 2 heads x 10 tokens; head 0 of each layer scores far above head 1.
  HeadScores s;
  s.reset(2, 2, 10, 0.0f);
  for (int il = 0; il < 2; ++il)
    for (int t = 0; t < 10; ++t) {
      s.head(il, 0)[t] = 100.0f + t;
      s.head(il, 1)[t] = static_cast<float>(t);
    }
  SelectOptions o;
  o.ratio = 0.4;  // k = 4 per head, 8 per layer
  o.level = PruneLevel::AdaKV;
  o.ada_alpha = 0.5;  // safeguard 2 per head
  KeepMask m = select_pairs(s, o);
  for (int il = 0; il < 2; ++il) {
    const uint8_t* h0 = m.head(il, 0);
    const uint8_t* h1 = m.head(il, 1);
    EXPECT_EQ(std::count(h0, h0 + 10, 1), 6) << "the strong head takes the budget beyond the safeguard";
    EXPECT_EQ(std::count(h1, h1 + 10, 1), 2) << "the weak head keeps its safeguard";
    EXPECT_TRUE(h1[8] && h1[9]) << "its best pairs";
    for (int t = 4; t < 10; ++t) EXPECT_TRUE(h0[t]);
  }
  EXPECT_EQ(m.n_kept, 16);
  o.ada_alpha = 1.0;  // full safeguard = uniform per head
  SelectOptions u = o;
  u.level = PruneLevel::PairUniform;
  EXPECT_EQ(select_pairs(s, o).keep, select_pairs(s, u).keep);
  o.ada_alpha = 0.0;  // no safeguard: the layer's top 8
  m = select_pairs(s, o);
  EXPECT_EQ(std::count(m.head(0, 1), m.head(0, 1) + 10, 1), 0);
  // Per-layer budgets apply to pair-uniform and adakv.
  u.layer_ratios = {0.6, 0.2};
  m = select_pairs(s, u);
  EXPECT_EQ(std::count(m.head(0, 1), m.head(0, 1) + 10, 1), 6);
  EXPECT_EQ(std::count(m.head(1, 1), m.head(1, 1) + 10, 1), 2);
  u.layer_ratios = {0.6};
  EXPECT_THROW(select_pairs(s, u), Error);
  EXPECT_EQ(parse_prune_level("adakv"), PruneLevel::AdaKV);
}

TEST_F(PressTest, DuoAttentionKeepsWindowsThenWholeHeadsBestFirst) {
  ThreadPool pool(1);
  KvzipContext c(*model_, pool, small_opts());
  c.prefill_ids(ids_of(kCtx, 6));
  const int L = model_->hp().n_layer, H = model_->hp().n_head_kv;
  HeadScoreFile hf;
  hf.n_layer = L;
  hf.n_head_kv = H;
  hf.scores.resize(L * H);
  for (int i = 0; i < L * H; ++i) hf.scores[i] = static_cast<float>((i * 3) % (L * H));  // a permutation
  const std::string path = ::testing::TempDir() + "duo_heads.kvzh";
  save_head_scores(path, model_->identity(), hf);
  const int64_t recent = 10, sink = c.n_sys() + 5;
  auto press = make_press("duo_attention",
                          {{"head_scores", path}, {"sink", std::to_string(sink)}, {"recent", std::to_string(recent)}});
  // Budget: every window (15 rows per head) plus exactly one full head.
  const int64_t win = 5 + recent, total = int64_t{L} * H * kCtx;
  SelectOptions so;
  so.ratio = static_cast<double>(L * H * win + (kCtx - win)) / static_cast<double>(total);
  so.level = PruneLevel::Pair;
  c.compress(*press, so);
  const int best = static_cast<int>(std::max_element(hf.scores.begin(), hf.scores.end()) - hf.scores.begin());
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih)
      EXPECT_EQ(c.session().cache().seg(il, ih).len, c.n_sys() + (il * H + ih == best ? kCtx : win))
          << "layer " << il << " head " << ih;
  std::remove(path.c_str());
}

namespace {

// Queries and f32 keys of every layer from one single-batch forward of `ids`.
struct AttnRecorder : LayerObserver {
  int n_head = 0;
  std::vector<std::vector<float>> q, k;  // [layer] -> [n][n_head*d]; [layer*H + h] -> [n][d]
  void on_layer(int il, const float* qp, int64_t n, const KvCache& c, ThreadPool&) override {
    const int H = c.n_head_kv(), d = c.d_head();
    q.resize(std::max<size_t>(q.size(), il + 1));
    k.resize(std::max<size_t>(k.size(), static_cast<size_t>(il + 1) * H));
    q[il].assign(qp, qp + n * n_head * d);
    for (int h = 0; h < H; ++h) {
      const HeadSegment& s = c.seg(il, h);
      auto& kk = k[static_cast<size_t>(il) * H + h];
      kk.resize(s.len * d);
      c.keys_f32(il, h, 0, s.len, kk.data());
    }
  }
};

}  // namespace

// SnapKV, TOVA and H2O from their equations in double precision, on the queries and keys of
// one plain forward pass: checks the observer replay, the attention sums, the pooling and the
// normalisations (kvpress parity covers the real model; this pins the arithmetic).
TEST_F(PressTest, AttentionPressesMatchTheirEquations) {
  ThreadPool pool(2);
  KvzipContext c(*model_, pool, small_opts());
  const std::vector<int32_t> ctx_ids = ids_of(kCtx, 8);
  c.prefill_ids(ctx_ids);
  const HParams& hp = model_->hp();
  const int L = hp.n_layer, H = hp.n_head_kv, G = hp.n_group(), d = hp.d_head, NH = hp.n_head;
  const int64_t n_sys = c.n_sys(), T = n_sys + kCtx;
  Session s(*model_, pool);
  AttnRecorder rec;
  rec.n_head = NH;
  s.set_observer(&rec);
  std::vector<int32_t> all = model_->tokenizer().encode(c.tmpl().prefix, false, true);
  ASSERT_EQ(static_cast<int64_t>(all.size()), n_sys);
  all.insert(all.end(), ctx_ids.begin(), ctx_ids.end());
  s.forward(all, LogitsMode::None, nullptr, /*n_batch=*/T);
  // A[il][h][i][j], causal softmax, double.
  const double scale = hp.softmax_scale();
  auto attn = [&](int il, int h, int64_t i, std::vector<double>& row) {
    row.assign(T, 0.0);
    const float* qi = rec.q[il].data() + i * NH * d + h * d;
    const float* kk = rec.k[static_cast<size_t>(il) * H + h / G].data();
    double mx = -1e300;
    for (int64_t j = 0; j <= i; ++j) {
      double dot = 0;
      for (int e = 0; e < d; ++e) dot += static_cast<double>(qi[e]) * kk[j * d + e];
      row[j] = dot * scale;
      mx = std::max(mx, row[j]);
    }
    double z = 0;
    for (int64_t j = 0; j <= i; ++j) z += (row[j] = std::exp(row[j] - mx));
    for (int64_t j = 0; j <= i; ++j) row[j] /= z;
  };
  auto near = [](double got, double want) { return std::abs(got - want) <= 1e-5 + 1e-4 * std::abs(want); };
  std::vector<double> row;
  // SnapKV, window 8, kernel 5.
  {
    const int64_t w = 8, from = T - w;
    const HeadScores& got = c.score(*make_press("snapkv", {{"window", "8"}}));
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        std::vector<double> a(from, 0.0);
        for (int g = 0; g < G; ++g)
          for (int64_t i = from; i < T; ++i) {
            attn(il, ih * G + g, i, row);
            for (int64_t j = 0; j < from; ++j) a[j] += row[j] / (G * w);
          }
        for (int64_t t = 0; t < from - n_sys; ++t) {
          const int64_t j = n_sys + t;
          double p = 0;
          for (int64_t jj = std::max<int64_t>(0, j - 2); jj <= std::min(from - 1, j + 2); ++jj) p += a[jj];
          ASSERT_PRED2(near, got.head(il, ih)[t], p / 5) << "snapkv layer " << il << " head " << ih << " t " << t;
        }
      }
  }
  // TOVA: the last row, mean over all query heads.
  {
    const HeadScores& got = c.score(*make_press("tova"));
    for (int il = 0; il < L; ++il) {
      std::vector<double> a(T, 0.0);
      for (int h = 0; h < NH; ++h) {
        attn(il, h, T - 1, row);
        for (int64_t j = 0; j < T; ++j) a[j] += row[j] / NH;
      }
      for (int ih = 0; ih < H; ++ih)
        for (int64_t t = 0; t < kCtx - 1; ++t) ASSERT_PRED2(near, got.head(il, ih)[t], a[n_sys + t]) << "tova " << il;
    }
  }
  // H2O (normalised): mean attention over the rows that see each key, mean over the group.
  {
    const HeadScores& got = c.score(*make_press("h2o"));
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        std::vector<double> a(T, 0.0);
        for (int g = 0; g < G; ++g)
          for (int64_t i = 0; i < T; ++i) {
            attn(il, ih * G + g, i, row);
            for (int64_t j = 0; j <= i; ++j) a[j] += row[j];
          }
        for (int64_t t = 0; t < kCtx; ++t) {
          const int64_t j = n_sys + t;
          ASSERT_PRED2(near, got.head(il, ih)[t], a[j] / (G * static_cast<double>(T - j))) << "h2o " << il << " " << t;
        }
      }
  }
}

// Our adakv level against kvpress AdaKVPress.compress on fixed scores
// (tests/golden/gen/gen_adakv_kvpress_fixture.py): identical keep masks, safeguard included.
TEST(PressPolicy, AdaKVMatchesKvpressAdaKVPress) {
  std::ifstream f(test::source_dir() + "/tests/golden/data/adakv_kvpress.json");
  ASSERT_TRUE(f.good());
  const nlohmann::json fx = nlohmann::json::parse(f);
  const int H = fx["n_head_kv"], n = fx["n"];
  for (const auto& c : fx["cases"]) {
    const double alpha = c["alpha"], cr = c["compression_ratio"];
    SCOPED_TRACE(testing::Message() << "alpha " << alpha << " compression " << cr);
    HeadScores s;
    s.reset(1, H, n, 0.0f);
    const auto sc = c["scores"].get<std::vector<std::vector<float>>>();
    for (int ih = 0; ih < H; ++ih) std::copy(sc[ih].begin(), sc[ih].end(), s.head(0, ih));
    SelectOptions o;
    o.ratio = 1.0 - cr;  // same double kvpress multiplies by
    o.level = PruneLevel::AdaKV;
    o.ada_alpha = alpha;
    const KeepMask m = select_pairs(s, o);
    const auto want = c["keep"].get<std::vector<std::vector<int>>>();
    for (int ih = 0; ih < H; ++ih)
      for (int t = 0; t < n; ++t) ASSERT_EQ(m.head(0, ih)[t], want[ih][t]) << "head " << ih << " token " << t;
  }
}

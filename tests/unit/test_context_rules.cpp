// The context-length rule (KVzip's repeat chunk shrinks near the window; single-pass methods
// reserve nothing), pruning a loaded compressed context again from its scores, converting the
// KV type of a loaded cache, and saving the retained full cache; on a tiny random model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "kv/kvzip_context.h"
#include "kv/press.h"
#include "kv/presses/kvzip.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

using ContextRulesTest = test::SyntheticModelTest;

std::vector<int32_t> ids_of(int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 53 + salt * 7 + 3) % 256;
  return t;
}

}  // namespace

TEST(KvzipFitChunk, ShrinksNearTheWindowDownToTheMinimum) {
  // Room for the whole chunk, or the whole (short) context: unchanged.
  EXPECT_EQ(kvzip_fit_chunk(100, 90, 4096, 40, 2000), 90);
  EXPECT_EQ(kvzip_fit_chunk(3010, 3000, 8192, 40, 2000), 2000);
  // Near the window: what fits after the context and the prompt.
  EXPECT_EQ(kvzip_fit_chunk(800, 790, 1000, 40, 2000), 160);
  EXPECT_EQ(kvzip_fit_chunk(800, 790, 968, 40, 2000), kKvzipMinChunk);
  // Below the minimum chunk: nothing fits.
  EXPECT_EQ(kvzip_fit_chunk(800, 790, 967, 40, 2000), 0);
  // A context shorter than the minimum needs only itself.
  EXPECT_EQ(kvzip_fit_chunk(60, 50, 150, 40, 2000), 50);
  EXPECT_EQ(kvzip_fit_chunk(60, 50, 149, 40, 2000), 0);
  EXPECT_EQ(kvzip_min_positions_after(50, 40, 2000), 90);
  EXPECT_EQ(kvzip_min_positions_after(5000, 40, 2000), 40 + kKvzipMinChunk);
  EXPECT_EQ(kvzip_min_positions_after(5000, 40, 64), 104);
}

// The window rule front ends check before a prefill: the first check that fails, with its
// numbers; each bound is inclusive (a context that fills the window exactly fits).
TEST(WindowRule, TheFirstFailingCheckIsNamedWithItsNumbers) {
  const int64_t sys = 20, win = 1000;
  const std::vector<int64_t> none, passes = {900, 1000, 1200, 1300};
  EXPECT_TRUE(check_window(sys, 980, win, none, 0).ok());  // 20 + 980 = 1000: fits exactly
  EXPECT_EQ(check_window(sys, 0, win, passes, 10).fails, WindowFit::Fails::no_tokens);
  const WindowFit c = check_window(sys, 981, win, passes, 10);
  EXPECT_EQ(c.fails, WindowFit::Fails::context);
  EXPECT_EQ(c.n_ctx, 981);
  EXPECT_EQ(c.n_sys, sys);
  EXPECT_EQ(c.window, win);
  // Scoring: the first pass over the window, by index.
  const WindowFit p = check_window(sys, 500, win, passes, 10);
  EXPECT_EQ(p.fails, WindowFit::Fails::scoring);
  EXPECT_EQ(p.pass, 2u);
  EXPECT_EQ(p.need, 1200);
  // Answers: after the scoring passes fit; 0 means not checked.
  const std::vector<int64_t> fit = {900, 1000};
  EXPECT_TRUE(check_window(sys, 500, win, fit, 480).ok());
  const WindowFit a = check_window(sys, 500, win, fit, 481);
  EXPECT_EQ(a.fails, WindowFit::Fails::answers);
  EXPECT_EQ(a.need, 481);
  EXPECT_TRUE(check_window(sys, 980, win, fit, 0).ok());
}

TEST_F(ContextRulesTest, PositionsNeededDependOnTheMethod) {
  ThreadPool pool(1);
  KvzipContext c(*model_, pool);
  const int64_t overhead = kvzip_repeat_overhead(kvzip_repeat_prompt(*model_, c.tmpl()));
  EXPECT_GT(overhead, 0);
  const auto kvzip = make_press("kvzip");
  const auto chunked = make_press("kvzip", {{"chunk", "50"}});
  const auto snapkv = make_press("snapkv");
  const auto duo_file = make_press("duo_attention", {{"head_scores", "heads.kvzh"}});
  EXPECT_EQ(c.positions_needed(300, snapkv.get()), c.n_sys() + 300);
  EXPECT_EQ(c.positions_needed(300, duo_file.get()), c.n_sys() + 300);
  EXPECT_EQ(c.positions_needed(300, kvzip.get()), c.n_sys() + 300 + overhead + kKvzipMinChunk);
  EXPECT_EQ(c.positions_needed(300, chunked.get()), c.n_sys() + 300 + overhead + 50);
  EXPECT_EQ(c.positions_needed(300), c.n_sys() + 300 + overhead + kKvzipMinChunk);  // score(): KVzip
  EXPECT_EQ(compress_positions_needed(c.n_sys(), 300, *snapkv, kvzip_repeat_prompt(*model_, c.tmpl())),
            c.n_sys() + 300);
}

TEST_F(ContextRulesTest, ScoringNearTheWindowShrinksTheChunkInsteadOfRefusing) {
  ThreadPool pool(2);
  KvzipContext probe(*model_, pool);
  const int64_t overhead = kvzip_repeat_overhead(kvzip_repeat_prompt(*model_, probe.tmpl()));
  const int64_t window = model_->hp().n_ctx_train;
  const int64_t room = 130;  // the chunk that fits (the byte-level template is long)
  const int n = static_cast<int>(window - probe.n_sys() - overhead - room);
  ASSERT_GT(n, room);
  const std::vector<int32_t> ids = ids_of(n, 5);

  ContextOptions big;  // the default chunk (2000), far more than fits: the old rule refused
  KvzipContext a(*model_, pool, big);
  a.prefill_ids(ids);
  const HeadScores sa = a.score();
  ContextOptions exact;
  exact.scoring.chunk = room;  // what the shrunk chunk must be
  KvzipContext b(*model_, pool, exact);
  b.prefill_ids(ids);
  const HeadScores sb = b.score();
  ASSERT_EQ(sa.v.size(), sb.v.size());
  EXPECT_EQ(0, std::memcmp(sa.v.data(), sb.v.data(), sa.v.size() * sizeof(float)));

  // The press path (what compress() runs) shrinks the same way.
  const auto press = make_press("kvzip");
  KvzipContext c(*model_, pool);
  c.prefill_ids(ids);
  const HeadScores sc = c.score(*press);
  EXPECT_EQ(0, std::memcmp(sa.v.data(), sc.v.data(), sa.v.size() * sizeof(float)));

  // Fewer positions than the smallest chunk: a clear error, and the context is kept.
  KvzipContext d(*model_, pool);
  d.prefill_ids(ids_of(static_cast<int>(window - d.n_sys() - overhead - kKvzipMinChunk + 1), 5));
  try {
    d.score();
    FAIL() << "scoring should not fit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("for the repeat pass, which needs at least"), std::string::npos) << e.what();
  }
  // A method without a repeat pass compresses it.
  SelectOptions so;
  so.ratio = 0.5;
  so.level = PruneLevel::PairUniform;
  const PruneReport pr = d.compress(*make_press("snapkv"), so);
  EXPECT_NEAR(pr.ratio_true, 0.5, 0.01);
}

TEST_F(ContextRulesTest, RepruningALoadedContextEqualsPruningTheFullCache) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext full(*model_, pool, co);
  full.prefill_ids(ids_of(80, 2));
  full.score();
  const std::string path = test::temp_path("kvz_rules_c50") + ".kvz";
  // Saved at 0.5, re-pruned to 0.2 at the same level: top sets of these levels are nested.
  for (PruneLevel lv : {PruneLevel::Pair, PruneLevel::PairUniform}) {
    {
      KvzipContext c(*model_, pool, co);
      c.prefill_ids(ids_of(80, 2));
      c.set_scores(full.scores());
      SelectOptions so;
      so.level = lv;
      so.ratio = 0.5;
      c.prune(so);
      c.save(path);
    }
    KvzipContext loaded(*model_, pool, co);
    loaded.load(path);
    ASSERT_TRUE(loaded.pruned());
    EXPECT_NEAR(loaded.ratio_kept(), 0.5, 0.01);
    SelectOptions so;
    so.level = lv;
    so.ratio = 0.2;
    const PruneReport r = loaded.reprune(so);
    EXPECT_LT(r.kv_bytes_after, r.kv_bytes_before);

    KvzipContext direct(*model_, pool, co);
    direct.prefill_ids(ids_of(80, 2));
    direct.set_scores(full.scores());
    direct.prune(so);
    EXPECT_EQ(loaded.kept_mask(), direct.kept_mask()) << prune_level_name(lv);
    EXPECT_DOUBLE_EQ(loaded.ratio_kept(), direct.ratio_kept());
    // The same rows, so the same answer.
    GenerateParams gp;
    gp.n_predict = 5;
    gp.stop_at_eog = false;
    EXPECT_EQ(loaded.query("ab ab", gp, false).answer_ids, direct.query("ab ab", gp, false).answer_ids);
    // More than it holds: only from the full cache.
    so.ratio = 0.6;
    EXPECT_THROW(loaded.reprune(so), Error);
  }
  std::filesystem::remove(path);
}

TEST_F(ContextRulesTest, TheRetainedFullCacheIsSavedAndPrunedAtLoad) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  co.retain_full = true;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(70, 4));
  const size_t full_bytes = c.kv_bytes();
  c.score();
  SelectOptions so;
  so.ratio = 0.3;
  c.prune(so);
  ASSERT_TRUE(c.has_full());
  const std::string path = test::temp_path("kvz_rules_full") + ".kvz";
  c.save(path, "", /*full_cache=*/true);
  KvzipContext l(*model_, pool);
  l.load(path);
  EXPECT_FALSE(l.pruned());
  EXPECT_EQ(l.kv_bytes(), full_bytes);
  EXPECT_EQ(l.session().n_pos(), l.n_sys() + 70);
  l.prune(so);
  EXPECT_EQ(l.kept_mask(), c.kept_mask());
  KvzipContext nofull(*model_, pool);
  nofull.prefill_ids(ids_of(70, 4));
  nofull.score();
  nofull.prune(so);
  EXPECT_THROW(nofull.save(path, "", true), Error);
  std::filesystem::remove(path);
}

TEST(ContextRules, ConvertingTheKvTypeKeepsRowsAndPositions) {
  test::SyntheticSpec spec;
  spec.n_embd = 128;  // 4 heads of 32: q8_0 rows need a multiple of 32
  const std::string mpath = test::write_synthetic_llama(spec, "rules_q8");
  auto model = Model::load(mpath);
  std::remove(mpath.c_str());
  ThreadPool pool(1);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model, pool, co);
  c.prefill_ids(ids_of(64, 1));
  c.score();
  SelectOptions so;
  so.ratio = 0.5;
  c.prune(so);
  const KvCache before = c.session().cache().clone();
  c.convert_kv(KvType::Q8_0);
  const KvCache& after = c.session().cache();
  EXPECT_EQ(after.type(), KvType::Q8_0);
  EXPECT_LT(after.bytes_used(), before.bytes_used());
  const int d = before.d_head();
  for (int il = 0; il < before.n_layer(); ++il)
    for (int ih = 0; ih < before.n_head_kv(); ++ih) {
      const HeadSegment& a = before.seg(il, ih);
      const HeadSegment& b = after.seg(il, ih);
      ASSERT_EQ(a.len, b.len);
      EXPECT_EQ(0, std::memcmp(a.pos.get(), b.pos.get(), a.len * sizeof(int32_t)));
      std::vector<float> fa(a.len * d), fb(a.len * d);
      before.keys_f32(il, ih, 0, a.len, fa.data());
      after.keys_f32(il, ih, 0, a.len, fb.data());
      float amax = 0, err = 0;
      for (size_t i = 0; i < fa.size(); ++i) {
        amax = std::max(amax, std::fabs(fa[i]));
        err = std::max(err, std::fabs(fa[i] - fb[i]));
      }
      // q8_0 rounds each value to half a step of (block max / 127); a whole step bounds that
      // and the f16 scale's own rounding.
      EXPECT_LE(err, amax / 127.0f + 1e-6f);
    }
  GenerateParams gp;
  gp.n_predict = 3;
  gp.stop_at_eog = false;
  EXPECT_EQ(c.query("ab", gp, false).answer_ids.size(), 3u);
}

// KVzip: the scoring kernel and driver against a plain double-precision implementation of
// kvzip-spec §3 written here, cache restoration, eviction invariants and query semantics,
// on a tiny random model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/kvzip_score.h"
#include "io/head_scores_file.h"
#include "kv/kvzip_context.h"
#include "kv/policy.h"
#include "kv/presses/kvzip.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

// softmax over the key set {sys, chunk, rep[0..i]} for each row; returns colmax over chunk.
std::vector<double> naive_colmax(const std::vector<std::vector<float>>& q_rows, const std::vector<int64_t>& r_limit,
                                 const std::vector<std::vector<float>>& sys, const std::vector<std::vector<float>>& chunk,
                                 const std::vector<std::vector<float>>& rep, double scale) {
  std::vector<double> cm(chunk.size(), 0.0);
  for (size_t i = 0; i < q_rows.size(); ++i) {
    std::vector<double> l;
    auto dot = [&](const std::vector<float>& k) {
      double a = 0;
      for (size_t c = 0; c < k.size(); ++c) a += static_cast<double>(q_rows[i][c]) * k[c];
      return a * scale;
    };
    for (const auto& k : sys) l.push_back(dot(k));
    for (const auto& k : chunk) l.push_back(dot(k));
    for (int64_t j = 0; j < r_limit[i]; ++j) l.push_back(dot(rep[j]));
    double mx = -1e300, sum = 0;
    for (double x : l) mx = std::max(mx, x);
    for (double x : l) sum += std::exp(x - mx);
    for (size_t t = 0; t < chunk.size(); ++t) cm[t] = std::max(cm[t], std::exp(l[sys.size() + t] - mx) / sum);
  }
  return cm;
}

std::vector<float> f16_row(const uint16_t* p, int d) {
  std::vector<float> r(d);
  for (int c = 0; c < d; ++c) r[c] = fp16_to_f32(p[c]);
  return r;
}

using KvzipTest = test::SyntheticModelTest;

std::vector<int32_t> ids_of(int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 53 + salt * 7 + 3) % 256;
  return t;
}

// Records the queries of each layer and a copy of every head's keys as seen by the layer.
struct Recorder : LayerObserver {
  std::vector<std::vector<float>> q;                   // [layer] -> [n][n_head*d]
  std::vector<std::vector<std::vector<float>>> keys;   // [layer*H + h] -> rows
  void on_layer(int il, const float* qp, int64_t n, const KvCache& c, ThreadPool&) override {
    const int H = c.n_head_kv(), d = c.d_head();
    if (q.size() <= static_cast<size_t>(il)) {
      q.resize(il + 1);
      keys.resize(static_cast<size_t>(il + 1) * H);
    }
    const int n_head = static_cast<int>(c.n_head_kv()) * n_group;
    q[il].assign(qp, qp + n * n_head * d);
    for (int h = 0; h < H; ++h) {
      auto& ks = keys[static_cast<size_t>(il) * H + h];
      ks.clear();
      const HeadSegment& s = c.seg(il, h);
      for (int64_t r = 0; r < s.len; ++r) {
        ks.emplace_back(d);
        c.keys_f32(il, h, r, 1, ks.back().data());
      }
    }
  }
  int n_group = 1;
};

}  // namespace

TEST(KvzipKernel, ScoreHeadMatchesNaive) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int d = 64, n_sys = 7, n_chunk = 77, n_rep = 30, rows = 60;
  auto mk = [&](int n) {
    std::vector<uint16_t> v(static_cast<size_t>(n) * d);
    for (auto& x : v) x = f32_to_fp16(nd(rng));
    return v;
  };
  const auto ks = mk(n_sys), kc = mk(n_chunk), kr = mk(n_rep);
  std::vector<float> q(static_cast<size_t>(rows) * d);
  for (auto& x : q) x = 1.5f * nd(rng);
  std::vector<int64_t> lim(rows);
  for (int i = 0; i < rows; ++i) lim[i] = 1 + (i * 13) % n_rep;
  std::vector<float> cm(n_chunk, 0.0f);
  kvzip_score_head(q.data(), d, rows, lim.data(), ScoreKeys{ks.data(), n_sys, kc.data(), n_chunk, kr.data()}, d, 0.125f,
                   cm.data());
  auto rows_of = [&](const std::vector<uint16_t>& v, int n) {
    std::vector<std::vector<float>> r;
    for (int i = 0; i < n; ++i) r.push_back(f16_row(v.data() + static_cast<size_t>(i) * d, d));
    return r;
  };
  std::vector<std::vector<float>> qr;
  for (int i = 0; i < rows; ++i) qr.emplace_back(q.begin() + i * d, q.begin() + (i + 1) * d);
  const auto want = naive_colmax(qr, lim, rows_of(ks, n_sys), rows_of(kc, n_chunk), rows_of(kr, n_rep), 0.125);
  for (int t = 0; t < n_chunk; ++t) EXPECT_NEAR(cm[t], want[t], 1e-6 + 1e-5 * want[t]) << t;
}

namespace {

// Context of 50 tokens in chunks of 20 (last chunk 10), cue of 8 tokens: build every
// repeat input here from the spec, capture q/K with a recorder, compute the scores in
// double with the model's softmax scale, and compare with kvzip_score. Sliding-window
// layers must be left unscored (0) and, like every layer, restored exactly.
void check_driver_against_naive(const Model& model) {
  const HParams& hp = model.hp();
  ThreadPool pool(2);
  Session s(model, pool);
  const auto sys = ids_of(5, 1), ctx = ids_of(50, 2);
  KvzipRepeatPrompt rp{ids_of(4, 3), ids_of(6, 4), ids_of(3, 5), 8};
  std::vector<int32_t> all = sys;
  all.insert(all.end(), ctx.begin(), ctx.end());
  s.forward(all, LogitsMode::None, nullptr);
  const KvCache before = s.cache().clone();
  KvzipScoreOptions opt;
  opt.chunk = 20;
  const HeadScores got = kvzip_score(s, 5, ctx, rp, opt);

  // restored exactly
  EXPECT_EQ(s.n_pos(), 55);
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const HeadSegment &a = s.cache().seg(il, ih), &b = before.seg(il, ih);
      ASSERT_EQ(a.len, b.len);
      EXPECT_EQ(0, std::memcmp(a.k.get(), b.k.get(), a.len * hp.d_head * 2));
      EXPECT_EQ(0, std::memcmp(a.v.get(), b.v.get(), a.len * hp.d_head * 2));
      EXPECT_EQ(0, std::memcmp(a.pos.get(), b.pos.get(), a.len * 4));
      if (hp.is_swa(il)) {
        for (int t = 0; t < 50; ++t) EXPECT_EQ(got.head(il, ih)[t], 0.0f) << "local layer " << il << " was scored";
      }
    }

  const int G = hp.n_group(), dh = hp.d_head;
  for (int start = 0; start < 50; start += 20) {
    const int m = std::min(20, 50 - start);
    std::vector<int32_t> x = start == 0 ? rp.first : rp.next;
    if (start > 0) x.insert(x.end(), ctx.begin() + start - 8, ctx.begin() + start);
    x.insert(x.end(), rp.postfix.begin(), rp.postfix.end());
    x.insert(x.end(), ctx.begin() + start, ctx.begin() + start + m);
    const int q_len = static_cast<int>(x.size());
    Recorder rec;
    rec.n_group = G;
    s.set_observer(&rec);
    const Session::Checkpoint cp = s.checkpoint();
    s.forward(x, LogitsMode::None, nullptr, q_len);
    s.set_observer(nullptr);
    s.restore(cp);
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv && !hp.is_swa(il); ++ih) {
        const auto& K = rec.keys[static_cast<size_t>(il) * hp.n_head_kv + ih];
        ASSERT_EQ(static_cast<int>(K.size()), 55 + q_len);
        std::vector<std::vector<float>> ks(K.begin(), K.begin() + 5), kc(K.begin() + 5 + start, K.begin() + 5 + start + m),
            kr(K.begin() + 55, K.end());
        std::vector<std::vector<float>> qr;
        std::vector<int64_t> lim;
        for (int t = 0; t < q_len; ++t)
          for (int g = 0; g < G; ++g) {
            const float* p = rec.q[il].data() + (static_cast<size_t>(t) * hp.n_head + ih * G + g) * dh;
            qr.emplace_back(p, p + dh);
            lim.push_back(t + 1);
          }
        const auto want = naive_colmax(qr, lim, ks, kc, kr, hp.softmax_scale());
        for (int t = 0; t < m; ++t)
          ASSERT_NEAR(got.head(il, ih)[start + t], want[t], 1e-6 + 1e-4 * want[t])
              << "layer " << il << " head " << ih << " token " << start + t;
      }
  }
}

}  // namespace

TEST_F(KvzipTest, DriverMatchesTheSpecComputedNaively) { check_driver_against_naive(*model_); }

TEST_F(KvzipTest, RatioOneIsBitIdenticalAndPruneKeepsPositions) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 16;
  co.retain_full = true;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(40, 7));
  c.score();
  GenerateParams gp;
  gp.n_predict = 6;
  gp.stop_at_eog = false;
  // reference: the unpruned cache
  const QueryResult full = c.query("ab ab", gp, false);
  std::vector<float> l_full, l_keep;
  const std::vector<int32_t> probe = ids_of(3, 9);
  {
    const auto lens = c.session().cache().lengths();
    c.session().forward(probe, LogitsMode::All, &l_full);
    c.session().cache().truncate(lens);
    c.session().set_n_pos(c.n_sys() + 40);
  }
  SelectOptions so;
  so.ratio = 1.0;
  const PruneReport r = c.prune(so);
  EXPECT_DOUBLE_EQ(r.ratio_true, 1.0);
  c.session().forward(probe, LogitsMode::All, &l_keep);
  ASSERT_EQ(l_full.size(), l_keep.size());
  EXPECT_EQ(0, std::memcmp(l_full.data(), l_keep.data(), l_full.size() * sizeof(float)));

  // prune again (retain_full) at 0.3: kept rows are the top scores, positions preserved
  so.ratio = 0.3;
  const PruneReport r2 = c.prune(so);
  EXPECT_NEAR(r2.ratio_true, 0.3, 1.0 / (40 * 2 * 2));
  EXPECT_LT(r2.kv_bytes_after, r2.kv_bytes_before);
  const HeadScores& sc = c.scores();
  std::vector<float> kept_min(1, 1e9f), drop_max(1, -1e9f);
  for (int il = 0; il < sc.n_layer; ++il)
    for (int ih = 0; ih < sc.n_head_kv; ++ih) {
      const HeadSegment& s = c.session().cache().seg(il, ih);
      std::vector<bool> kept(40, false);
      for (int64_t r = 0; r < s.len; ++r) {
        if (r > 0) {
          ASSERT_LT(s.pos[r - 1], s.pos[r]);
        }
        if (s.pos[r] < c.n_sys()) {
          ASSERT_EQ(s.pos[r], r) << "system prompt rows come first, all kept";
          continue;
        }
        kept[s.pos[r] - c.n_sys()] = true;
      }
      for (int t = 0; t < 40; ++t) {
        if (kept[t]) kept_min[0] = std::min(kept_min[0], sc.head(il, ih)[t]);
        else drop_max[0] = std::max(drop_max[0], sc.head(il, ih)[t]);
      }
    }
  EXPECT_GE(kept_min[0], drop_max[0]) << "every kept pair scores at least as high as every evicted one";
}

TEST_F(KvzipTest, QueriesRestoreTheContextAndKeepUpdatedTurns) {
  ThreadPool pool(1);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(60, 3));
  c.score();
  SelectOptions so;
  so.ratio = 0.5;
  c.prune(so);
  const auto lens0 = c.session().cache().lengths();
  const int64_t pos0 = c.session().n_pos();
  GenerateParams gp;
  gp.n_predict = 5;
  gp.stop_at_eog = false;
  const QueryResult a = c.query("hello", gp, false);
  EXPECT_EQ(c.session().cache().lengths(), lens0);
  EXPECT_EQ(c.session().n_pos(), pos0);
  const QueryResult a2 = c.query("hello", gp, false);
  EXPECT_EQ(a.answer_ids, a2.answer_ids) << "same query, same restored cache, same answer";
  // update_cache=true keeps the turn; a later non-updating query must not delete it
  c.query("first turn", gp, true);
  const auto lens1 = c.session().cache().lengths();
  const int64_t pos1 = c.session().n_pos();
  EXPECT_GT(pos1, pos0);
  c.query("second", gp, false);
  EXPECT_EQ(c.session().cache().lengths(), lens1);
  EXPECT_EQ(c.session().n_pos(), pos1);
}

TEST(KvzipPolicy, TopKExactBudgetTiesAndStrictMode) {
  HeadScores s;
  s.reset(2, 2, 10, 0.5f);  // all tied
  SelectOptions o;
  o.ratio = 0.3;
  KeepMask m = select_pairs(s, o);
  EXPECT_EQ(m.n_kept, 12);  // floor(40 * 0.3)
  // deterministic: ties broken by (layer, head, position) -> the first 12 flat indices
  for (int i = 0; i < 40; ++i) EXPECT_EQ(m.keep[i], i < 12 ? 1 : 0) << i;
  o.strict_threshold = true;
  m = select_pairs(s, o);
  EXPECT_EQ(m.n_kept, 0) << "reference mode evicts everything tied with the threshold";
  for (size_t i = 0; i < s.v.size(); ++i) s.v[i] = static_cast<float>(i);
  m = select_pairs(s, o);
  EXPECT_EQ(m.n_kept, 11);  // floor(N r) - 1 strictly above
  o.strict_threshold = false;
  o.level = PruneLevel::PairUniform;
  m = select_pairs(s, o);
  EXPECT_EQ(m.n_kept, 4 * 3);
  for (double bad : {0.0, -0.1, 1.5, std::nan("")}) {
    o.ratio = bad;
    EXPECT_THROW(select_pairs(s, o), Error) << bad;
  }
}

// A q8_0 KV cache (--kv-type q8_0) on a model with 32-wide heads: logits stay close to the
// f16 cache's (8-bit rows, ~0.4% relative rounding), the KV bytes are 34/64 of f16's, and a
// compressed q8_0 context saved to disk comes back with its type and identical answers,
// even into a context created with the default f16 options.
TEST(KvzipQ8Cache, ForwardIsCloseMemoryHalvesAndSaveLoadKeepsTheType) {
  test::SyntheticSpec spec;
  spec.n_embd = 128;  // 4 heads of 32
  const std::string mpath = test::write_synthetic_llama(spec, "q8kv");
  auto model = Model::load(mpath);
  ASSERT_EQ(model->hp().d_head, 32);
  ThreadPool pool(2);
  std::vector<int32_t> toks(80);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 13 + 1) % 250);
  Session f16(*model, pool), q8(*model, pool, 0, KvType::Q8_0);
  std::vector<float> lf, lq;
  f16.forward(toks, LogitsMode::All, &lf);
  q8.forward(toks, LogitsMode::All, &lq);
  double max_d = 0, max_l = 0;
  for (size_t i = 0; i < lf.size(); ++i) {
    max_d = std::max(max_d, static_cast<double>(std::fabs(lf[i] - lq[i])));
    max_l = std::max(max_l, static_cast<double>(std::fabs(lf[i])));
  }
  EXPECT_GT(max_d, 0.0);             // the rows really are stored differently
  EXPECT_LT(max_d, 0.02 * max_l) << "max |dlogit| " << max_d << " of max |logit| " << max_l;
  EXPECT_EQ(q8.cache().bytes_used() * 64, f16.cache().bytes_used() * 34);

  ContextOptions co;
  co.scoring.chunk = 32;
  co.kv_type = KvType::Q8_0;
  KvzipContext a(*model, pool, co);
  a.prefill_ids(std::vector<int32_t>(toks.begin(), toks.begin() + 70));
  a.score();
  SelectOptions so;
  so.ratio = 0.4;
  a.prune(so);
  const std::string path = test::temp_path("kvzip-test-q8ctx") + ".kvz";
  a.save(path);
  GenerateParams gp;
  gp.n_predict = 6;
  gp.stop_at_eog = false;
  const QueryResult ra = a.query("ab", gp, false);
  KvzipContext b(*model, pool);  // f16 options: the file decides the type
  b.load(path);
  EXPECT_EQ(b.session().cache().type(), KvType::Q8_0);
  for (int il = 0; il < model->hp().n_layer; ++il)
    for (int ih = 0; ih < model->hp().n_head_kv; ++ih)
      EXPECT_TRUE(test::same_rows(b.session().cache().seg(il, ih), a.session().cache().seg(il, ih),
                                  a.session().cache().row_bytes()));
  EXPECT_EQ(b.query("ab", gp, false).answer_ids, ra.answer_ids);
  std::remove(path.c_str());
  std::remove(mpath.c_str());
}

TEST(KvzipPolicy, HeadLevelNeverEvictsEveryHead) {
  std::vector<float> hs(8, 1.0f);  // all heads tied at 1.0, as in the reference's files
  KeepMask m = select_heads(hs, 4, 2, 5, 0.1);
  EXPECT_EQ(m.n_kept, 5);  // one head (round(0.8) = 1)
  m = select_heads(hs, 4, 2, 5, 0.5);
  EXPECT_EQ(m.n_kept, 20);
  EXPECT_THROW(select_heads(hs, 4, 3, 5, 0.5), Error);
}

TEST_F(KvzipTest, SaveAndLoadACompressedContext) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext a(*model_, pool, co);
  a.prefill_ids(ids_of(70, 5));
  a.score();
  SelectOptions so;
  so.ratio = 0.4;
  a.prune(so);
  const std::string path = test::temp_path("kvzip-test-ctx") + ".kvz";
  a.save(path);
  GenerateParams gp;
  gp.n_predict = 6;
  gp.stop_at_eog = false;
  const QueryResult ra = a.query("ab", gp, false);

  KvzipContext b(*model_, pool, co);
  b.load(path);
  EXPECT_TRUE(b.pruned());
  EXPECT_EQ(b.session().cache().lengths(), a.session().cache().lengths());
  EXPECT_EQ(b.session().n_pos(), a.session().n_pos());
  EXPECT_EQ(b.scores().v, a.scores().v);
  const QueryResult rb = b.query("ab", gp, false);
  EXPECT_EQ(ra.answer_ids, rb.answer_ids);

  // another model: refused, nothing changed
  test::SyntheticSpec other;
  other.seed = 99;
  const std::string op = test::write_synthetic_llama(other, "other");
  auto m2 = Model::load(op);
  KvzipContext c(*m2, pool, co);
  c.prefill_ids(ids_of(10, 1));
  const auto lens_c = c.session().cache().lengths();
  try {
    c.load(path);
    FAIL() << "loaded a context made for another model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different model"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.session().cache().lengths(), lens_c);
  std::remove(op.c_str());

  // corrupt and truncated files: refused, nothing changed
  std::vector<char> bytes;
  {
    FILE* f = std::fopen(path.c_str(), "rb");
    int ch;
    while ((ch = std::fgetc(f)) != EOF) bytes.push_back(static_cast<char>(ch));
    std::fclose(f);
  }
  auto write = [&](const std::vector<char>& v) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!v.empty()) std::fwrite(v.data(), 1, v.size(), f);  // an empty vector's data() may be null
    std::fclose(f);
  };
  const auto lens_b = b.session().cache().lengths();
  for (size_t at : {size_t{3}, size_t{45}, bytes.size() / 2, bytes.size() - 1}) {
    auto v = bytes;
    v[at] ^= 0x40;
    write(v);
    EXPECT_THROW(b.load(path), Error) << "flip at " << at;
  }
  for (size_t n : {size_t{0}, size_t{20}, bytes.size() - 1}) {
    write(std::vector<char>(bytes.begin(), bytes.begin() + n));
    EXPECT_THROW(b.load(path), Error) << "truncated to " << n;
  }
  EXPECT_EQ(b.session().cache().lengths(), lens_b);
  std::remove(path.c_str());
}

TEST_F(KvzipTest, HeadScoreFileRoundTripAndHeadLevelPrune) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(50, 8));
  c.score();
  HeadScoreFile h;
  h.n_layer = model_->hp().n_layer;
  h.n_head_kv = model_->hp().n_head_kv;
  h.scores = head_scores_from_pairs(c.scores());
  h.source = "unit test";
  const std::string path = test::temp_path("kvzip-test-heads") + ".kvzh";
  save_head_scores(path, model_->identity(), h);
  const HeadScoreFile r = load_head_scores(path, model_->identity());
  EXPECT_EQ(r.scores, h.scores);
  EXPECT_EQ(r.source, "unit test");
  const PruneReport pr = c.prune_heads(r.scores, 0.5);
  EXPECT_DOUBLE_EQ(pr.ratio_true, 0.5);  // 2 of 4 heads
  int full_heads = 0;
  for (int il = 0; il < h.n_layer; ++il)
    for (int ih = 0; ih < h.n_head_kv; ++ih) {
      const int64_t len = c.session().cache().seg(il, ih).len;
      EXPECT_TRUE(len == c.n_sys() || len == c.n_sys() + 50) << "a head keeps all of its context or none";
      full_heads += len == c.n_sys() + 50;
    }
  EXPECT_EQ(full_heads, 2);
  // corrupt: one flipped byte in the scores
  {
    FILE* f = std::fopen(path.c_str(), "r+b");
    std::fseek(f, 30, SEEK_SET);
    std::fputc(0x7f, f);
    std::fclose(f);
  }
  EXPECT_THROW(load_head_scores(path, model_->identity()), Error);
  std::remove(path.c_str());
}

// ---- Gemma 3: only global layers are scored and pruned (kvzip-spec §3.2, §9.12) ----

namespace {

class KvzipGemma3Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::SyntheticSpec s;
    s.arch = "gemma3";
    s.n_layer = 4;
    s.n_swa = 8;  // layers 0, 2 local (window 8), 1, 3 global
    s.swa_pattern = 2;
    path_ = test::write_synthetic_llama(s, "kvzip-gemma3");
    model_ = Model::load(path_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    std::remove(path_.c_str());
  }
  static inline std::string path_;
  static inline Model* model_ = nullptr;
};

}  // namespace

TEST_F(KvzipGemma3Test, DriverScoresGlobalLayersOnlyAndRestoresWindows) { check_driver_against_naive(*model_); }

// Local layers after the last global one (Gemma 3 1B's last two): the repeat pass stops after
// the last scored layer's attention (LayerObserver::last_layer), and the scores still match
// the spec computed naively over the whole model; the later local layers score 0.
TEST(KvzipGemma3LocalLast, RepeatPassStopsAfterTheLastScoredLayer) {
  test::SyntheticSpec s;
  s.arch = "gemma3";
  s.n_layer = 5;
  s.n_swa = 8;
  s.swa_flags = {1, 0, 1, 0, 1};  // layers 0, 2, 4 local; the last global layer is 3
  const std::string path = test::write_synthetic_llama(s, "kvzip-gemma3-local-last");
  auto model = Model::load(path);
  ASSERT_TRUE(model->hp().is_swa(4) && !model->hp().is_swa(3));
  check_driver_against_naive(*model);
  std::remove(path.c_str());
}

TEST_F(KvzipGemma3Test, PruneTouchesOnlyGlobalLayersAndQueriesRestoreWindows) {
  const HParams& hp = model_->hp();
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 16;
  co.retain_full = true;
  KvzipContext c(*model_, pool, co);
  c.prefill_ids(ids_of(40, 7));
  c.score();
  const KvCache full = c.session().cache().clone();
  GenerateParams gp;
  gp.n_predict = 12;  // query + answer roll the local windows (8) several times
  gp.stop_at_eog = false;
  const QueryResult a_full = c.query("ab ab", gp, false);

  const std::vector<int32_t> probe = ids_of(12, 9);  // longer than the window
  std::vector<float> l_full, l_keep;
  {
    const Session::Checkpoint cp = c.session().checkpoint();
    c.session().forward(probe, LogitsMode::All, &l_full);
    c.session().restore(cp);
  }
  SelectOptions so;
  so.ratio = 1.0;
  EXPECT_DOUBLE_EQ(c.prune(so).ratio_true, 1.0);  // also drops the local layers' dead rows
  {
    const Session::Checkpoint cp = c.session().checkpoint();
    c.session().forward(probe, LogitsMode::All, &l_keep);
    c.session().restore(cp);
  }
  ASSERT_EQ(l_full.size(), l_keep.size());
  EXPECT_EQ(0, std::memcmp(l_full.data(), l_keep.data(), l_full.size() * sizeof(float))) << "ratio 1: bit-identical";
  const QueryResult a_keep = c.query("ab ab", gp, false);
  EXPECT_EQ(a_full.answer_ids, a_keep.answer_ids) << "ratio 1 answers as the unpruned cache";

  so.ratio = 0.3;
  const PruneReport r = c.prune(so);
  // the budget is over the global layers' pairs only: 2 layers x 1... x 40 tokens
  const int64_t n_global_pairs = 2 * hp.n_head_kv * 40;
  EXPECT_NEAR(r.ratio_true, 0.3, 1.0 / n_global_pairs);
  int64_t kept = 0;
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const HeadSegment& s = c.session().cache().seg(il, ih);
      if (hp.is_swa(il)) {
        // not pruned: exactly the rows still visible (the last n_swa - 1 positions), unchanged
        const HeadSegment& f = full.seg(il, ih);
        ASSERT_EQ(s.len, hp.n_swa - 1) << "layer " << il;
        const int64_t off = f.len - s.len;
        EXPECT_EQ(0, std::memcmp(s.k.get(), f.k.get() + off * full.row_bytes(), s.len * full.row_bytes())) << "layer " << il;
        EXPECT_EQ(0, std::memcmp(s.v.get(), f.v.get() + off * full.row_bytes(), s.len * full.row_bytes())) << "layer " << il;
        EXPECT_EQ(0, std::memcmp(s.pos.get(), f.pos.get() + off, s.len * 4)) << "layer " << il;
      } else {
        kept += s.len - c.n_sys();
      }
    }
  EXPECT_EQ(kept, static_cast<int64_t>(std::floor(0.3 * n_global_pairs)));

  // a non-updating query leaves every head, local windows included, exactly as it was
  const KvCache pruned = c.session().cache().clone();
  const int64_t pos0 = c.session().n_pos();
  const QueryResult q1 = c.query("hello there", gp, false);
  EXPECT_EQ(c.session().n_pos(), pos0);
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih)
      EXPECT_TRUE(test::same_rows(c.session().cache().seg(il, ih), pruned.seg(il, ih), pruned.row_bytes())) << "layer " << il;
  const QueryResult q2 = c.query("hello there", gp, false);
  EXPECT_EQ(q1.answer_ids, q2.answer_ids);
}

TEST(KvzipPolicy, LayersOutsideTheBudgetAreKeptWhole) {
  HeadScores s;
  s.reset(3, 2, 10, 0.0f);
  for (size_t i = 0; i < s.v.size(); ++i) s.v[i] = static_cast<float>((i * 7) % 13);
  SelectOptions o;
  o.ratio = 0.25;
  o.evictable = {1, 0, 1};  // layer 1 is a sliding-window layer
  for (PruneLevel lv : {PruneLevel::Pair, PruneLevel::PairUniform, PruneLevel::Head}) {
    o.level = lv;
    const KeepMask m = select_pairs(s, o);
    EXPECT_EQ(m.n_total, 2 * 2 * 10) << prune_level_name(lv);
    for (int ih = 0; ih < 2; ++ih)
      for (int t = 0; t < 10; ++t) EXPECT_EQ(m.head(1, ih)[t], 1) << prune_level_name(lv);
    int64_t kept = 0;
    for (int il : {0, 2})
      for (int ih = 0; ih < 2; ++ih)
        for (int t = 0; t < 10; ++t) kept += m.head(il, ih)[t];
    EXPECT_EQ(kept, m.n_kept) << prune_level_name(lv);
    if (lv == PruneLevel::Pair) {
      EXPECT_EQ(m.n_kept, 10);  // floor(40 * 0.25)
    }
  }
  o.evictable = {0, 0, 0};
  EXPECT_THROW(select_pairs(s, o), Error);
  o.evictable = {1, 1};
  EXPECT_THROW(select_pairs(s, o), Error);
}

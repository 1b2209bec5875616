// Composing separately prefilled contexts (kv/compose.h, model/rope_shift.h).
//
// Exactness of the re-rotation, for every RoPE variant the loaders accept (plain interleaved
// GGUF llama, NeoX qwen2 / qwen3 / HF llama, Llama 3 frequency divisors in GGUF and HF,
// Gemma 3's separate local and global bases and linear scaling):
//  - the keys of [sys | doc] computed at positions 0.. and rotated by delta equal the keys of
//    the same tokens computed at positions delta.. (the whole sequence shifted: attention
//    depends on relative positions only, so every layer's keys agree), to the rounding of the
//    f16 rows and its spread through the layers: tight in the random-weight models at every
//    layer (local and global Gemma 3 bases included), in trained models at layer 0, where the
//    spread has not begun (deeper layers only closer than unrotated, see the test's comment);
//  - with the system prompt left at 0 and only the document shifted (what composition does),
//    layer 0's document keys agree to f16 rounding (later layers change: the document now
//    sits farther from the system prompt, the approximation docs/composition.md measures);
//  - without the rotation the keys are far off (the test can fail).
// Composition: one context alone comes back bit for bit and answers identically; two
// contexts give the system prompt once, each document's kept rows at shifted positions,
// sliding-window layers only their visible rows, concatenated scores; errors name the part.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "eval/compose_eval.h"
#include "kv/compose.h"
#include "model/rope_shift.h"
#include "model/session.h"
#include "synthetic_model.h"
#include "test_paths.h"

using namespace kvz;

namespace {

std::string hf_root() { return test::hf_dir(); }

// Name -> path; "" when the file is not here (the test skips it, saying so).
std::string model_path(const std::string& name) {
  const std::string g = test::source_dir() + "/tests/golden/data/";
  std::string p;
  if (name == "smollm2-135m") p = test::smollm2_path();
  else if (name == "gemma3-270m") p = test::gemma3_path();
  else if (name == "qwen2.5-coder-0.5b")
    p = test::models_dir() + "/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
  else if (name == "rope_llama3.gguf") p = g + "rope_llama3.gguf";
  else if (name == "gemma3-synthetic") {
    // Random weights (little spread through the layers), so every layer checks the rotation,
    // the global layers' base (1e6, linear scaling 8) as well as the local layers' (1e4).
    test::SyntheticSpec spec;
    spec.arch = "gemma3";
    spec.n_layer = 4;
    spec.n_swa = 128;
    spec.n_ctx = 2048;  // wider than the test's 47 positions: nothing leaves a window
    spec.f32_keys["gemma3.rope.freq_base"] = 1e6f;
    spec.f32_keys["gemma3.rope.scaling.factor"] = 8.0f;
    spec.str_keys["gemma3.rope.scaling.type"] = "linear";
    p = test::write_synthetic_llama(spec, "rope_shift_g3");
  } else p = hf_root() + "/" + name;  // qwen3-tiny, llama3-tiny (HF folders)
  return std::filesystem::exists(p) ? p : "";
}

std::vector<int32_t> random_ids(int n, int n_vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int32_t> d(0, std::min(n_vocab, 2000) - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Max |a - b| over a head's first n rows' keys, and max |b|.
std::pair<double, double> key_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, mx = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e = std::max(e, std::abs(double{a[i]} - b[i]));
    mx = std::max(mx, std::abs(double{b[i]}));
  }
  return {e, mx};
}

class RopeShift : public ::testing::TestWithParam<std::string> {};

TEST_P(RopeShift, RotatedKeysEqualShiftedPrefill) {
  const std::string path = model_path(GetParam());
  if (path.empty()) GTEST_SKIP() << GetParam() << " not found (scripts/test.sh pulls and makes the models)";
  auto model = Model::load(path);
  const HParams& hp = model->hp();
  ThreadPool pool(2);
  const int n_sys = 7, n_doc = 40;
  const int64_t delta = 1000 + 37;
  const std::vector<int32_t> sys = random_ids(n_sys, hp.n_vocab, 1), doc = random_ids(n_doc, hp.n_vocab, 2);
  std::vector<int32_t> all = sys;
  all.insert(all.end(), doc.begin(), doc.end());

  Session a(*model, pool);  // positions 0..
  a.forward(all, LogitsMode::None, nullptr);
  Session b(*model, pool);  // the whole sequence at delta..
  b.set_n_pos(delta);
  b.forward(all, LogitsMode::None, nullptr);
  Session c(*model, pool);  // the system prompt at 0, the document at n_sys + delta..
  c.forward(sys, LogitsMode::None, nullptr);
  c.set_n_pos(n_sys + delta);
  c.forward(doc, LogitsMode::None, nullptr);

  const int d = hp.d_head;
  const int64_t n = static_cast<int64_t>(all.size());
  const double f16_ulp = std::ldexp(1.0, -10);  // f16 spacing relative to the largest key component
  double worst_l0 = 0, worst_l0_whole = 0;
  // Per layer, over all heads: RMS of (rotated - shifted) and of (unrotated - shifted), relative to RMS of the keys.
  std::vector<double> rot_err(hp.n_layer), plain_err(hp.n_layer);
  for (int il = 0; il < hp.n_layer; ++il) {
    double se = 0, sp = 0, sk = 0;
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      ASSERT_EQ(a.cache().seg(il, ih).len, n);
      std::vector<float> ka(n * d), kb(n * d), kc(n * d);
      a.cache().keys_f32(il, ih, 0, n, ka.data());
      b.cache().keys_f32(il, ih, 0, n, kb.data());
      c.cache().keys_f32(il, ih, 0, n, kc.data());
      const std::vector<float> ka_plain = ka;
      rotate_keys(*model, il, ka.data(), n, delta);
      for (int64_t i = 0; i < n * d; ++i) {
        se += (double{ka[i]} - kb[i]) * (double{ka[i]} - kb[i]);
        sp += (double{ka_plain[i]} - kb[i]) * (double{ka_plain[i]} - kb[i]);
        sk += double{kb[i]} * kb[i];
      }
      if (il == 0) {
        auto [e, mx] = key_diff(ka, kb);
        worst_l0_whole = std::max(worst_l0_whole, e / mx);
        // The document's rows only: the system prompt's rows of c were not moved.
        std::vector<float> da(ka_plain.begin() + n_sys * d, ka_plain.end()), dc(kc.begin() + n_sys * d, kc.end());
        rotate_keys(*model, il, da.data(), n_doc, delta);
        auto [e0, mx0] = key_diff(da, dc);
        worst_l0 = std::max(worst_l0, e0 / mx0);
      }
    }
    rot_err[il] = std::sqrt(se / sk);
    plain_err[il] = std::sqrt(sp / sk);
  }
  if (std::getenv("KVZ_ROPE_DEBUG"))
    for (int il = 0; il < hp.n_layer; ++il) std::printf("  layer %d swa %d: rotated %.2e unrotated %.2e\n", il, hp.is_swa(il) ? 1 : 0, rot_err[il], plain_err[il]);
  const auto worst = std::max_element(rot_err.begin(), rot_err.end()) - rot_err.begin();
  const double plain_min = *std::min_element(plain_err.begin(), plain_err.end());
  std::printf("%s: layer 0, max |diff| / max |key|: whole sequence shifted %.2e, document only %.2e; "
              "RMS relative, rotated: layer 0 %.2e, worst layer %lld %.2e; unrotated: smallest %.2e\n",
              GetParam().c_str(), worst_l0_whole, worst_l0, rot_err[0], static_cast<long long>(worst),
              rot_err[worst], plain_min);
  // Layer 0: both sides are f16 roundings of the same rotated vector (one rounded once more).
  EXPECT_LE(worst_l0_whole, 2 * f16_ulp);
  EXPECT_LE(worst_l0, 2 * f16_ulp);
  // Every layer: the rotation leaves only rounding spread through the layers, far below the
  // unrotated keys' distance. Trained models spread f16 rounding much further (gemma3-270m: 1e-2 by
  // layer 1, 9e-2 by layer 17, the same with any rotation), and where the rotation barely moves the
  // keys (a 1e6 base) that spread is of the order of no rotation at all: in them the deeper layers
  // are only checked to be closer than unrotated; the random models check every layer tightly.
  const bool random_weights = GetParam().find("tiny") != std::string::npos ||
                              GetParam().find("synthetic") != std::string::npos || GetParam() == "rope_llama3.gguf";
  for (int il = 0; il < hp.n_layer; ++il) {
    EXPECT_LT(rot_err[il], plain_err[il]) << "layer " << il;
    if (il == 0 || random_weights) {
      EXPECT_GT(plain_err[il], 10 * rot_err[il]) << "layer " << il;
    }
  }
  if (!hp.swa_layers.empty()) {
    EXPECT_TRUE(hp.is_swa(0));
    EXPECT_NE(hp.rope_base, hp.rope_base_swa);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, RopeShift,
                         ::testing::Values("smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m", "rope_llama3.gguf",
                                           "llama3-tiny", "qwen3-tiny", "gemma3-synthetic"),
                         [](const auto& i) {
                           std::string s = i.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// A context made in session s: [sys | doc] prefilled, the rows cloned.
struct Made {
  StoredContext meta;
  KvCache cache;
};
Made make_context(const Model& m, ThreadPool& pool, const std::vector<int32_t>& sys, const std::vector<int32_t>& doc,
                  KvType type = KvType::F16) {
  Session s(m, pool, 0, type);
  std::vector<int32_t> all = sys;
  all.insert(all.end(), doc.begin(), doc.end());
  s.forward(all, LogitsMode::None, nullptr);
  Made r;
  r.meta.n_sys = static_cast<int64_t>(sys.size());
  r.meta.n_pos = s.n_pos();
  r.meta.sys_ids = sys;
  r.meta.ctx_ids = doc;
  r.cache = s.cache().clone();
  return r;
}

// Evicts every other document row of the global layers' heads (a stand-in for a prune).
void thin(const Model& m, Made& c, int phase) {
  for (int il = 0; il < m.hp().n_layer; ++il)
    for (int ih = 0; ih < m.hp().n_head_kv && !m.hp().is_swa(il); ++ih) {
      HeadSegment& s = c.cache.seg(il, ih);
      std::vector<uint8_t> keep(s.len, 1);
      for (int64_t r = 0; r < s.len; ++r)
        if (s.pos[r] >= c.meta.n_sys && (r + ih + phase) % 2 == 0) keep[r] = 0;
      c.cache.compact(il, ih, keep.data(), 0);
    }
  c.meta.pruned = true;
}

}  // namespace

TEST(Compose, OneContextAloneIsBitIdentical) {
  auto model = Model::load(test::write_synthetic_llama({}, "compose1"));
  ThreadPool pool(2);
  Made c = make_context(*model, pool, random_ids(5, model->hp().n_vocab, 3), random_ids(30, model->hp().n_vocab, 4));
  thin(*model, c, 0);
  const ComposePart part{&c.meta, &c.cache, "c"};
  ComposedContext out = compose_contexts(*model, {&part, 1}, KvType::F16);
  EXPECT_EQ(out.meta.n_pos, c.meta.n_pos);
  EXPECT_EQ(out.meta.ctx_ids, c.meta.ctx_ids);
  EXPECT_TRUE(out.meta.pruned);
  const size_t rb = c.cache.row_bytes();
  for (int il = 0; il < model->hp().n_layer; ++il)
    for (int ih = 0; ih < model->hp().n_head_kv; ++ih) {
      const HeadSegment &x = c.cache.seg(il, ih), &y = out.cache.seg(il, ih);
      ASSERT_EQ(x.len, y.len);
      EXPECT_EQ(0, std::memcmp(x.k.get(), y.k.get(), x.len * rb));
      EXPECT_EQ(0, std::memcmp(x.v.get(), y.v.get(), x.len * rb));
      EXPECT_EQ(0, std::memcmp(x.pos.get(), y.pos.get(), x.len * sizeof(int32_t)));
    }
  // And it answers the same: next-token logits after a continuation, bit for bit.
  auto logits_after = [&](KvCache cache, int64_t n_pos) {
    Session s(*model, pool);
    s.cache() = std::move(cache);
    s.set_n_pos(n_pos);
    std::vector<float> l;
    s.forward(random_ids(6, model->hp().n_vocab, 5), LogitsMode::Last, &l);
    return l;
  };
  EXPECT_EQ(logits_after(c.cache.clone(), c.meta.n_pos), logits_after(out.cache.clone(), out.meta.n_pos));
}

TEST(Compose, TwoContextsShiftedAndConcatenated) {
  for (const KvType type : {KvType::F16, KvType::Q8_0}) {
    SCOPED_TRACE(kv_type_name(type));
    test::SyntheticSpec spec;
    spec.n_embd = 128;  // q8_0 rows need heads of a multiple of 32 floats
    auto model = Model::load(test::write_synthetic_llama(spec, "compose2"));
    const HParams& hp = model->hp();
    ThreadPool pool(2);
    const std::vector<int32_t> sys = random_ids(5, hp.n_vocab, 3);
    Made a = make_context(*model, pool, sys, random_ids(30, hp.n_vocab, 4), type);
    Made b = make_context(*model, pool, sys, random_ids(20, hp.n_vocab, 6), type);  // full, b unpruned
    thin(*model, a, 1);
    a.meta.scores.reset(hp.n_layer, hp.n_head_kv, 30, 1.0f);
    b.meta.scores.reset(hp.n_layer, hp.n_head_kv, 20, 2.0f);
    const ComposePart parts[] = {{&a.meta, &a.cache, "a"}, {&b.meta, &b.cache, "b"}};
    ComposedContext out = compose_contexts(*model, parts, type);
    EXPECT_EQ(out.meta.n_pos, 5 + 30 + 20);
    EXPECT_EQ(out.starts, (std::vector<int64_t>{0, 30}));
    EXPECT_EQ(out.meta.ctx_ids.size(), 50u);
    EXPECT_TRUE(out.meta.pruned);
    ASSERT_EQ(out.meta.scores.n_ctx, 50);
    EXPECT_EQ(out.meta.scores.head(1, 1)[29], 1.0f);
    EXPECT_EQ(out.meta.scores.head(1, 1)[30], 2.0f);
    const int d = hp.d_head;
    for (int il = 0; il < hp.n_layer; ++il)
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const HeadSegment &sa = a.cache.seg(il, ih), &sb = b.cache.seg(il, ih), &so = out.cache.seg(il, ih);
        ASSERT_EQ(so.len, sa.len + sb.len - 5);  // b's system prompt rows are not repeated
        for (int64_t r = 0; r < sa.len; ++r) EXPECT_EQ(so.pos[r], sa.pos[r]);
        for (int64_t r = 5; r < sb.len; ++r) EXPECT_EQ(so.pos[sa.len + r - 5], sb.pos[r] + 30);
        // b's keys rotated by 30 positions; its values unchanged.
        std::vector<float> kb((sb.len - 5) * d), ko((sb.len - 5) * d), vb(kb.size()), vo(kb.size());
        b.cache.keys_f32(il, ih, 5, sb.len - 5, kb.data());
        rotate_keys(*model, il, kb.data(), sb.len - 5, 30);
        out.cache.keys_f32(il, ih, sa.len, sb.len - 5, ko.data());
        auto [e, mx] = key_diff(kb, ko);
        EXPECT_LE(e, (type == KvType::F16 ? std::ldexp(1.0, -10) : 1.0 / 127) * mx);
        b.cache.values_f32(il, ih, 5, sb.len - 5, vb.data());
        out.cache.values_f32(il, ih, sa.len, sb.len - 5, vo.data());
        EXPECT_EQ(vb, vo);
      }
    // Mixed row types: b stored the other way is converted.
    Made b2 = make_context(*model, pool, sys, random_ids(20, hp.n_vocab, 6),
                           type == KvType::F16 ? KvType::Q8_0 : KvType::F16);
    const ComposePart mixed[] = {{&a.meta, &a.cache, "a"}, {&b2.meta, &b2.cache, "b2"}};
    ComposedContext m2 = compose_contexts(*model, mixed, type);
    EXPECT_EQ(m2.cache.type(), type);
    EXPECT_EQ(m2.cache.total_rows(), out.cache.total_rows());
  }
}

TEST(Compose, SlidingWindowLayersKeepOnlyVisibleRows) {
  auto model = test::load_tiny_gemma3(4, "compose_swa");  // window 8 positions, layers 0, 2 local
  const HParams& hp = model->hp();
  ASSERT_TRUE(hp.is_swa(0));
  ThreadPool pool(2);
  const std::vector<int32_t> sys = random_ids(3, hp.n_vocab, 3);
  Made a = make_context(*model, pool, sys, random_ids(20, hp.n_vocab, 4));
  Made b = make_context(*model, pool, sys, random_ids(5, hp.n_vocab, 6));  // shorter than the window
  const ComposePart parts[] = {{&a.meta, &a.cache, "a"}, {&b.meta, &b.cache, "b"}};
  ComposedContext out = compose_contexts(*model, parts, KvType::F16);
  const int64_t n_pos = 3 + 20 + 5, first_visible = n_pos - hp.n_swa + 1;
  for (int ih = 0; ih < hp.n_head_kv; ++ih) {
    const HeadSegment& s = out.cache.seg(0, ih);
    ASSERT_EQ(s.len, hp.n_swa - 1) << "the last n_swa - 1 positions: b's 5 rows and a's last 2";
    for (int64_t r = 0; r < s.len; ++r) EXPECT_EQ(s.pos[r], first_visible + r);
    EXPECT_EQ(out.cache.seg(1, ih).len, 3 + 20 + 5);  // a global layer keeps everything
  }
  // The composed cache answers like a session given the same rows (the window is applied by position).
  Session s(*model, pool);
  s.cache() = out.cache.clone();
  s.set_n_pos(out.meta.n_pos);
  std::vector<float> l;
  s.forward(random_ids(4, hp.n_vocab, 9), LogitsMode::Last, &l);
  for (float x : l) ASSERT_TRUE(std::isfinite(x));
}

TEST(Compose, RefusesWhatItCannotCompose) {
  auto model = Model::load(test::write_synthetic_llama({}, "compose3"));
  const HParams& hp = model->hp();
  ThreadPool pool(2);
  Made a = make_context(*model, pool, random_ids(5, hp.n_vocab, 3), random_ids(10, hp.n_vocab, 4));
  Made other = make_context(*model, pool, random_ids(6, hp.n_vocab, 7), random_ids(10, hp.n_vocab, 4));
  Made turns = make_context(*model, pool, random_ids(5, hp.n_vocab, 3), random_ids(10, hp.n_vocab, 4));
  turns.meta.ctx_ids.resize(8);  // 2 positions past the document: a conversation after it
  auto msg = [&](const ComposePart& x) {
    const ComposePart ps[] = {{&a.meta, &a.cache, "a.kvz"}, x};
    try {
      compose_contexts(*model, ps, KvType::F16);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({&other.meta, &other.cache, "other.kvz"}).find("other.kvz was prefilled after another system prompt"),
            std::string::npos);
  EXPECT_NE(msg({&turns.meta, &turns.cache, "t.kvz"}).find("t.kvz holds 2 positions of conversation"),
            std::string::npos);
  EXPECT_THROW(compose_contexts(*model, {}, KvType::F16), Error);
}

// The multi-document task of `kvzip eval-compose` (eval/compose_eval.h).
TEST(ComposeEval, MultiDocSampleHoldsItsAnswers) {
  auto count = [](const std::string& s) { return static_cast<int64_t>(s.size() / 4); };
  const MultiDocSample s = make_multidoc_sample(7, 4, 200, 400, count);
  ASSERT_EQ(s.docs.size(), 4u);
  for (const auto& d : s.docs) {
    EXPECT_GE(count(d), 200);
    EXPECT_LE(count(d), 400 + 200);  // the last paragraph may overshoot
    EXPECT_EQ(d.substr(d.size() - 2), "\n\n");
  }
  int two = 0;
  for (const auto& q : s.questions) {
    ASSERT_FALSE(q.docs.empty());
    if (q.docs.size() == 2) {
      ++two;
      EXPECT_NE(q.docs[0], q.docs[1]);
      const auto comma = q.answer.find(", ");
      ASSERT_NE(comma, std::string::npos);
      // Each fact is in the document it names (and the person's name too).
      EXPECT_NE(s.docs[q.docs[0]].find(q.answer.substr(0, comma)), std::string::npos) << q.text;
      EXPECT_NE(s.docs[q.docs[1]].find(q.answer.substr(comma + 2)), std::string::npos) << q.text;
    } else {
      EXPECT_NE(s.docs[q.docs[0]].find(q.answer), std::string::npos) << q.text;
    }
  }
  EXPECT_GE(two, 3);
  const MultiDocSample again = make_multidoc_sample(7, 4, 200, 400, count);
  EXPECT_EQ(again.docs, s.docs);  // seeded
  EXPECT_THROW(make_multidoc_sample(7, 1, 200, 400, count), Error);
}

TEST(ComposeEval, RunsEveryCacheOverEveryQuestion) {
  test::SyntheticSpec spec;
  spec.n_ctx = 4096;  // byte-level tokens: the two documents and their scoring
  auto model = Model::load(test::write_synthetic_llama(spec, "compose_eval"));
  ThreadPool pool(2);
  ComposeEvalOptions o;
  o.n_docs = {2};
  o.doc_tokens_min = 100;
  o.doc_tokens_max = 120;
  o.ratios = {0.5};
  o.max_new_tokens = 4;
  const ComposeEvalResult r = run_compose_eval(*model, pool, o);
  ASSERT_EQ(r.configs.size(), 3u);
  const size_t nq = r.questions.size();
  ASSERT_GE(nq, 3u);
  for (const auto& c : r.configs) EXPECT_EQ(c.scores.size(), nq) << c.name;
  EXPECT_TRUE(r.configs[0].fid.empty());
  EXPECT_EQ(r.configs[1].fid.size(), nq);
  EXPECT_LT(r.configs[2].kv_bytes, r.configs[1].kv_bytes);  // compressed documents, composed
  EXPECT_EQ(r.configs[1].kv_bytes, r.configs[0].kv_bytes);  // full caches composed: the joint cache's rows
  const std::string md = compose_eval_markdown(r, "## test\n");
  EXPECT_NE(md.find("| composed, ratio 0.5 |"), std::string::npos);
}

// The Llama forward pass on a tiny random model against a plain double-precision
// implementation written here from the same weights (K/V rounded to f16 as the cache
// stores them), and batch / incremental / multi-thread consistency.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "model/identity.h"
#include "model/session.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

std::vector<double> dense(const WeightView& w) {
  std::vector<float> row(w.n_in);
  std::vector<double> out(static_cast<size_t>(w.n_in * w.n_out));
  for (int64_t o = 0; o < w.n_out; ++o) {
    get_row(w, o, row.data());
    for (int64_t i = 0; i < w.n_in; ++i) out[o * w.n_in + i] = row[i];
  }
  return out;
}

std::vector<double> mv(const std::vector<double>& W, const std::vector<double>& x, int64_t n_in, int64_t n_out) {
  std::vector<double> y(n_out, 0.0);
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < n_in; ++i) y[o] += W[o * n_in + i] * x[i];
  return y;
}

std::vector<double> rmsn(const std::vector<double>& x, const float* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
  return y;
}

double f16r(double x) { return fp16_to_f32(f32_to_fp16(static_cast<float>(x))); }

double gelu_tanh(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

// Reference: logits [n][n_vocab] for tokens at positions 0..n-1. Covers the llama dataflow
// and Gemma 3's additions, written from the model card formulas: embeddings * sqrt(n_embd),
// per-head q/k RMSNorm, NeoX rotation, local layers that see positions (t - n_swa, t] with
// their own RoPE base, post-attention / post-FFN norms, GeGLU (tanh GELU), softcapping.

std::vector<std::vector<double>> reference_logits(const Model& m, const std::vector<int32_t>& toks) {
  const HParams& hp = m.hp();
  const Weights& w = m.w();
  const int d = hp.n_embd, dh = hp.d_head, G = hp.n_group();
  const int n = static_cast<int>(toks.size());
  std::vector<std::vector<double>> x(n);
  const auto emb = dense(w.tok_embd);
  for (int t = 0; t < n; ++t) {
    x[t].assign(emb.begin() + toks[t] * d, emb.begin() + (toks[t] + 1) * d);
    for (auto& e : x[t]) e *= hp.embd_scale;
  }
  for (int il = 0; il < hp.n_layer; ++il) {
    const LayerWeights& l = w.layers[il];
    const auto Wq = dense(l.wq), Wk = dense(l.wk), Wv = dense(l.wv), Wo = dense(l.wo);
    const auto Wg = dense(l.w_gate), Wu = dense(l.w_up), Wd = dense(l.w_down);
    std::vector<std::vector<double>> q(n), k(n), v(n);
    const bool local = hp.is_swa(il);
    const double base = local ? hp.rope_base_swa : hp.rope_base;
    auto head_norm = [&](std::vector<double>& z, int nh, const float* wn) {
      if (!wn) return;
      for (int hh = 0; hh < nh; ++hh) {
        std::vector<double> part(z.begin() + hh * dh, z.begin() + (hh + 1) * dh);
        part = rmsn(part, wn, hp.norm_eps);
        std::copy(part.begin(), part.end(), z.begin() + hh * dh);
      }
    };
    for (int t = 0; t < n; ++t) {
      const auto h = rmsn(x[t], l.attn_norm, hp.norm_eps);
      q[t] = mv(Wq, h, d, hp.n_head * dh);
      k[t] = mv(Wk, h, d, hp.n_head_kv * dh);
      v[t] = mv(Wv, h, d, hp.n_head_kv * dh);
      head_norm(q[t], hp.n_head, l.q_norm);
      head_norm(k[t], hp.n_head_kv, l.k_norm);
      const bool neox = hp.rope_style == RopeStyle::Neox;
      auto rope = [&](std::vector<double>& z, int nh) {
        for (int hh = 0; hh < nh; ++hh)
          for (int i = 0; i < dh / 2; ++i) {
            const double th = t * std::pow(base, -2.0 * i / dh);
            double& a = z[hh * dh + (neox ? i : 2 * i)];
            double& b = z[hh * dh + (neox ? i + dh / 2 : 2 * i + 1)];
            const double a0 = a, b0 = b;
            a = a0 * std::cos(th) - b0 * std::sin(th);
            b = a0 * std::sin(th) + b0 * std::cos(th);
          }
      };
      rope(q[t], hp.n_head);
      rope(k[t], hp.n_head_kv);
      for (auto& e : k[t]) e = f16r(e);
      for (auto& e : v[t]) e = f16r(e);
    }
    for (int t = 0; t < n; ++t) {
      std::vector<double> att(hp.n_head * dh, 0.0);
      for (int hq = 0; hq < hp.n_head; ++hq) {
        const int hk = hq / G;
        const int j0 = local ? std::max(0, t - hp.n_swa + 1) : 0;
        std::vector<double> s(t + 1, 0.0);
        double mx = -1e300;
        for (int j = j0; j <= t; ++j) {
          double acc = 0;
          for (int c = 0; c < dh; ++c) acc += q[t][hq * dh + c] * k[j][hk * dh + c];
          s[j] = acc * hp.softmax_scale();
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = j0; j <= t; ++j) sum += s[j] = std::exp(s[j] - mx);
        for (int j = j0; j <= t; ++j)
          for (int c = 0; c < dh; ++c) att[hq * dh + c] += s[j] / sum * v[j][hk * dh + c];
      }
      auto o = mv(Wo, att, hp.n_head * dh, d);
      if (l.attn_post_norm) o = rmsn(o, l.attn_post_norm, hp.norm_eps);
      for (int i = 0; i < d; ++i) x[t][i] += o[i];
      const auto h2 = rmsn(x[t], l.ffn_norm, hp.norm_eps);
      auto g = mv(Wg, h2, d, hp.n_ff);
      const auto u = mv(Wu, h2, d, hp.n_ff);
      for (int i = 0; i < hp.n_ff; ++i)
        g[i] = (hp.ffn_act == FfnAct::GeluTanh ? gelu_tanh(g[i]) : g[i] / (1.0 + std::exp(-g[i]))) * u[i];
      auto dn = mv(Wd, g, hp.n_ff, d);
      if (l.ffn_post_norm) dn = rmsn(dn, l.ffn_post_norm, hp.norm_eps);
      for (int i = 0; i < d; ++i) x[t][i] += dn[i];
    }
  }
  const auto Wout = dense(w.output);
  std::vector<std::vector<double>> out(n);
  for (int t = 0; t < n; ++t) {
    out[t] = mv(Wout, rmsn(x[t], w.output_norm, hp.norm_eps), d, hp.n_vocab);
    if (hp.logit_softcap > 0)
      for (auto& e : out[t]) e = hp.logit_softcap * std::tanh(e / hp.logit_softcap);
  }
  return out;
}

using ForwardTest = test::SyntheticModelTest;

std::vector<int32_t> some_tokens(int n) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 37 + 11) % 256;
  return t;
}

}  // namespace

TEST_F(ForwardTest, MatchesDoublePrecisionReference) {
  const auto toks = some_tokens(40);
  const auto want = reference_logits(*model_, toks);
  ThreadPool pool(2);
  Session s(*model_, pool);
  std::vector<float> got;
  s.forward(toks, LogitsMode::All, &got);
  const int V = model_->hp().n_vocab;
  double max_err = 0, max_ref = 0;
  for (size_t t = 0; t < toks.size(); ++t)
    for (int i = 0; i < V; ++i) {
      max_err = std::max(max_err, std::abs(got[t * V + i] - want[t][i]));
      max_ref = std::max(max_ref, std::abs(want[t][i]));
    }
  // f32 matmuls + f32 attention vs double: ~1e-6 relative per op over 2 layers.
  EXPECT_LT(max_err, 1e-4 * max_ref) << "max |err| " << max_err << " of max |logit| " << max_ref;
  EXPECT_EQ(s.n_pos(), 40);
  EXPECT_EQ(s.cache().total_rows(), 40 * model_->hp().n_layer * model_->hp().n_head_kv);
}

TEST_F(ForwardTest, BatchedEqualsIncrementalAndThreadCountInvariant) {
  const auto toks = some_tokens(70);
  const int V = model_->hp().n_vocab;
  ThreadPool p1(1), p2(2);
  Session a(*model_, p2), b(*model_, p1), c(*model_, p2);
  std::vector<float> la, lb, lc, one;
  a.forward(toks, LogitsMode::All, &la);
  for (size_t t = 0; t < toks.size(); ++t) {
    b.forward(std::span<const int32_t>(&toks[t], 1), LogitsMode::Last, &one);
    lb.insert(lb.end(), one.begin(), one.end());
  }
  c.forward(toks, LogitsMode::All, &lc, /*n_batch=*/16);
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    ASSERT_NEAR(la[i], lb[i], 1e-4) << "token " << i / V;
    ASSERT_NEAR(la[i], lc[i], 1e-4) << "token " << i / V;
  }
}

// Decode over a long cache cuts each head's keys into parts of about 512 (Session::
// attention_split), attended as separate work items and merged by log-sum-exp. The merged
// result must match attention over each head in one piece, which the same tokens get as rows
// of one prefill batch (Session::attention), for global layers and for sliding-window layers
// whose window (700 positions) is long enough to be split too. The parts depend on the cache
// alone, so one thread and two give the same logits bit for bit (test_determinism.cpp
// covers more).
TEST(ForwardSplitK, DecodeOverALongCacheMatchesOnePieceAndIsThreadCountInvariant) {
  for (const std::string arch : {"llama", "gemma3"}) {
    test::SyntheticSpec spec;
    spec.arch = arch;
    spec.n_ctx = 2048;
    spec.n_swa = 700;
    const std::string path = test::write_synthetic_llama(spec, "splitk-" + arch);
    auto model = Model::load(path);
    const int V = model->hp().n_vocab;
    std::vector<int32_t> toks(1300);
    for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 7 + 3) % 250);
    const std::vector<int32_t> steps = {5, 17, 200, 9};
    ThreadPool p1(1), p2(2);
    Session a(*model, p1), b(*model, p2), c(*model, p2);
    a.forward(toks, LogitsMode::None, nullptr);
    b.forward(toks, LogitsMode::None, nullptr);
    std::vector<int32_t> all = toks;
    all.insert(all.end(), steps.begin(), steps.end());
    std::vector<float> lc;  // the last batch (rows 1024..1303) attends each head in one piece
    c.forward(all, LogitsMode::All, &lc);
    std::vector<float> la, lb;
    for (size_t i = 0; i < steps.size(); ++i) {
      a.forward(std::span<const int32_t>(&steps[i], 1), LogitsMode::Last, &la);
      b.forward(std::span<const int32_t>(&steps[i], 1), LogitsMode::Last, &lb);
      ASSERT_EQ(la.size(), lb.size());
      ASSERT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * sizeof(float))) << arch << " step " << i;
      const float* one_piece = lc.data() + (toks.size() + i) * V;
      for (int v = 0; v < V; ++v) ASSERT_NEAR(la[v], one_piece[v], 1e-4) << arch << " step " << i << " logit " << v;
    }
    std::remove(path.c_str());
  }
}

TEST_F(ForwardTest, BadInputsAreErrors) {
  ThreadPool pool(1);
  Session s(*model_, pool, 16);
  std::vector<float> l;
  std::vector<int32_t> bad = {1, 99999};
  EXPECT_THROW(s.forward(bad, LogitsMode::Last, &l), Error);
  EXPECT_THROW(s.forward(some_tokens(17), LogitsMode::Last, &l), Error);  // past n_ctx_max
  EXPECT_EQ(s.n_pos(), 0);  // nothing consumed
  EXPECT_THROW(s.forward({}, LogitsMode::Last, &l), Error);
}

// After loading, the vocabulary arrays of the file's metadata are freed (the tokenizer has
// them): their sizes stay, so the fingerprint (which stored contexts are checked against)
// does not change, and reading them again is a named error.
TEST(ModelLoad, VocabularyArraysAreReleasedAndTheFingerprintKept) {
  test::SyntheticSpec spec;
  const std::string p = test::write_synthetic_llama(spec, "release");
  auto m = Model::load(p);
  const GgufValue* toks = m->file().find("tokenizer.ggml.tokens");
  ASSERT_NE(toks, nullptr);
  EXPECT_GE(toks->released, 256u);
  EXPECT_EQ(toks->array_size(), static_cast<size_t>(m->tokenizer().n_vocab()));
  EXPECT_EQ(model_fingerprint(*m), m->identity().fingerprint);
  try {
    (void)m->file().get_str_array("tokenizer.ggml.tokens");
    FAIL() << "a released array was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'tokenizer.ggml.tokens' was released"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m->tokenizer().decode(m->tokenizer().encode("abab")), "abab");
  std::remove(p.c_str());
}

TEST(ModelLoad, UnknownArchitectureAndMissingTensorAreErrors) {
  test::SyntheticSpec spec;
  spec.arch = "mamba9";
  std::string p = test::write_synthetic_llama(spec, "arch");
  try {
    Model::load(p);
    FAIL() << "unknown architecture accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("architecture 'mamba9' is not supported"), std::string::npos) << e.what();
  }
  std::remove(p.c_str());
  spec = {};
  spec.skip_tensor = "blk.1.ffn_up.weight";
  p = test::write_synthetic_llama(spec, "missing");
  try {
    Model::load(p);
    FAIL() << "missing tensor accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'blk.1.ffn_up.weight' is missing"), std::string::npos) << e.what();
  }
  std::remove(p.c_str());
}

// ---- Gemma 3 (synthetic: 4 layers, layers 0 and 2 local with a window of 8 positions) ----

namespace {

class Gemma3ForwardTest : public ::testing::Test {
 protected:
  static test::SyntheticSpec spec() {
    test::SyntheticSpec s;
    s.arch = "gemma3";
    s.n_layer = 4;
    s.n_swa = 8;
    s.swa_pattern = 2;
    s.rope_base_swa = 500.0f;  // differs from the global 10000: a mixed-up table shows
    return s;
  }
  static void SetUpTestSuite() {
    path_ = test::write_synthetic_llama(spec(), "gemma3-fwd");
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

TEST_F(Gemma3ForwardTest, LoaderMapsTheGemmaKeys) {
  const HParams& hp = model_->hp();
  EXPECT_EQ(hp.rope_style, RopeStyle::Neox);
  EXPECT_EQ(hp.ffn_act, FfnAct::GeluTanh);
  EXPECT_FLOAT_EQ(hp.embd_scale, 8.0f);  // sqrt(64)
  EXPECT_FLOAT_EQ(hp.softmax_scale(), 0.25f);
  EXPECT_EQ(hp.n_swa, 8);
  EXPECT_FLOAT_EQ(hp.rope_base_swa, 500.0f);
  EXPECT_EQ(hp.swa_layers, (std::vector<uint8_t>{1, 0, 1, 0}));  // every 2nd layer global
  EXPECT_TRUE(model_->w().layers[0].attn_post_norm && model_->w().layers[3].ffn_post_norm);

  test::SyntheticSpec s = spec();
  s.skip_tensor = "blk.2.post_ffw_norm.weight";
  std::string p = test::write_synthetic_llama(s, "gemma3-missing");
  EXPECT_THROW(Model::load(p), Error);
  std::remove(p.c_str());

  s = spec();
  s.swa_flags = {0, 1, 1, 0};  // the pattern key as per-layer flags
  p = test::write_synthetic_llama(s, "gemma3-flags");
  EXPECT_EQ(Model::load(p)->hp().swa_layers, (std::vector<uint8_t>{0, 1, 1, 0}));
  std::remove(p.c_str());
  s.swa_flags = {0, 1, 1};  // one per layer, or an error
  p = test::write_synthetic_llama(s, "gemma3-flags-bad");
  EXPECT_THROW(Model::load(p), Error);
  std::remove(p.c_str());
  s = spec();
  s.swa_pattern = 9;  // more than the 4 layers
  p = test::write_synthetic_llama(s, "gemma3-pattern-bad");
  EXPECT_THROW(Model::load(p), Error);
  std::remove(p.c_str());
}

// 40 tokens with a window of 8: one batch where each row has its own window start, batches
// of 7 (windows span batch boundaries) and token by token (the rolling cache drops rows).
TEST_F(Gemma3ForwardTest, MatchesDoublePrecisionReferenceInEveryBatching) {
  const auto toks = some_tokens(40);
  const auto want = reference_logits(*model_, toks);
  const int V = model_->hp().n_vocab;
  ThreadPool pool(2);
  for (int64_t n_batch : {64, 7, 1}) {
    Session s(*model_, pool);
    std::vector<float> got, one;
    if (n_batch == 1) {
      for (size_t t = 0; t < toks.size(); ++t) {
        s.forward(std::span<const int32_t>(&toks[t], 1), LogitsMode::Last, &one);
        got.insert(got.end(), one.begin(), one.end());
      }
    } else {
      s.forward(toks, LogitsMode::All, &got, n_batch);
    }
    double max_err = 0, max_ref = 0;
    for (size_t t = 0; t < toks.size(); ++t)
      for (int i = 0; i < V; ++i) {
        max_err = std::max(max_err, std::abs(got[t * V + i] - want[t][i]));
        max_ref = std::max(max_ref, std::abs(want[t][i]));
      }
    EXPECT_LT(max_err, 1e-4 * max_ref) << "n_batch " << n_batch << ": max |err| " << max_err << " of " << max_ref;
  }
}

TEST_F(Gemma3ForwardTest, LocalLayersKeepABoundedRollingWindow) {
  ThreadPool pool(1);
  Session s(*model_, pool);
  std::vector<float> l;
  const auto toks = some_tokens(100);
  for (size_t t = 0; t < toks.size(); ++t) {
    s.forward(std::span<const int32_t>(&toks[t], 1), LogitsMode::None, nullptr);
    for (int il = 0; il < 4; ++il) {
      const HeadSegment& seg = s.cache().seg(il, 0);
      if (il % 2 == 1) {
        ASSERT_EQ(seg.len, static_cast<int64_t>(t + 1));  // global layers keep every row
        continue;
      }
      // rows (t - 2 * n_swa, t] at most, and always the last n_swa positions
      ASSERT_LT(seg.len, 2 * 8 + 1) << "layer " << il << " after token " << t;
      ASSERT_EQ(seg.pos[seg.len - 1], static_cast<int32_t>(t));
      ASSERT_GE(seg.len, std::min<int64_t>(t + 1, 8));
    }
  }
  EXPECT_EQ(s.n_pos(), 100);
}

TEST_F(Gemma3ForwardTest, CheckpointRestoresRolledWindowsExactly) {
  ThreadPool pool(2);
  Session s(*model_, pool);
  const auto toks = some_tokens(60);
  s.forward(std::span<const int32_t>(toks.data(), 30), LogitsMode::None, nullptr);
  const KvCache before = s.cache().clone();
  const Session::Checkpoint cp = s.checkpoint();
  std::vector<float> a, b;
  s.forward(std::span<const int32_t>(toks.data() + 30, 1), LogitsMode::Last, &a);
  s.restore(cp);
  // 30 more tokens, one by one and as a batch: the local layers roll far past their window
  for (int t = 30; t < 45; ++t) s.forward(std::span<const int32_t>(&toks[t], 1), LogitsMode::None, nullptr);
  s.forward(std::span<const int32_t>(toks.data() + 45, 15), LogitsMode::None, nullptr);
  s.restore(cp);
  EXPECT_EQ(s.n_pos(), 30);
  for (int il = 0; il < 4; ++il)
    EXPECT_TRUE(test::same_rows(s.cache().seg(il, 0), before.seg(il, 0), before.row_bytes())) << "layer " << il;
  s.forward(std::span<const int32_t>(toks.data() + 30, 1), LogitsMode::Last, &b);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "same state, same logits, bit for bit";
}

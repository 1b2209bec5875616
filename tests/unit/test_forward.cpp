// The Llama forward pass on a tiny random model against a plain double-precision
// implementation written here from the same weights (K/V rounded to f16 as the cache
// stores them), and batch / incremental / multi-thread consistency.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/fp16.h"
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

// Reference: logits [n][n_vocab] for tokens at positions 0..n-1.
std::vector<std::vector<double>> reference_logits(const Model& m, const std::vector<int32_t>& toks) {
  const HParams& hp = m.hp();
  const Weights& w = m.w();
  const int d = hp.n_embd, dh = hp.d_head, G = hp.n_group();
  const int n = static_cast<int>(toks.size());
  std::vector<std::vector<double>> x(n);
  const auto emb = dense(w.tok_embd);
  for (int t = 0; t < n; ++t) x[t].assign(emb.begin() + toks[t] * d, emb.begin() + (toks[t] + 1) * d);
  for (int il = 0; il < hp.n_layer; ++il) {
    const LayerWeights& l = w.layers[il];
    const auto Wq = dense(l.wq), Wk = dense(l.wk), Wv = dense(l.wv), Wo = dense(l.wo);
    const auto Wg = dense(l.w_gate), Wu = dense(l.w_up), Wd = dense(l.w_down);
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (int t = 0; t < n; ++t) {
      const auto h = rmsn(x[t], l.attn_norm, hp.norm_eps);
      q[t] = mv(Wq, h, d, hp.n_head * dh);
      k[t] = mv(Wk, h, d, hp.n_head_kv * dh);
      v[t] = mv(Wv, h, d, hp.n_head_kv * dh);
      auto rope = [&](std::vector<double>& z, int nh) {
        for (int hh = 0; hh < nh; ++hh)
          for (int i = 0; i < dh / 2; ++i) {
            const double th = t * std::pow(static_cast<double>(hp.rope_base), -2.0 * i / dh);
            double& a = z[hh * dh + 2 * i];
            double& b = z[hh * dh + 2 * i + 1];
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
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double acc = 0;
          for (int c = 0; c < dh; ++c) acc += q[t][hq * dh + c] * k[j][hk * dh + c];
          s[j] = acc / std::sqrt(static_cast<double>(dh));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& e : s) sum += e = std::exp(e - mx);
        for (int j = 0; j <= t; ++j)
          for (int c = 0; c < dh; ++c) att[hq * dh + c] += s[j] / sum * v[j][hk * dh + c];
      }
      const auto o = mv(Wo, att, hp.n_head * dh, d);
      for (int i = 0; i < d; ++i) x[t][i] += o[i];
      const auto h2 = rmsn(x[t], l.ffn_norm, hp.norm_eps);
      auto g = mv(Wg, h2, d, hp.n_ff);
      const auto u = mv(Wu, h2, d, hp.n_ff);
      for (int i = 0; i < hp.n_ff; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const auto dn = mv(Wd, g, hp.n_ff, d);
      for (int i = 0; i < d; ++i) x[t][i] += dn[i];
    }
  }
  const auto Wout = dense(w.output);
  std::vector<std::vector<double>> out(n);
  for (int t = 0; t < n; ++t) out[t] = mv(Wout, rmsn(x[t], w.output_norm, hp.norm_eps), d, hp.n_vocab);
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

// The two-layer MLP surrogate's trainer (see trainers.h): forward, analytic backward,
// gradient-norm clipping and AdamW, one layer per call, fp32.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "kvzap/trainers.h"

namespace kvz {

namespace {

float gelu_grad(float z) {  // d/dz [z Phi(z)] = Phi(z) + z phi(z)
  const float cdf = 0.5f * (1.0f + std::erf(z * 0.70710678118654752f));
  const float pdf = 0.3989422804014327f * std::exp(-0.5f * z * z);
  return cdf + z * pdf;
}

// Scratch of one forward/backward over a batch.
struct Work {
  std::vector<float> z, a, pred, da;  // [n][F], [n][F], [n][H], [F]
};

double loss_grad(const MlpParams& p, const float* x, const float* y, int64_t n, MlpParams* g, Work& w) {
  const int D = p.d_in, F = p.hidden, H = p.n_out;
  w.z.resize(static_cast<size_t>(n) * F);
  w.a.resize(w.z.size());
  w.pred.resize(static_cast<size_t>(n) * H);
  w.da.resize(F);
  for (int64_t r = 0; r < n; ++r) {
    float* z = w.z.data() + r * F;
    std::copy(p.b1.begin(), p.b1.end(), z);
    const float* xr = x + r * D;
    for (int d = 0; d < D; ++d) {
      const float xd = xr[d];
      const float* wd = p.w1t.data() + static_cast<size_t>(d) * F;
      for (int f = 0; f < F; ++f) z[f] += xd * wd[f];
    }
    float* a = w.a.data() + r * F;
    for (int f = 0; f < F; ++f) a[f] = gelu_erf(z[f]);
    for (int h = 0; h < H; ++h) {
      const float* w2 = p.w2.data() + static_cast<size_t>(h) * F;
      float s = p.b2[h];
      for (int f = 0; f < F; ++f) s += w2[f] * a[f];
      w.pred[r * H + h] = s;
    }
  }
  double loss = 0.0;
  for (int64_t i = 0; i < n * H; ++i) {
    const double e = double{w.pred[i]} - y[i];
    loss += e * e;
  }
  const double denom = static_cast<double>(n) * H;
  loss /= denom;
  if (!g) return loss;
  *g = MlpParams{D,
                 F,
                 H,
                 std::vector<float>(p.w1t.size(), 0.0f),
                 std::vector<float>(F, 0.0f),
                 std::vector<float>(p.w2.size(), 0.0f),
                 std::vector<float>(H, 0.0f)};
  const float k = static_cast<float>(2.0 / denom);
  for (int64_t r = 0; r < n; ++r) {
    const float* a = w.a.data() + r * F;
    const float* z = w.z.data() + r * F;
    std::fill(w.da.begin(), w.da.end(), 0.0f);
    for (int h = 0; h < H; ++h) {
      const float dp = k * (w.pred[r * H + h] - y[r * H + h]);
      g->b2[h] += dp;
      float* gw2 = g->w2.data() + static_cast<size_t>(h) * F;
      const float* w2 = p.w2.data() + static_cast<size_t>(h) * F;
      for (int f = 0; f < F; ++f) {
        gw2[f] += dp * a[f];
        w.da[f] += dp * w2[f];
      }
    }
    for (int f = 0; f < F; ++f) {
      w.da[f] *= gelu_grad(z[f]);  // now dL/dz
      g->b1[f] += w.da[f];
    }
    const float* xr = x + r * D;
    for (int d = 0; d < D; ++d) {
      const float xd = xr[d];
      float* gd = g->w1t.data() + static_cast<size_t>(d) * F;
      for (int f = 0; f < F; ++f) gd[f] += xd * w.da[f];
    }
  }
  return loss;
}

template <typename Fn>
void for_each_tensor(MlpParams& a, MlpParams& b, Fn fn) {
  fn(a.w1t, b.w1t);
  fn(a.b1, b.b1);
  fn(a.w2, b.w2);
  fn(a.b2, b.b2);
}

}  // namespace

MlpParams MlpParams::init(int d_in, int hidden, int n_out, uint64_t seed) {
  MlpParams p{d_in,
              hidden,
              n_out,
              std::vector<float>(static_cast<size_t>(d_in) * hidden),
              std::vector<float>(hidden),
              std::vector<float>(static_cast<size_t>(n_out) * hidden),
              std::vector<float>(n_out)};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u1(-1.0f / std::sqrt(static_cast<float>(d_in)),
                                           1.0f / std::sqrt(static_cast<float>(d_in)));
  std::uniform_real_distribution<float> u2(-1.0f / std::sqrt(static_cast<float>(hidden)),
                                           1.0f / std::sqrt(static_cast<float>(hidden)));
  for (float& v : p.w1t) v = u1(rng);
  for (float& v : p.b1) v = u1(rng);
  for (float& v : p.w2) v = u2(rng);
  for (float& v : p.b2) v = u2(rng);
  return p;
}

void MlpParams::to_layer(KvzapLayer& l) const {
  l.w1.assign(static_cast<size_t>(hidden) * d_in, 0.0f);
  for (int d = 0; d < d_in; ++d)
    for (int f = 0; f < hidden; ++f) l.w1[static_cast<size_t>(f) * d_in + d] = w1t[static_cast<size_t>(d) * hidden + f];
  l.b1 = b1;
  l.w2 = w2;
  l.b2 = b2;
}

double mlp_loss_grad(const MlpParams& p, const float* x, const float* y, int64_t n, MlpParams* grad) {
  Work w;
  return loss_grad(p, x, y, n, grad, w);
}

MlpParams mlp_fit(const uint16_t* x, const float* y, int64_t n, int D, int H, const MlpTrainOptions& o,
                  const std::function<void(int, double)>& epoch_done) {
  if (n < 1 || o.hidden < 1 || o.batch < 1 || o.epochs < 1)
    fail("mlp: nothing to train (n {}, hidden {}, batch {}, epochs {})", n, o.hidden, o.batch, o.epochs);
  MlpParams p = MlpParams::init(D, o.hidden, H, o.seed);
  MlpParams m = p, v = p, g;
  for_each_tensor(m, v, [](std::vector<float>& a, std::vector<float>& b) {
    std::fill(a.begin(), a.end(), 0.0f);
    std::fill(b.begin(), b.end(), 0.0f);
  });
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<float> xb(static_cast<size_t>(o.batch) * D), yb(static_cast<size_t>(o.batch) * H);
  Work w;
  int64_t step = 0;
  for (int ep = 0; ep < o.epochs; ++ep) {
    const double lr = o.lr * 0.5 * (1.0 + std::cos(M_PI * ep / o.epochs));  // CosineAnnealingLR(T_max=epochs)
    std::shuffle(order.begin(), order.end(), rng);
    double sum_loss = 0.0;
    for (int64_t s0 = 0; s0 < n; s0 += o.batch) {
      const int64_t nb = std::min<int64_t>(o.batch, n - s0);
      for (int64_t t = 0; t < nb; ++t) {
        const int64_t r = order[s0 + t];
        for (int c = 0; c < D; ++c) xb[t * D + c] = bf16_to_f32(x[r * D + c]);
        for (int h = 0; h < H; ++h) yb[t * H + h] = y[r * H + h];
      }
      sum_loss += loss_grad(p, xb.data(), yb.data(), nb, &g, w) * nb;
      double norm2 = 0.0;
      for_each_tensor(g, g, [&](std::vector<float>& a, std::vector<float>&) {
        for (float e : a) norm2 += double{e} * e;
      });
      const double coef = o.clip / (std::sqrt(norm2) + 1e-6);  // torch clip_grad_norm_
      const float cs = coef < 1.0 ? static_cast<float>(coef) : 1.0f;
      ++step;
      const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step)),
                   bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
      auto update = [&](std::vector<float>& pp, std::vector<float>& gg, std::vector<float>& mm,
                        std::vector<float>& vv) {
        for (size_t i = 0; i < pp.size(); ++i) {
          const float gi = gg[i] * cs;
          pp[i] -= static_cast<float>(lr * o.weight_decay) * pp[i];
          mm[i] = static_cast<float>(b1) * mm[i] + static_cast<float>(1.0 - b1) * gi;
          vv[i] = static_cast<float>(b2) * vv[i] + static_cast<float>(1.0 - b2) * gi * gi;
          const double mh = mm[i] / bc1, vh = vv[i] / bc2;
          pp[i] -= static_cast<float>(lr * mh / (std::sqrt(vh) + eps));
        }
      };
      update(p.w1t, g.w1t, m.w1t, v.w1t);
      update(p.b1, g.b1, m.b1, v.b1);
      update(p.w2, g.w2, m.w2, v.w2);
      update(p.b2, g.b2, m.b2, v.b2);
    }
    if (epoch_done) epoch_done(ep, sum_loss / static_cast<double>(n));
  }
  return p;
}

}  // namespace kvz

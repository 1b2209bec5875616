// KVzap trainers (kvzap/trainers.h): closed-form ridge and the MLP's gradient and fit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"
#include "kvzap/trainers.h"

using namespace kvz;

namespace {

// Random X rounded to bf16 (what the trainers read), also returned as f32.
std::vector<uint16_t> random_x(int64_t n, int D, uint64_t seed, std::vector<float>& xf) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.5f, 1.0f);
  std::vector<uint16_t> x(static_cast<size_t>(n) * D);
  xf.resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = f32_to_bf16(nd(rng));
    xf[i] = bf16_to_f32(x[i]);
  }
  return x;
}

// (Xc^T Xc + alpha I) w = Xc^T yc by Gaussian elimination with partial pivoting, in double.
std::vector<double> normal_equations(const std::vector<float>& x, const std::vector<float>& y, int64_t n, int D, int H,
                                     int h, double alpha) {
  std::vector<double> mx(D, 0.0);
  double my = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    for (int c = 0; c < D; ++c) mx[c] += x[r * D + c] / static_cast<double>(n);
    my += y[r * H + h] / static_cast<double>(n);
  }
  std::vector<double> M(static_cast<size_t>(D) * (D + 1), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int a = 0; a < D; ++a) {
      const double xa = x[r * D + a] - mx[a];
      for (int b = 0; b < D; ++b) M[a * (D + 1) + b] += xa * (x[r * D + b] - mx[b]);
      M[a * (D + 1) + D] += xa * (y[r * H + h] - my);
    }
  for (int a = 0; a < D; ++a) M[a * (D + 1) + a] += alpha;
  for (int c = 0; c < D; ++c) {
    int piv = c;
    for (int r = c + 1; r < D; ++r)
      if (std::abs(M[r * (D + 1) + c]) > std::abs(M[piv * (D + 1) + c])) piv = r;
    for (int k = 0; k <= D; ++k) std::swap(M[c * (D + 1) + k], M[piv * (D + 1) + k]);
    for (int r = 0; r < D; ++r) {
      if (r == c) continue;
      const double f = M[r * (D + 1) + c] / M[c * (D + 1) + c];
      for (int k = 0; k <= D; ++k) M[r * (D + 1) + k] -= f * M[c * (D + 1) + k];
    }
  }
  std::vector<double> w(D);
  for (int a = 0; a < D; ++a) w[a] = M[a * (D + 1) + D] / M[a * (D + 1) + a];
  return w;
}

TEST(KvzapTrainers, RidgeRecoversALinearMapAndMatchesTheNormalEquations) {
  const int64_t n = 3000;
  const int D = 24, H = 3;
  std::vector<float> xf;
  const std::vector<uint16_t> x = random_x(n, D, 7, xf);
  std::mt19937_64 rng(8);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> W(static_cast<size_t>(H) * D), b = {0.5f, -2.0f, 3.0f}, y(static_cast<size_t>(n) * H);
  for (float& w : W) w = nd(rng);
  for (int64_t r = 0; r < n; ++r)
    for (int h = 0; h < H; ++h) {
      double s = b[h];
      for (int c = 0; c < D; ++c) s += double{W[h * D + c]} * xf[r * D + c];
      y[r * H + h] = static_cast<float>(s + 0.01 * nd(rng));
    }
  KvzapLayer l;
  ridge_fit(x.data(), y.data(), n, D, H, 1.0, l);
  ASSERT_EQ(l.w1.size(), W.size());
  ASSERT_EQ(l.b1.size(), 3u);
  for (int h = 0; h < H; ++h) {
    const std::vector<double> ne = normal_equations(xf, y, n, D, H, h, 1.0);
    for (int c = 0; c < D; ++c) {
      EXPECT_NEAR(l.w1[h * D + c], W[h * D + c], 5e-3) << h << "," << c;  // the map (shrunk by alpha=1 / n)
      EXPECT_NEAR(l.w1[h * D + c], ne[c], 1e-5) << h << "," << c;         // exactly the ridge solution
    }
    EXPECT_NEAR(l.b1[h], b[h], 5e-3);
  }
  // A larger alpha really shrinks: the solution moves off the true map towards 0.
  KvzapLayer big;
  ridge_fit(x.data(), y.data(), n, D, H, 3000.0, big);
  const std::vector<double> ne = normal_equations(xf, y, n, D, H, 0, 3000.0);
  double nb = 0, nw = 0;
  for (int c = 0; c < D; ++c) {
    EXPECT_NEAR(big.w1[c], ne[c], 1e-5);
    nb += big.w1[c] * big.w1[c];
    nw += W[c] * W[c];
  }
  EXPECT_LT(nb, 0.8 * nw);
}

TEST(KvzapTrainers, MlpGradientMatchesFiniteDifferences) {
  const int D = 6, F = 5, H = 2;
  const int64_t n = 9;
  std::vector<float> x;
  random_x(n, D, 3, x);
  std::vector<float> y(static_cast<size_t>(n) * H);
  std::mt19937_64 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : y) v = nd(rng);
  MlpParams p = MlpParams::init(D, F, H, 11);
  MlpParams g;
  mlp_loss_grad(p, x.data(), y.data(), n, &g);
  auto check = [&](std::vector<float>& param, const std::vector<float>& grad, const char* name) {
    for (size_t i = 0; i < param.size(); ++i) {
      const float keep = param[i], eps = 1e-2f;
      param[i] = keep + eps;
      const double lp = mlp_loss_grad(p, x.data(), y.data(), n, nullptr);
      param[i] = keep - eps;
      const double lm = mlp_loss_grad(p, x.data(), y.data(), n, nullptr);
      param[i] = keep;
      const double fd = (lp - lm) / (2.0 * eps);
      EXPECT_NEAR(grad[i], fd, 2e-3 + 2e-2 * std::abs(fd)) << name << "[" << i << "]";
    }
  };
  check(p.w1t, g.w1t, "w1t");
  check(p.b1, g.b1, "b1");
  check(p.w2, g.w2, "w2");
  check(p.b2, g.b2, "b2");
}

TEST(KvzapTrainers, MlpFitsANonlinearTarget) {
  const int64_t n = 4096;
  const int D = 8, H = 2;
  std::vector<float> xf;
  const std::vector<uint16_t> x = random_x(n, D, 21, xf);
  std::vector<float> y(static_cast<size_t>(n) * H);
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = xf.data() + r * D;
    y[r * H + 0] = std::sin(1.5f * xr[0]) + 0.5f * xr[1] * xr[2];
    y[r * H + 1] = std::abs(xr[3]) - 0.3f * xr[4];
  }
  MlpTrainOptions o;
  o.hidden = 32;
  o.epochs = 40;
  o.batch = 128;
  std::vector<double> losses;
  const MlpParams p = mlp_fit(x.data(), y.data(), n, D, H, o, [&](int, double l) { losses.push_back(l); });
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_LT(losses.back(), 0.2 * losses.front());
  // R^2 of the trained model through KvzapModel::predict (the layout the file stores).
  KvzapModel m = KvzapModel::zeros(KvzapModel::Kind::Mlp, 1, D, H, o.hidden);
  p.to_layer(m.layer(0));
  std::vector<float> pred(y.size()), scratch;
  m.predict(0, xf.data(), n, pred.data(), scratch);
  const std::vector<double> r2 = r2_per_column(y.data(), pred.data(), n, H);
  EXPECT_GT(r2[0], 0.95);
  EXPECT_GT(r2[1], 0.95);
  // A linear fit cannot do this well (the target is nonlinear).
  KvzapLayer lin;
  ridge_fit(x.data(), y.data(), n, D, H, 1.0, lin);
  KvzapModel ml = KvzapModel::zeros(KvzapModel::Kind::Linear, 1, D, H, 0);
  ml.layer(0) = lin;
  ml.predict(0, xf.data(), n, pred.data(), scratch);
  EXPECT_LT(r2_per_column(y.data(), pred.data(), n, H)[1], 0.5);
}

}  // namespace

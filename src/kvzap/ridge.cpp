// Closed-form ridge regression for the linear KVzap surrogate (see trainers.h).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fp16.h"
#include "kvzap/trainers.h"

namespace kvz {

namespace {

// In place: A = L L^T (lower triangle of A receives L). A: [n][n] symmetric positive definite.
void cholesky(std::vector<double>& A, int n) {
  for (int j = 0; j < n; ++j) {
    double d = A[static_cast<size_t>(j) * n + j];
    for (int k = 0; k < j; ++k) d -= A[static_cast<size_t>(j) * n + k] * A[static_cast<size_t>(j) * n + k];
    if (!(d > 0.0)) fail("ridge: normal matrix is not positive definite at column {} (pivot {})", j, d);
    const double ljj = std::sqrt(d);
    A[static_cast<size_t>(j) * n + j] = ljj;
    for (int i = j + 1; i < n; ++i) {
      double s = A[static_cast<size_t>(i) * n + j];
      for (int k = 0; k < j; ++k) s -= A[static_cast<size_t>(i) * n + k] * A[static_cast<size_t>(j) * n + k];
      A[static_cast<size_t>(i) * n + j] = s / ljj;
    }
  }
}

// Solves L L^T x = b in place (b -> x).
void cholesky_solve(const std::vector<double>& L, int n, double* b) {
  for (int i = 0; i < n; ++i) {
    double s = b[i];
    for (int k = 0; k < i; ++k) s -= L[static_cast<size_t>(i) * n + k] * b[k];
    b[i] = s / L[static_cast<size_t>(i) * n + i];
  }
  for (int i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int k = i + 1; k < n; ++k) s -= L[static_cast<size_t>(k) * n + i] * b[k];
    b[i] = s / L[static_cast<size_t>(i) * n + i];
  }
}

}  // namespace

void ridge_fit(const uint16_t* x, const float* y, int64_t n, int D, int H, double alpha, KvzapLayer& layer) {
  if (n < 2) fail("ridge: need at least 2 training rows, got {}", n);
  std::vector<double> mx(D, 0.0), my(H, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    for (int c = 0; c < D; ++c) mx[c] += bf16_to_f32(x[r * D + c]);
    for (int h = 0; h < H; ++h) my[h] += y[r * H + h];
  }
  for (double& v : mx) v /= static_cast<double>(n);
  for (double& v : my) v /= static_cast<double>(n);
  // Xc^T Xc accumulated in f32 over blocks of kBlock rows (vectorisable saxpy rows), each
  // block added to the double sum: the f32 error stays that of a kBlock-term sum.
  constexpr int kBlock = 64;
  std::vector<double> A(static_cast<size_t>(D) * D, 0.0), B(static_cast<size_t>(D) * H, 0.0);
  std::vector<float> S(static_cast<size_t>(D) * D), xc(static_cast<size_t>(kBlock) * D);
  std::vector<float> mxf(D);
  for (int c = 0; c < D; ++c) mxf[c] = static_cast<float>(mx[c]);
  for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kBlock, n - r0));
    for (int t = 0; t < nb; ++t)
      for (int c = 0; c < D; ++c) xc[static_cast<size_t>(t) * D + c] = bf16_to_f32(x[(r0 + t) * D + c]) - mxf[c];
    std::fill(S.begin(), S.end(), 0.0f);
    for (int t = 0; t < nb; ++t) {
      const float* xt = xc.data() + static_cast<size_t>(t) * D;
      for (int a = 0; a < D; ++a) {
        const float xa = xt[a];
        float* Sa = S.data() + static_cast<size_t>(a) * D;
        for (int b = a; b < D; ++b) Sa[b] += xa * xt[b];
      }
      for (int a = 0; a < D; ++a)
        for (int h = 0; h < H; ++h) B[static_cast<size_t>(a) * H + h] += double{xt[a]} * (y[(r0 + t) * H + h] - my[h]);
    }
    for (int a = 0; a < D; ++a)
      for (int b = a; b < D; ++b) A[static_cast<size_t>(a) * D + b] += S[static_cast<size_t>(a) * D + b];
  }
  for (int a = 0; a < D; ++a) {
    A[static_cast<size_t>(a) * D + a] += alpha;
    for (int b = a + 1; b < D; ++b) A[static_cast<size_t>(b) * D + a] = A[static_cast<size_t>(a) * D + b];
  }
  cholesky(A, D);
  layer.w1.assign(static_cast<size_t>(H) * D, 0.0f);
  layer.b1.assign(H, 0.0f);
  layer.w2.clear();
  layer.b2.clear();
  std::vector<double> rhs(D);
  for (int h = 0; h < H; ++h) {
    for (int a = 0; a < D; ++a) rhs[a] = B[static_cast<size_t>(a) * H + h];
    cholesky_solve(A, D, rhs.data());
    double b = my[h];
    for (int a = 0; a < D; ++a) {
      layer.w1[static_cast<size_t>(h) * D + a] = static_cast<float>(rhs[a]);
      b -= rhs[a] * mx[a];
    }
    layer.b1[h] = static_cast<float>(b);
  }
}

std::vector<double> r2_per_column(const float* y, const float* pred, int64_t n, int H) {
  std::vector<double> out(H, 0.0);
  for (int h = 0; h < H; ++h) {
    double mean = 0.0;
    for (int64_t r = 0; r < n; ++r) mean += y[r * H + h];
    mean /= static_cast<double>(std::max<int64_t>(n, 1));
    double ss_res = 0.0, ss_tot = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      const double e = double{y[r * H + h]} - pred[r * H + h], t = double{y[r * H + h]} - mean;
      ss_res += e * e;
      ss_tot += t * t;
    }
    out[h] = ss_tot > 0 ? 1.0 - ss_res / ss_tot : 0.0;
  }
  return out;
}

}  // namespace kvz

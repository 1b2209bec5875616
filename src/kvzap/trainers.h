// Trainers of the KVzap surrogate (kvzap-and-presses.md §1.5; kvpress kvzap/train.py), one
// layer at a time on (X, y) pairs: X [n][d_in] attention inputs stored as bf16 (training
// data for a 30-layer model is n * 30 * d_in values), y [n][n_out] f32 log KVzip+ scores.
//   ridge: sklearn Ridge(alpha=1) with intercept: center X and y, solve
//          (Xc^T Xc + alpha I) w = Xc^T yc in double (Cholesky), b = mean(y) - w . mean(X).
//   mlp:   s = W2 gelu(W1 h + b1) + b2, MSE, AdamW (torch defaults: betas 0.9/0.999, eps
//          1e-8, weight decay 0.01 on every parameter), lr 5e-3 cosine-annealed per epoch over
//          15 epochs, shuffled batches of 512, gradient-norm clipping at 1.0, fp32, torch's
//          nn.Linear initialisation U(-1/sqrt(in), 1/sqrt(in)).
// Differences from upstream: upstream trains all layers' MLPs as one module in bf16 (one
// loss over all layers, one clipping norm); here each layer is its own fp32 problem, so
// layers train in parallel and the clipping norm is per layer. No 5% internal split (upstream
// only monitors it).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kv/kvzap_model.h"

namespace kvz {

// Fills layer.w1 [n_out][d_in] and layer.b1 [n_out].
void ridge_fit(const uint16_t* x_bf16, const float* y, int64_t n, int d_in, int n_out, double alpha, KvzapLayer& layer);

struct MlpTrainOptions {
  int hidden = 0;  // F, the hidden width (KVzap: d_in / 8)
  int epochs = 15;
  int batch = 512;
  double lr = 5e-3;
  double weight_decay = 0.01;
  double clip = 1.0;
  uint64_t seed = 42;
};

// Parameters in the layout the trainer works in: W1 transposed so both products stream
// contiguous rows of F values.
struct MlpParams {
  int d_in = 0, hidden = 0, n_out = 0;
  std::vector<float> w1t;                                                 // [d_in][F]
  std::vector<float> b1;                                                  // [F]
  std::vector<float> w2;                                                  // [n_out][F]
  std::vector<float> b2;                                                  // [n_out]
  static MlpParams init(int d_in, int hidden, int n_out, uint64_t seed);  // torch nn.Linear init
  void to_layer(KvzapLayer& layer) const;                                 // w1 [F][d_in], ...
  size_t size() const { return w1t.size() + b1.size() + w2.size() + b2.size(); }
};

// Mean squared error over n rows x n_out outputs of x (f32 [n][d_in]) against y, and, when
// grad is non-null, its gradient (same shapes as p). The training loop uses the same code.
double mlp_loss_grad(const MlpParams& p, const float* x, const float* y, int64_t n, MlpParams* grad);

// Trains one layer; epoch_done(epoch, mean training loss) after each epoch.
MlpParams mlp_fit(const uint16_t* x_bf16, const float* y, int64_t n, int d_in, int n_out, const MlpTrainOptions& o,
                  const std::function<void(int, double)>& epoch_done = {});

// Coefficient of determination of pred against y, one per output column (per (layer, KV
// head); the paper averages these). y, pred: [n][n_out].
std::vector<double> r2_per_column(const float* y, const float* pred, int64_t n, int n_out);

}  // namespace kvz

// Building blocks shared by the architectures: norms, rotary embedding, activations.
// Row-wise, f32, single-threaded (they are a small fraction of a token's work).
#pragma once

#include <cstdint>
#include <vector>

#include "model/hparams.h"

namespace kvz {

// y = x / rms(x) * w, over n elements. y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rotary embedding tables for a run of positions: cos/sin [n_pos][rope_dim/2].
struct RopeTable {
  std::vector<float> cos, sin;
  int half = 0;
  // local: the sliding-window layers' table (rope_base_swa, no linear scaling).
  void build(const HParams& hp, const std::vector<float>& freq_divisors, const int32_t* pos, int64_t n_pos,
             bool local = false);
};

// Rotates n_heads heads of d_head floats (contiguous) of one token in place.
void rope_apply(float* x, int n_heads, int d_head, RopeStyle style, const float* cos, const float* sin);

// out[i] = silu(gate[i]) * up[i]
void swiglu(const float* gate, const float* up, float* out, int64_t n);
// out[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void geglu_tanh(const float* gate, const float* up, float* out, int64_t n);
// x[i] = c * tanh(x[i] / c)
void softcap(float* x, int64_t n, float c);

}  // namespace kvz

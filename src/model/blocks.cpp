#include "model/blocks.h"

#include <cmath>

namespace kvz {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0.0;  // double: n up to ~16K terms, keeps the norm exact enough for parity
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float s = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * w[i];
}

void RopeTable::build(const HParams& hp, const std::vector<float>& freq_divisors, const int32_t* pos, int64_t n_pos,
                      bool local) {
  half = hp.rope_dim / 2;
  const double base = local ? hp.rope_base_swa : hp.rope_base;
  const double lin = local ? 1.0 : hp.rope_linear_scale;
  cos.resize(static_cast<size_t>(n_pos) * half);
  sin.resize(static_cast<size_t>(n_pos) * half);
  for (int i = 0; i < half; ++i) {
    // theta_i = base^(-2i/d) / divisor_i; computed in double, positions can be ~1e6.
    double inv_freq = std::pow(base, -2.0 * i / hp.rope_dim);
    if (!freq_divisors.empty()) inv_freq /= freq_divisors[i];
    for (int64_t t = 0; t < n_pos; ++t) {
      const double a = (pos[t] / lin) * inv_freq;
      cos[t * half + i] = static_cast<float>(std::cos(a));
      sin[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

void rope_apply(float* x, int n_heads, int d_head, RopeStyle style, const float* cos, const float* sin) {
  const int half = d_head / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * d_head;
    if (style == RopeStyle::Interleaved) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos[i] - b * sin[i];
        v[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = a * sin[i] + b * cos[i];
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void geglu_tanh(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * g * (1.0f + 0.044715f * g * g))) * up[i];
  }
}

void softcap(float* x, int64_t n, float c) {
  const float inv = 1.0f / c;
  for (int64_t i = 0; i < n; ++i) x[i] = c * std::tanh(x[i] * inv);
}

}  // namespace kvz

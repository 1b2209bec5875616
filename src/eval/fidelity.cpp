#include "eval/fidelity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvz {

void Fidelity::add(const Fidelity& o) {
  n_tokens += o.n_tokens;
  sum_abs_dp += o.sum_abs_dp;
  max_abs_dp = std::max(max_abs_dp, o.max_abs_dp);
  flips += o.flips;
  sum_kl += o.sum_kl;
  max_kl = std::max(max_kl, o.max_kl);
}

Fidelity compare_logprobs(const std::vector<float>& full, const std::vector<float>& comp,
                          const std::vector<int32_t>& targets, int n_vocab) {
  const size_t n = targets.size(), V = static_cast<size_t>(n_vocab);
  KVZ_ASSERT(full.size() == n * V && comp.size() == n * V, "logprob rows {} / {} for {} targets x {} vocab",
             full.size(), comp.size(), n, V);
  Fidelity f;
  f.n_tokens = static_cast<int64_t>(n);
  for (size_t i = 0; i < n; ++i) {
    const float* a = full.data() + i * V;
    const float* b = comp.data() + i * V;
    const size_t t = static_cast<size_t>(targets[i]);
    KVZ_ASSERT(t < V, "target id {} outside the vocabulary of {}", t, V);
    const double dp = std::abs(std::exp(static_cast<double>(b[t])) - std::exp(static_cast<double>(a[t])));
    f.sum_abs_dp += dp;
    f.max_abs_dp = std::max(f.max_abs_dp, dp);
    f.flips += (std::max_element(a, a + V) - a) != (std::max_element(b, b + V) - b);
    double kl = 0;
    for (size_t v = 0; v < V; ++v) {
      const double pa = std::exp(static_cast<double>(a[v]));
      if (pa > 0) kl += pa * (static_cast<double>(a[v]) - static_cast<double>(b[v]));
    }
    kl = std::max(0.0, kl);  // rounding can make a zero divergence slightly negative
    f.sum_kl += kl;
    f.max_kl = std::max(f.max_kl, kl);
  }
  return f;
}

}  // namespace kvz

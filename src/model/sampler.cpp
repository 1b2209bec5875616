#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvz {

int32_t argmax(const float* x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  if (!(p.temperature >= 0.0f)) fail("temperature must be >= 0, got {}", p.temperature);
  if (p.top_k < 0) fail("top-k must be >= 0, got {}", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("top-p must be in (0, 1], got {}", p.top_p);
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (p_.temperature == 0.0f) return argmax(logits, n_vocab);
  cand_.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) cand_[i] = {logits[i] / p_.temperature, i};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = p_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  const float mx = cand_[0].first;
  double sum = 0.0;
  std::vector<double> prob(n);
  for (size_t i = 0; i < n; ++i) sum += prob[i] = std::exp(static_cast<double>(cand_[i].first - mx));
  // top-p: smallest prefix whose mass reaches p
  double cum = 0.0;
  size_t keep = n;
  for (size_t i = 0; i < n; ++i) {
    cum += prob[i] / sum;
    if (cum >= p_.top_p) {
      keep = i + 1;
      break;
    }
  }
  double kept_sum = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_sum += prob[i];
  std::uniform_real_distribution<double> u(0.0, kept_sum);
  double r = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0.0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace kvz

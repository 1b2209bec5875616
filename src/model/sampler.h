// Token sampling: greedy, or temperature + top-k + top-p with a seeded generator.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvz {

struct SamplerParams {
  float temperature = 0.0f;  // 0: greedy (argmax, lowest id wins ties)
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  int32_t sample(const float* logits, int n_vocab);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* x, int n);

}  // namespace kvz

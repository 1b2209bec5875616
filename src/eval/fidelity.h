// Fidelity of a compressed cache (the reference's test.py / utils/tester.py, kvzip-spec
// §6.2): the full-cache answer is teacher-forced under both caches and the next-token
// distributions are compared. Meaningful even where a small model's task score is low.
#pragma once

#include <cstdint>
#include <vector>

namespace kvz {

struct Fidelity {
  int64_t n_tokens = 0;        // teacher-forced answer tokens compared
  double sum_abs_dp = 0;       // sum over tokens of |p_comp(target) - p_full(target)|
  double max_abs_dp = 0;
  int64_t flips = 0;           // tokens whose argmax differs between the two caches
  double sum_kl = 0;           // sum over tokens of KL(p_full || p_comp), nats
  double max_kl = 0;

  double mean_abs_dp() const { return n_tokens ? sum_abs_dp / n_tokens : 0.0; }
  double flip_rate() const { return n_tokens ? static_cast<double>(flips) / n_tokens : 0.0; }
  double mean_kl() const { return n_tokens ? sum_kl / n_tokens : 0.0; }
  void add(const Fidelity& o);
};

// full, comp: [targets.size()][n_vocab] log-softmax rows (KvzipContext::answer_logprobs).
Fidelity compare_logprobs(const std::vector<float>& full, const std::vector<float>& comp,
                          const std::vector<int32_t>& targets, int n_vocab);

}  // namespace kvz

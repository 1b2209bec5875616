// Importance scores of the context's KV pairs: one float per (layer, KV head, context
// token), higher = more needed. Produced by a press (KVzip, ...), consumed by a policy.
#pragma once

#include <cstdint>
#include <vector>

namespace kvz {

struct HeadScores {
  int n_layer = 0;
  int n_head_kv = 0;
  int64_t n_ctx = 0;     // context tokens scored (system prompt excluded)
  std::vector<float> v;  // [n_layer][n_head_kv][n_ctx]

  void reset(int L, int H, int64_t n, float fill) {
    n_layer = L;
    n_head_kv = H;
    n_ctx = n;
    v.assign(static_cast<size_t>(L) * H * n, fill);
  }
  float* head(int il, int ih) { return v.data() + (static_cast<size_t>(il) * n_head_kv + ih) * n_ctx; }
  const float* head(int il, int ih) const { return v.data() + (static_cast<size_t>(il) * n_head_kv + ih) * n_ctx; }
};

}  // namespace kvz

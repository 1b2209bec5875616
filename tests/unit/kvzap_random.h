// A random linear KVzap surrogate for a model (weights uniform in [-1, 1] from a fixed
// xorshift stream), shared by the tests that need some surrogate file, not a trained one.
#pragma once

#include <cstdint>

#include "kv/kvzap_model.h"
#include "model/model.h"

namespace kvz::test {

inline KvzapModel random_linear_kvzap(const Model& model) {
  const HParams& hp = model.hp();
  KvzapModel m = KvzapModel::zeros(KvzapModel::Kind::Linear, hp.n_layer, hp.n_embd, hp.n_head_kv, 0);
  uint64_t x = 88172645463325252ull;
  for (int il = 0; il < hp.n_layer; ++il)
    for (float& w : m.layer(il).w1) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      w = static_cast<float>(x % 2001) / 1000.0f - 1.0f;
    }
  return m;
}

}  // namespace kvz::test

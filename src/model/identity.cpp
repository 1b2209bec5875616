#include "model/identity.h"

#include <algorithm>

#include "core/hash.h"
#include "model/model.h"

namespace kvz {

uint64_t model_fingerprint(const Model& m) {
  const TensorSource& f = m.file();
  uint64_t h = fnv1a(m.hp().arch.data(), m.hp().arch.size());
  for (const auto& [k, v] : f.metadata()) {
    h = fnv1a(k.data(), k.size(), h);
    const uint64_t n = v.is_array() ? v.array_size() : 0;
    h = fnv1a(&n, sizeof n, h);
  }
  for (const auto& t : f.tensors()) {
    h = fnv1a(t.name.data(), t.name.size(), h);
    h = fnv1a(&t.n_bytes, sizeof t.n_bytes, h);
    h = fnv1a(t.data, std::min<uint64_t>(t.n_bytes, 256), h);  // a sample of the weights themselves
  }
  return h;
}

ModelIdentity model_identity(const Model& m) {
  const HParams& hp = m.hp();
  ModelIdentity id;
  id.fingerprint = model_fingerprint(m);
  id.arch = hp.arch;
  id.name = hp.name;
  id.n_layer = hp.n_layer;
  id.n_head_kv = hp.n_head_kv;
  id.d_head = hp.d_head;
  id.n_vocab = hp.n_vocab;
  id.n_ctx_train = hp.n_ctx_train;
  return id;
}

}  // namespace kvz

// What a saved file needs to know about the model it belongs to: a fingerprint of the
// weights and vocabulary, and the shapes that bound the file's fields. A small value, so
// that io/ knows no model code; model/identity.h computes it from a loaded Model.
#pragma once

#include <cstdint>
#include <string>

namespace kvz {

struct ModelIdentity {
  uint64_t fingerprint = 0;  // FNV-1a-64 over metadata keys, tensor directory and weight samples
  std::string arch;          // general.architecture
  std::string name;          // general.name ("" when absent)
  int n_layer = 0, n_head_kv = 0, d_head = 0;
  int32_t n_vocab = 0;
  int64_t n_ctx_train = 0;
};

}  // namespace kvz

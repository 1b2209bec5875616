// The identity of a loaded model (io/model_identity.h), for the files saved beside it.
#pragma once

#include <cstdint>

#include "io/model_identity.h"

namespace kvz {

class Model;

// Identity of a model's weights and vocabulary (metadata, tensor directory and samples of
// the tensor data), so a context is never loaded into another model.
uint64_t model_fingerprint(const Model& m);
ModelIdentity model_identity(const Model& m);

}  // namespace kvz

// Helpers for architecture loaders: typed, shape-checked tensor lookup.
#pragma once

#include <string>
#include <vector>

#include "io/gguf.h"
#include "kernels/types.h"

namespace kvz {

// A 2-D weight [n_out x n_in] (GGUF shape {n_in, n_out}); throws naming the tensor when
// missing, of the wrong shape, or of a type we cannot multiply.
WeightView weight_2d(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out);
// As above, nullptr-data view when absent.
WeightView weight_2d_opt(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out);
// A 1-D F32 vector of length n (norm weights, biases).
const float* vec_f32(const TensorSource& f, const std::string& name, int64_t n);
const float* vec_f32_opt(const TensorSource& f, const std::string& name, int64_t n);

}  // namespace kvz

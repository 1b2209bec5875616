#include "model/loader_util.h"

#include <cstdint>

#include "core/error.h"

namespace kvz {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

WeightView weight_2d_opt(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out) {
  const GgufTensor* t = f.tensor(name);
  if (!t) return {};
  if (t->shape.size() != 2 || t->shape[0] != n_in || t->shape[1] != n_out)
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", f.path(), name, shape_str(t->shape), n_in, n_out);
  if (!type_info(t->type).supported)
    fail("{}: tensor '{}' has type {}, which kvzip cannot compute with yet", f.path(), name, type_name(t->type));
  return WeightView{t->type, n_in, n_out, t->data};
}

WeightView weight_2d(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out) {
  WeightView w = weight_2d_opt(f, name, n_in, n_out);
  if (!w.data) fail("{}: required tensor '{}' is missing", f.path(), name);
  return w;
}

const float* vec_f32_opt(const TensorSource& f, const std::string& name, int64_t n) {
  const GgufTensor* t = f.tensor(name);
  if (!t) return nullptr;
  if (t->shape.size() != 1 || t->shape[0] != n)
    fail("{}: tensor '{}' has shape {}, expected [{}]", f.path(), name, shape_str(t->shape), n);
  if (t->type != DType::F32) fail("{}: tensor '{}' has type {}, expected f32", f.path(), name, type_name(t->type));
  if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0)
    fail("{}: tensor '{}' is not 4-byte aligned", f.path(), name);
  return reinterpret_cast<const float*>(t->data);
}

const float* vec_f32(const TensorSource& f, const std::string& name, int64_t n) {
  const float* p = vec_f32_opt(f, name, n);
  if (!p) fail("{}: required tensor '{}' is missing", f.path(), name);
  return p;
}

}  // namespace kvz

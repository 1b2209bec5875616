#include "io/tensor_source.h"

#include "core/error.h"

namespace kvz {

namespace {
const char* kTypeNames[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                            "bool", "string", "array", "u64", "i64", "f64"};
}  // namespace

const char* gguf_type_name(GgufType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kTypeNames) ? kTypeNames[i] : "?";
}

size_t GgufValue::array_size() const {
  if (released > 0) return released;
  return std::visit(
      [](const auto& x) -> size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<bool>> || std::is_same_v<T, std::vector<std::string>>)
          return x.size();
        else
          return 0;
      },
      v);
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const GgufValue* TensorSource::find(std::string_view key) const {
  auto it = kv_.find(std::string(key));
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* TensorSource::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string TensorSource::key_origin(std::string_view key) const {
  auto it = key_origin_.find(key);
  if (it != key_origin_.end()) return fmt::format("{} (metadata key '{}')", it->second, key);
  return fmt::format("{}: metadata key '{}'", path_, key);
}

namespace {
[[noreturn]] void type_error(const TensorSource& f, std::string_view key, const GgufValue& v, const char* want) {
  const std::string have = v.is_array() ? fmt::format("array of {}", gguf_type_name(v.elem_type))
                                        : std::string(gguf_type_name(v.type));
  fail("{} has type {}, expected {}", f.key_origin(key), have, want);
}
[[noreturn]] void missing(const TensorSource& f, std::string_view key) {
  fail("{} is required but missing", f.key_origin(key));
}
}  // namespace

std::optional<std::string> TensorSource::get_str_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* s = std::get_if<std::string>(&v->v)) return *s;
  type_error(*this, key, *v, "string");
}

std::string TensorSource::get_str(std::string_view key) const {
  auto s = get_str_opt(key);
  if (!s) missing(*this, key);
  return *s;
}

std::optional<int64_t> TensorSource::get_int_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(&v->v)) return *i;
  type_error(*this, key, *v, "integer");
}

int64_t TensorSource::get_int(std::string_view key) const {
  auto i = get_int_opt(key);
  if (!i) missing(*this, key);
  return *i;
}

std::optional<double> TensorSource::get_float_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* d = std::get_if<double>(&v->v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v->v)) return static_cast<double>(*i);
  type_error(*this, key, *v, "float");
}

double TensorSource::get_float(std::string_view key) const {
  auto d = get_float_opt(key);
  if (!d) missing(*this, key);
  return *d;
}

std::optional<bool> TensorSource::get_bool_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->v)) return *b;
  type_error(*this, key, *v, "bool");
}

std::vector<std::string> TensorSource::get_str_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(*this, key);
  if (v->released) fail("{}: metadata array '{}' was released after loading", path_, key);
  if (const auto* a = std::get_if<std::vector<std::string>>(&v->v)) return *a;
  type_error(*this, key, *v, "array of string");
}

std::vector<int64_t> TensorSource::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(*this, key);
  if (v->released) fail("{}: metadata array '{}' was released after loading", path_, key);
  if (const auto* a = std::get_if<std::vector<int64_t>>(&v->v)) return *a;
  type_error(*this, key, *v, "array of integer");
}

std::vector<double> TensorSource::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(*this, key);
  if (v->released) fail("{}: metadata array '{}' was released after loading", path_, key);
  if (const auto* a = std::get_if<std::vector<double>>(&v->v)) return *a;
  if (const auto* a = std::get_if<std::vector<int64_t>>(&v->v)) return std::vector<double>(a->begin(), a->end());
  type_error(*this, key, *v, "array of float");
}

void TensorSource::release_arrays(size_t min_elements) {
  for (auto& [key, v] : kv_) {
    if (!v.is_array() || v.released || v.array_size() < min_elements) continue;
    const size_t n = v.array_size();
    std::visit([](auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (!std::is_same_v<T, int64_t> && !std::is_same_v<T, double> && !std::is_same_v<T, bool> &&
                    !std::is_same_v<T, std::string>)
        T().swap(x);  // frees the capacity too
    }, v.v);
    v.released = n;
  }
}

}  // namespace kvz

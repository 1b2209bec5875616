// What a model loader reads, whatever the file format: metadata in GGUF's key vocabulary
// (`llama.block_count`, ...) and a tensor directory in GGUF's conventions (GGUF names,
// shape ne[0] first, rows of `type` back to back). GgufFile fills it from a .gguf file;
// HfSource (model/hf_source.h) from a Hugging Face folder through a per-family key and
// tensor-name table. The tensor data stays memory-mapped where the format allows it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/types.h"

namespace kvz {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// A metadata value. Scalars are widened: integers to int64 (u64 values above INT64_MAX
// are rejected), floats to double. Arrays keep their element type.
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem_type = GgufType::U8;  // for ARRAY
  std::variant<int64_t, double, bool, std::string, std::vector<int64_t>, std::vector<double>,
               std::vector<bool>, std::vector<std::string>>
      v;

  bool is_array() const { return type == GgufType::ARRAY; }
  size_t array_size() const;  // also of an array whose values were released
  size_t released = 0;        // > 0: the values of an array of this many were freed (release_arrays)
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // ne[0] is the fastest-varying (row length)
  DType type = DType::F32;
  uint64_t offset = 0;  // from the start of the data section (GGUF); informational otherwise
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping, or into storage the source owns

  int64_t n_elements() const;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  TensorSource(const TensorSource&) = delete;
  TensorSource& operator=(const TensorSource&) = delete;

  const std::string& path() const { return path_; }
  // "gguf" or "hf": loaders need it where the two layouts differ (llama q/k permutation).
  const std::string& format() const { return format_; }
  uint64_t file_size() const { return size_; }  // bytes on disk (all shards for HF)

  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  // Names a metadata key as the user wrote it, for error messages: `model.gguf: metadata
  // key 'llama.rope.freq_base'`, or for a key an HF folder maps from config.json (present
  // or not), `dir/config.json: "rope_theta" (metadata key 'llama.rope.freq_base')`.
  std::string key_origin(std::string_view key) const;
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. The required forms throw "missing key" / "key has type X, expected Y".
  std::string get_str(std::string_view key) const;
  std::optional<std::string> get_str_opt(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  std::optional<int64_t> get_int_opt(std::string_view key) const;
  double get_float(std::string_view key) const;
  std::optional<double> get_float_opt(std::string_view key) const;
  std::optional<bool> get_bool_opt(std::string_view key) const;
  std::vector<std::string> get_str_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(std::string_view name) const;  // nullptr if absent

  // Frees the values of every metadata array of at least `min_elements` (a GGUF's
  // vocabulary and merges, once the tokenizer holds its own copy), keeping their types and
  // sizes (metadata() still lists them, the model fingerprint is unchanged). The typed
  // array getters then fail naming the key.
  void release_arrays(size_t min_elements);

  // Says the engine will not read [p, p + n) again (it holds a copy in another layout). A
  // memory-mapped source drops those file pages from the process (they would be read
  // back from the file if touched); anything else ignores the hint.
  virtual void release(const uint8_t* p, size_t n) const {
    (void)p;
    (void)n;
  }

 protected:
  TensorSource() = default;

  std::string path_;
  std::string format_;
  uint64_t size_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  std::map<std::string, std::string, std::less<>> key_origin_;  // key -> where it was read (HF)
};

}  // namespace kvz

// safetensors reader (huggingface/safetensors format: u64 little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}},
// then the data section). The file is memory-mapped and tensors are used in place.
// Every field is checked before use: header length against the file, dtype against the
// known names, shape products against overflow, byte size = product(shape) x dtype size,
// offsets inside the data section and no two tensors overlapping. A hostile file is a
// kvz::Error "<path>: <tensor>: <problem>", never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"
#include "kernels/types.h"

namespace kvz {

struct SafeTensor {
  std::string name;
  std::string dtype;            // as written: "F32", "BF16", "I64", ...
  std::optional<DType> type;    // set for the float types we compute with (F32, F16, BF16)
  std::vector<int64_t> shape;   // row-major, outermost first (HF order: [n_out, n_in])
  uint64_t offset = 0;          // from the start of the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  // Largest JSON header we accept (the reference implementation's limit is 100 MB).
  static constexpr uint64_t kMaxHeader = 100ull << 20;

  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). The bytes must outlive the object.
  static std::unique_ptr<SafetensorsFile> from_memory(const uint8_t* data, size_t size, std::string name);
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeTensor* tensor(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return meta_; }

 private:
  SafetensorsFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  MappedFile map_;  // empty for from_memory
  std::vector<SafeTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> meta_;
};

// Bytes per element of a safetensors dtype name, 0 if the name is unknown.
size_t safetensors_dtype_size(std::string_view dtype);

}  // namespace kvz

namespace kvz {

// Builds a safetensors image (tests, converted fixtures): tensors are laid out in the
// order given, header padded with spaces to a multiple of 8 bytes.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;            // "F32", "BF16", ...
  std::vector<int64_t> shape;   // outermost first
  std::vector<uint8_t> bytes;
};
std::vector<uint8_t> safetensors_bytes(const std::vector<SafetensorsEntry>& entries,
                                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kvz

// GGUF v2/v3 reader. The file is memory-mapped; metadata and the tensor directory are
// parsed eagerly with every count, length and offset checked against the file size, so
// a truncated or hostile file is a kvz::Error naming the problem, never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_source.h"

namespace kvz {

class GgufFile final : public TensorSource {
 public:
  // Maps and parses `path`. Throws kvz::Error: "<path>: <what> at offset 0x..: <why>".
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). The bytes must outlive the object.
  static std::unique_ptr<GgufFile> from_memory(const uint8_t* data, size_t size, std::string name);

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  void release(const uint8_t* p, size_t n) const override;

 private:
  GgufFile() = default;
  void parse();

  const uint8_t* base_ = nullptr;
  MappedFile map_;  // empty for from_memory
  uint32_t version_ = 0;
  size_t alignment_ = 32;
};

}  // namespace kvz

// A whole file mapped read-only (MAP_PRIVATE): the GGUF and safetensors readers and the
// context loader read through one. Unmapped on destruction; movable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvz {

class MappedFile {
 public:
  // Throws kvz::Error naming the path: cannot open, cannot stat, not a regular file, mmap
  // failed. An empty file maps nothing (data() null, size() 0): callers name it too short.
  static MappedFile open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return static_cast<const uint8_t*>(p_); }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace kvz

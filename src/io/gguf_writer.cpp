#include "io/gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace kvz {

namespace {
template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  const size_t o = b.size();
  b.resize(o + sizeof(T));
  std::memcpy(b.data() + o, &v, sizeof(T));
}
void put_str(std::vector<uint8_t>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}
}  // namespace

#define KVZ_SCALAR_SETTER(fn, T, tag)                        \
  void GgufWriter::fn(const std::string& key, T v) {         \
    std::vector<uint8_t> b;                                  \
    put<uint32_t>(b, static_cast<uint32_t>(GgufType::tag));  \
    put<T>(b, v);                                            \
    kv_.emplace_back(key, std::move(b));                     \
  }
KVZ_SCALAR_SETTER(set_u32, uint32_t, U32)
KVZ_SCALAR_SETTER(set_i32, int32_t, I32)
KVZ_SCALAR_SETTER(set_u64, uint64_t, U64)
KVZ_SCALAR_SETTER(set_f32, float, F32)
#undef KVZ_SCALAR_SETTER

void GgufWriter::set_bool(const std::string& key, bool v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::BOOL));
  put<uint8_t>(b, v ? 1 : 0);
  kv_.emplace_back(key, std::move(b));
}

void GgufWriter::set_str(const std::string& key, const std::string& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::STRING));
  put_str(b, v);
  kv_.emplace_back(key, std::move(b));
}

void GgufWriter::set_str_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::ARRAY));
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::STRING));
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_str(b, s);
  kv_.emplace_back(key, std::move(b));
}

void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::ARRAY));
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::I32));
  put<uint64_t>(b, v.size());
  for (int32_t x : v) put<int32_t>(b, x);
  kv_.emplace_back(key, std::move(b));
}

void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> b;
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::ARRAY));
  put<uint32_t>(b, static_cast<uint32_t>(GgufType::F32));
  put<uint64_t>(b, v.size());
  for (float x : v) put<float>(b, x);
  kv_.emplace_back(key, std::move(b));
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape, const void* data,
                            size_t n_bytes) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const TypeInfo& ti = type_info(type);
  KVZ_ASSERT(shape[0] % ti.block_size == 0, "tensor {}: row {} not a multiple of block {}", name, shape[0], ti.block_size);
  const size_t want = static_cast<size_t>(n / ti.block_size) * ti.type_size;
  KVZ_ASSERT(want == n_bytes, "tensor {}: {} bytes given, {} expected", name, n_bytes, want);
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, shape, std::vector<uint8_t>(p, p + n_bytes)});
}

std::vector<uint8_t> GgufWriter::to_bytes(size_t alignment) const {
  std::vector<uint8_t> b;
  put<uint32_t>(b, 0x46554747);
  put<uint32_t>(b, 3);
  put<uint64_t>(b, tensors_.size());
  put<uint64_t>(b, kv_.size() + (alignment != 32 ? 1 : 0));
  for (const auto& [k, v] : kv_) {
    put_str(b, k);
    b.insert(b.end(), v.begin(), v.end());
  }
  if (alignment != 32) {
    put_str(b, "general.alignment");
    put<uint32_t>(b, static_cast<uint32_t>(GgufType::U32));
    put<uint32_t>(b, static_cast<uint32_t>(alignment));
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_str(b, t.name);
    put<uint32_t>(b, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(b, static_cast<uint64_t>(d));
    put<uint32_t>(b, static_cast<uint32_t>(t.type));
    put<uint64_t>(b, off);
    off += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
  for (const auto& t : tensors_) {
    b.insert(b.end(), t.data.begin(), t.data.end());
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
  }
  return b;
}

void GgufWriter::write(const std::string& path, size_t alignment) const {
  const std::vector<uint8_t> b = to_bytes(alignment);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("{}: cannot open for writing", path);
  const size_t w = std::fwrite(b.data(), 1, b.size(), f);
  const int rc = std::fclose(f);
  if (w != b.size() || rc != 0) fail("{}: write failed ({} of {} bytes)", path, w, b.size());
}

}  // namespace kvz

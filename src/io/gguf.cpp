#include "io/gguf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace kvz {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
// Caps that no real model comes near; they turn a hostile count into a clear error
// before any allocation is attempted.
constexpr uint64_t kMaxStringLen = 1ull << 30;
constexpr uint64_t kMaxDims = 4;
constexpr uint64_t kMaxArrayLen = 1ull << 28;

// Sequential reader over [data, data+size) that checks every read.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& name) : d_(data), n_(size), name_(name) {}

  uint64_t pos() const { return p_; }

  [[noreturn]] void error(const std::string& what) const {
    fail("{}: {} at offset 0x{:x} (file is {} bytes; truncated or not a GGUF file?)", name_, what, p_, n_);
  }

  void need(uint64_t bytes, const char* what) const {
    if (bytes > n_ - p_) error(fmt::format("{} needs {} bytes but only {} remain", what, bytes, n_ - p_));
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, d_ + p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > kMaxStringLen) error(fmt::format("{}: string length {} is implausible", what, len));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(d_ + p_), len);
    p_ += len;
    return s;
  }

 private:
  const uint8_t* d_;
  uint64_t n_;
  uint64_t p_ = 0;
  const std::string& name_;
};

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool is_int(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

int64_t read_int(Cursor& c, GgufType t, const char* what) {
  switch (t) {
    case GgufType::U8: return c.read<uint8_t>(what);
    case GgufType::I8: return c.read<int8_t>(what);
    case GgufType::U16: return c.read<uint16_t>(what);
    case GgufType::I16: return c.read<int16_t>(what);
    case GgufType::U32: return c.read<uint32_t>(what);
    case GgufType::I32: return c.read<int32_t>(what);
    case GgufType::I64: return c.read<int64_t>(what);
    case GgufType::U64: {
      const uint64_t v = c.read<uint64_t>(what);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.error(fmt::format("{}: u64 value {} does not fit in int64", what, v));
      return static_cast<int64_t>(v);
    }
    default: c.error("internal: not an integer type");
  }
}

double read_float(Cursor& c, GgufType t, const char* what) {
  if (t == GgufType::F32) return c.read<float>(what);
  return c.read<double>(what);
}

bool read_bool(Cursor& c, const char* what) {
  const uint8_t b = c.read<uint8_t>(what);
  if (b > 1) c.error(fmt::format("{}: bool value {} is neither 0 nor 1", what, b));
  return b != 0;
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& key) {
  const char* what = key.c_str();
  GgufValue v;
  v.type = type;
  if (is_int(type)) {
    v.v = read_int(c, type, what);
  } else if (type == GgufType::F32 || type == GgufType::F64) {
    v.v = read_float(c, type, what);
  } else if (type == GgufType::BOOL) {
    v.v = read_bool(c, what);
  } else if (type == GgufType::STRING) {
    v.v = c.read_string(what);
  } else if (type == GgufType::ARRAY) {
    const uint32_t et = c.read<uint32_t>(what);
    if (!valid_type(et)) c.error(fmt::format("key '{}': array element type {} is unknown", key, et));
    const GgufType elem = static_cast<GgufType>(et);
    if (elem == GgufType::ARRAY) c.error(fmt::format("key '{}': nested arrays are not supported", key));
    v.elem_type = elem;
    const uint64_t n = c.read<uint64_t>(what);
    if (n > kMaxArrayLen) c.error(fmt::format("key '{}': array length {} is implausible", key, n));
    // Every element takes at least its scalar size (strings: 8 bytes of length), so a
    // count larger than the remaining bytes allow is caught before allocating.
    const size_t min_elem = elem == GgufType::STRING ? 8 : scalar_size(elem);
    c.need(n * min_elem, what);
    if (is_int(elem)) {
      std::vector<int64_t> a(n);
      for (auto& x : a) x = read_int(c, elem, what);
      v.v = std::move(a);
    } else if (elem == GgufType::F32 || elem == GgufType::F64) {
      std::vector<double> a(n);
      for (auto& x : a) x = read_float(c, elem, what);
      v.v = std::move(a);
    } else if (elem == GgufType::BOOL) {
      std::vector<bool> a(n);
      for (uint64_t i = 0; i < n; ++i) a[i] = read_bool(c, what);
      v.v = std::move(a);
    } else {
      std::vector<std::string> a(n);
      for (auto& x : a) x = c.read_string(what);
      v.v = std::move(a);
    }
  }
  return v;
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  MappedFile m = MappedFile::open(path);
  if (m.size() < 24) fail("{}: file is {} bytes, too small for a GGUF header (24 bytes)", path, m.size());
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->format_ = "gguf";
  f->base_ = m.data();
  f->size_ = m.size();
  f->map_ = std::move(m);
  f->parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = std::move(name);
  f->format_ = "gguf";
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

void GgufFile::release(const uint8_t* p, size_t n) const {
  if (!map_.data()) return;
  const auto lo = reinterpret_cast<uintptr_t>(map_.data()), hi = lo + size_;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // Whole pages inside [p, p + n) only: a neighbouring tensor's bytes stay mapped.
  const uintptr_t b = (std::max(reinterpret_cast<uintptr_t>(p), lo) + page - 1) / page * page;
  const uintptr_t e = std::min(reinterpret_cast<uintptr_t>(p) + n, hi) / page * page;
  if (b < e) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void GgufFile::parse() {
  Cursor c(base_, size_, path_);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("{}: bad magic 0x{:08x}, expected 'GGUF' (0x{:08x}): not a GGUF file", path_, magic, kMagic);
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    fail("{}: GGUF version {} is not supported (expected 2 or 3)", path_, version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each KV takes >= 8 (key len) + 4 (type) + 1 bytes; each tensor info >= 8+4+4+8 bytes.
  if (n_kv > size_ / 13) c.error(fmt::format("metadata count {} is larger than the file could hold", n_kv));
  if (n_tensors > size_ / 24) c.error(fmt::format("tensor count {} is larger than the file could hold", n_tensors));

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const uint32_t t = c.read<uint32_t>("metadata type");
    if (!valid_type(t)) c.error(fmt::format("key '{}': value type {} is unknown", key, t));
    GgufValue v = read_value(c, static_cast<GgufType>(t), key);
    if (kv_.count(key)) c.error(fmt::format("duplicate metadata key '{}'", key));
    kv_.emplace(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const int64_t* al = std::get_if<int64_t>(&a->v);
    if (!al || *al <= 0 || *al > (1 << 20) || (*al & (*al - 1)) != 0)
      fail("{}: general.alignment must be a power of two integer <= 1 MiB", path_);
    alignment_ = static_cast<size_t>(*al);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.read_string("tensor name");
    const uint32_t n_dims = c.read<uint32_t>("tensor dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.error(fmt::format("tensor '{}': {} dimensions (expected 1..{})", t.name, n_dims, kMaxDims));
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor shape");
      if (ne == 0 || ne > (1ull << 40) || n_el > (1ull << 42) / ne)
        c.error(fmt::format("tensor '{}': dimension {} = {} is invalid or overflows", t.name, d, ne));
      n_el *= ne;
      t.shape.push_back(static_cast<int64_t>(ne));
    }
    const uint32_t raw_type = c.read<uint32_t>("tensor type");
    const TypeInfo* ti = type_info(raw_type);
    if (!ti) c.error(fmt::format("tensor '{}': type id {} is unknown", t.name, raw_type));
    t.type = static_cast<DType>(raw_type);
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.shape[0] % ti->block_size != 0)
      c.error(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}", t.name,
                          t.shape[0], ti->name, ti->block_size));
    t.n_bytes = n_el / ti->block_size * ti->type_size;
    if (tensor_index_.count(t.name)) c.error(fmt::format("duplicate tensor name '{}'", t.name));
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > size_) fail("{}: data section would start at 0x{:x}, past the end of the file ({} bytes)",
                               path_, data_start, size_);
  const uint64_t data_size = size_ - data_start;
  for (auto& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail("{}: tensor '{}' offset 0x{:x} is not aligned to {}", path_, t.name, t.offset, alignment_);
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      fail("{}: tensor '{}' at data offset 0x{:x} with {} bytes extends {} bytes past the end of the file "
           "(truncated download?)",
           path_, t.name, t.offset, t.n_bytes, t.offset + t.n_bytes - std::min(data_size, t.offset + t.n_bytes));
    t.data = base_ + data_start + t.offset;
  }
  // Overlapping tensors are a sign of a crafted file; refuse rather than alias weights.
  std::vector<const GgufTensor*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor* a = by_offset[i - 1];
    const GgufTensor* b = by_offset[i];
    if (a->offset + a->n_bytes > b->offset)
      fail("{}: tensors '{}' and '{}' overlap in the data section (0x{:x}+{} > 0x{:x})", path_, a->name, b->name,
           a->offset, a->n_bytes, b->offset);
  }
}

}  // namespace kvz

#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_file.h"

namespace kvz {

namespace {

struct DtypeInfo {
  const char* name;
  size_t size;
  std::optional<DType> type;
};
// The dtype names of safetensors' Dtype enum (safetensors/src/tensor.rs). Sub-byte types
// (F4, F6_*) are left out: their sizes are not whole bytes per element.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1, std::nullopt}, {"U8", 1, std::nullopt},      {"I8", 1, std::nullopt},
    {"F8_E5M2", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E8M0", 1, std::nullopt},
    {"I16", 2, std::nullopt},  {"U16", 2, std::nullopt},     {"F16", 2, DType::F16},
    {"BF16", 2, DType::BF16},  {"I32", 4, std::nullopt},     {"U32", 4, std::nullopt},
    {"F32", 4, DType::F32},    {"F64", 8, std::nullopt},     {"I64", 8, std::nullopt},
    {"U64", 8, std::nullopt},
};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

size_t safetensors_dtype_size(std::string_view dtype) {
  const DtypeInfo* d = find_dtype(dtype);
  return d ? d->size : 0;
}

int64_t SafeTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  MappedFile m = MappedFile::open(path);
  if (m.size() < 8)
    fail("{}: file is {} bytes, too small for a safetensors header length (8 bytes)", path, m.size());
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->base_ = m.data();
  f->size_ = m.size();
  f->map_ = std::move(m);
  f->parse();
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(name);
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

const SafeTensor* SafetensorsFile::tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::parse() {
  const std::string& p = path_;
  if (size_ < 8) fail("{}: file is {} bytes, too small for a safetensors header length (8 bytes)", p, size_);
  uint64_t n_header = 0;
  for (int i = 7; i >= 0; --i) n_header = (n_header << 8) | base_[i];  // little-endian u64
  if (n_header > size_ - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes; truncated download, or not a "
         "safetensors file?)",
         p, n_header, size_);
  if (n_header > kMaxHeader) fail("{}: header length {} exceeds the {}-byte limit", p, n_header, kMaxHeader);
  if (n_header < 2) fail("{}: header length {} is too small for a JSON object", p, n_header);
  const char* hb = reinterpret_cast<const char*>(base_ + 8);
  const JsonReader h = JsonReader::parse(std::string_view(hb, n_header), p);
  if (!h.is_object()) fail("{}: header is JSON but not an object", p);

  const uint64_t data_start = 8 + n_header, data_size = size_ - data_start;
  auto non_negative = [](const JsonReader& v) { return v.is_int() && v.integer() >= 0; };
  for (const auto& [name, e] : h.members()) {
    if (name == "__metadata__") {
      if (!e.is_object()) fail("{}: __metadata__ is not an object", p);
      for (const auto& [k, v] : e.members()) {
        if (!v.is_string()) fail("{}: __metadata__ value '{}' is not a string", p, k);
        meta_[k] = v.str();
      }
      continue;
    }
    if (!e.is_object()) fail("{}: tensor '{}': entry is not an object", p, name);
    SafeTensor t;
    t.name = name;
    t.dtype = e.get_str("dtype");
    const DtypeInfo* info = find_dtype(t.dtype);
    if (!info) fail("{}: tensor '{}': unknown dtype '{}'", p, name, t.dtype);
    t.type = info->type;

    const JsonReader sh = e.at("shape").array();
    if (sh.size() > 8) fail("{}: tensor '{}': {} dimensions (at most 8 supported)", p, name, sh.size());
    // Element count with overflow checks: every dim must be a non-negative integer and the
    // running product times the element size must stay within the data section.
    uint64_t n_el = 1;
    bool too_big = false;
    for (const JsonReader& d : sh.elements()) {
      if (!non_negative(d))
        fail("{}: tensor '{}': shape entry {} is not a non-negative integer", p, name, d.raw().dump());
      const auto v = static_cast<uint64_t>(d.integer());
      t.shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && n_el > std::numeric_limits<uint64_t>::max() / v) too_big = true;
      else n_el *= v;
    }
    if (too_big || n_el > std::numeric_limits<uint64_t>::max() / info->size || n_el * info->size > data_size)
      fail("{}: tensor '{}': shape {} of {} is larger than the {}-byte data section", p, name, sh.raw().dump(),
           t.dtype, data_size);
    // A zero dimension makes the count 0 whatever the other dims are (still all checked above).
    for (int64_t d : t.shape)
      if (d == 0) n_el = 0;

    const auto off = e.find("data_offsets");
    if (!off || !off->is_array() || off->size() != 2 || !non_negative((*off)[0]) || !non_negative((*off)[1]))
      fail("{}: tensor '{}': data_offsets must be [begin, end] with non-negative integers", p, name);
    const auto b = static_cast<uint64_t>((*off)[0].integer()), en = static_cast<uint64_t>((*off)[1].integer());
    if (b > en) fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", p, name, b, en);
    if (en > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] extend {} bytes past the end of the file (truncated download?)", p,
           name, b, en, en - data_size);
    if (en - b != n_el * info->size)
      fail("{}: tensor '{}': data_offsets cover {} bytes but shape {} of {} needs {}", p, name, en - b,
           sh.raw().dump(), t.dtype, n_el * info->size);
    t.offset = b;
    t.n_bytes = en - b;
    t.data = base_ + data_start + b;
    // Typed reads need aligned data (the reference writer pads the header to 8 bytes, so real
    // files are aligned); a misaligned tensor would be undefined behaviour in every reader.
    if (t.n_bytes > 0 && reinterpret_cast<uintptr_t>(t.data) % info->size != 0)
      fail("{}: tensor '{}': its data at byte {} of the file is not aligned to its {}-byte {} elements", p, name,
           data_start + b, info->size, t.dtype);
    tensors_.push_back(std::move(t));
  }

  // No two tensors may share bytes (empty tensors occupy nothing).
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  const SafeTensor* prev = nullptr;
  for (size_t i : order) {
    const SafeTensor& t = tensors_[i];
    if (t.n_bytes == 0) continue;
    if (prev && t.offset < prev->offset + prev->n_bytes)
      fail("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", p, prev->name, prev->offset,
           prev->offset + prev->n_bytes, t.name, t.offset, t.offset + t.n_bytes);
    prev = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

}  // namespace kvz

namespace kvz {

std::vector<uint8_t> safetensors_bytes(const std::vector<SafetensorsEntry>& entries,
                                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& e : entries) {
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string js = h.dump();
  while ((8 + js.size()) % 8) js.push_back(' ');
  std::vector<uint8_t> out;
  out.reserve(8 + js.size() + off);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(js.size()) >> (8 * i)));
  out.insert(out.end(), js.begin(), js.end());
  for (const auto& e : entries) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
  return out;
}

}  // namespace kvz

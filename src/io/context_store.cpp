#include "io/context_store.h"

#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/hash.h"
#include "model/model.h"

namespace kvz {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'Z', 'C', 'T', 'X', '1', '\0'};
// 1: f16 rows only; 2: a u8 KvType after the cache shape. Version-1 files still load.
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 8 + 4 + 8 + 8 + 8 + 8;

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    raw(&v, sizeof(T));
  }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    raw(v.data(), v.size() * sizeof(T));
  }
  std::vector<uint8_t> buf;
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& b, const std::string& path) : b_(b), path_(path) {}
  template <typename T>
  T get() {
    T v;
    raw(&v, sizeof(T));
    return v;
  }
  void raw(void* p, size_t n) {
    if (n > b_.size() - off_) fail("{}: context payload ends early at byte {} (corrupt file)", path_, off_);
    std::memcpy(p, b_.data() + off_, n);
    off_ += n;
  }
  template <typename T>
  std::vector<T> vec(uint64_t max_n) {
    const uint64_t n = get<uint64_t>();
    if (n > max_n || n * sizeof(T) > b_.size() - off_) fail("{}: array of {} elements is implausible (corrupt file)", path_, n);
    std::vector<T> v(n);
    raw(v.data(), n * sizeof(T));
    return v;
  }
  bool done() const { return off_ == b_.size(); }
  size_t remaining() const { return b_.size() - off_; }

 private:
  const std::vector<uint8_t>& b_;
  const std::string& path_;
  size_t off_ = 0;
};

}  // namespace

uint64_t model_fingerprint(const Model& m) {
  const TensorSource& f = m.file();
  uint64_t h = fnv1a(m.hp().arch.data(), m.hp().arch.size());
  for (const auto& [k, v] : f.metadata()) {
    h = fnv1a(k.data(), k.size(), h);
    const uint64_t n = v.is_array() ? v.array_size() : 0;
    h = fnv1a(&n, sizeof n, h);
  }
  for (const auto& t : f.tensors()) {
    h = fnv1a(t.name.data(), t.name.size(), h);
    h = fnv1a(&t.n_bytes, sizeof t.n_bytes, h);
    h = fnv1a(t.data, std::min<uint64_t>(t.n_bytes, 256), h);  // a sample of the weights themselves
  }
  return h;
}

void save_context(const std::string& path, const Model& m, const StoredContext& meta, const KvCache& cache,
                  int zstd_level) {
  Writer w;
  w.put<int64_t>(meta.n_sys);
  w.put<int64_t>(meta.n_pos);
  w.put<uint8_t>(meta.pruned ? 1 : 0);
  w.vec(meta.sys_ids);
  w.vec(meta.ctx_ids);
  w.put<int32_t>(meta.scores.n_layer);
  w.put<int32_t>(meta.scores.n_head_kv);
  w.put<int64_t>(meta.scores.n_ctx);
  w.vec(meta.scores.v);
  w.put<int32_t>(cache.n_layer());
  w.put<int32_t>(cache.n_head_kv());
  w.put<int32_t>(cache.d_head());
  w.put<uint8_t>(static_cast<uint8_t>(cache.type()));
  const size_t rb = cache.row_bytes();
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
      const HeadSegment& s = cache.seg(il, ih);
      w.put<int64_t>(s.len);
      w.raw(s.pos.get(), s.len * sizeof(int32_t));
      w.raw(s.k.get(), s.len * rb);
      w.raw(s.v.get(), s.len * rb);
    }
  std::vector<uint8_t> z(ZSTD_compressBound(w.buf.size()));
  const size_t zn = ZSTD_compress(z.data(), z.size(), w.buf.data(), w.buf.size(), zstd_level);
  if (ZSTD_isError(zn)) fail("{}: zstd compression failed: {}", path, ZSTD_getErrorName(zn));
  Writer h;
  h.raw(kMagic, 8);
  h.put<uint32_t>(kVersion);
  h.put<uint64_t>(model_fingerprint(m));
  h.put<uint64_t>(w.buf.size());
  h.put<uint64_t>(zn);
  h.put<uint64_t>(fnv1a(w.buf.data(), w.buf.size()));
  // Write to a temporary name and rename, so an interrupted save never leaves a torn file
  // under the final name.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("{}: cannot open for writing", tmp);
  const bool ok = std::fwrite(h.buf.data(), 1, h.buf.size(), f) == h.buf.size() && std::fwrite(z.data(), 1, zn, f) == zn;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    fail("{}: write failed (disk full?)", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("{}: cannot rename the finished file into place", path);
  }
}

KvCache load_context(const std::string& path, const Model& m, StoredContext& meta) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  uint8_t hdr[kHeaderBytes];
  if (std::fread(hdr, 1, kHeaderBytes, f) != kHeaderBytes) fail("{}: too short for a kvzip context file", path);
  if (std::memcmp(hdr, kMagic, 8) != 0) fail("{}: not a kvzip context file (bad magic)", path);
  uint32_t version;
  uint64_t fp, n_raw, n_z, sum;
  std::memcpy(&version, hdr + 8, 4);
  std::memcpy(&fp, hdr + 12, 8);
  std::memcpy(&n_raw, hdr + 20, 8);
  std::memcpy(&n_z, hdr + 28, 8);
  std::memcpy(&sum, hdr + 36, 8);
  if (version != kVersion && version != 1) fail("{}: context file version {} is not supported (this build reads {})", path, version, kVersion);
  if (fp != model_fingerprint(m))
    fail("{}: this context was saved with a different model (fingerprint {:016x}, loaded model {:016x})", path, fp,
         model_fingerprint(m));
  const HParams& hp = m.hp();
  // The largest payload a valid file can have for this model: every head full to the
  // model's context length, plus ids and scores.
  const uint64_t max_rows = static_cast<uint64_t>(hp.n_ctx_train) * 4;
  const uint64_t max_raw = max_rows * hp.n_layer * hp.n_head_kv * (4 + 4ull * hp.d_head) + max_rows * 8 * (2 + hp.n_layer * hp.n_head_kv) + 4096;
  if (n_raw > max_raw || n_z > ZSTD_compressBound(n_raw)) fail("{}: header sizes are implausible (corrupt file)", path);
  std::vector<uint8_t> z(n_z);
  if (std::fread(z.data(), 1, n_z, f) != n_z) fail("{}: file is truncated ({} compressed bytes expected)", path, n_z);
  std::vector<uint8_t> raw(n_raw);
  const size_t got = ZSTD_decompress(raw.data(), raw.size(), z.data(), z.size());
  if (ZSTD_isError(got) || got != n_raw) fail("{}: payload does not decompress (corrupt file)", path);
  if (fnv1a(raw.data(), raw.size()) != sum) fail("{}: checksum mismatch (corrupt file)", path);

  Reader r(raw, path);
  StoredContext out;
  out.n_sys = r.get<int64_t>();
  out.n_pos = r.get<int64_t>();
  out.pruned = r.get<uint8_t>() != 0;
  out.sys_ids = r.vec<int32_t>(max_rows);
  out.ctx_ids = r.vec<int32_t>(max_rows);
  out.scores.n_layer = r.get<int32_t>();
  out.scores.n_head_kv = r.get<int32_t>();
  out.scores.n_ctx = r.get<int64_t>();
  out.scores.v = r.vec<float>(max_rows * hp.n_layer * hp.n_head_kv);
  if (!out.scores.v.empty() && out.scores.v.size() != static_cast<size_t>(out.scores.n_layer) * out.scores.n_head_kv * out.scores.n_ctx)
    fail("{}: score tensor shape does not match its size (corrupt file)", path);
  const int L = r.get<int32_t>(), H = r.get<int32_t>(), D = r.get<int32_t>();
  if (L != hp.n_layer || H != hp.n_head_kv || D != hp.d_head)
    fail("{}: cache shape {}x{}x{} does not match the model's {}x{}x{}", path, L, H, D, hp.n_layer, hp.n_head_kv, hp.d_head);
  const uint8_t type_id = version >= 2 ? r.get<uint8_t>() : 0;
  if (type_id > static_cast<uint8_t>(KvType::Q8_0)) fail("{}: unknown KV cache type {} (corrupt file)", path, type_id);
  const KvType kv_type = static_cast<KvType>(type_id);
  if (kv_type == KvType::Q8_0 && D % 32 != 0) fail("{}: q8_0 rows with head size {} (corrupt file)", path, D);
  const size_t rb = kv_row_bytes(kv_type, D);
  if (out.n_sys < 0 || out.n_sys != static_cast<int64_t>(out.sys_ids.size()) || out.n_pos < out.n_sys ||
      out.n_pos > static_cast<int64_t>(max_rows))
    fail("{}: inconsistent context header (corrupt file)", path);
  KvCache cache(L, H, D, kv_type);
  std::vector<int32_t> pos;
  std::vector<uint8_t> k, v;
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih) {
      const int64_t len = r.get<int64_t>();
      if (len < 0 || len > out.n_pos || static_cast<uint64_t>(len) * (4 + 2 * rb) > r.remaining()) fail("{}: head ({}, {}) has {} rows for {} positions (corrupt file)", path, il, ih, len, out.n_pos);
      pos.resize(len);
      k.resize(len * rb);
      v.resize(len * rb);
      r.raw(pos.data(), len * 4);
      r.raw(k.data(), len * rb);
      r.raw(v.data(), len * rb);
      for (int64_t i = 0; i < len; ++i)
        if (pos[i] < 0 || pos[i] >= out.n_pos || (i > 0 && pos[i] <= pos[i - 1]))
          fail("{}: head ({}, {}) positions are not increasing within [0, {}) (corrupt file)", path, il, ih, out.n_pos);
      HeadSegment& dst = cache.seg(il, ih);
      const int64_t cap = std::max<int64_t>(len + 64, 1);
      dst.k.reset(new uint8_t[cap * rb]);
      dst.v.reset(new uint8_t[cap * rb]);
      dst.pos.reset(new int32_t[cap]);
      std::memcpy(dst.k.get(), k.data(), len * rb);
      std::memcpy(dst.v.get(), v.data(), len * rb);
      std::memcpy(dst.pos.get(), pos.data(), len * 4);
      dst.len = len;
      dst.cap = cap;
    }
  if (!r.done()) fail("{}: trailing bytes after the cache (corrupt file)", path);
  meta = std::move(out);
  return cache;
}

}  // namespace kvz

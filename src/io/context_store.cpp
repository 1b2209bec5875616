#include "io/context_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/hash.h"
#include "io/mapped_file.h"

namespace kvz {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'Z', 'C', 'T', 'X', '1', '\0'};
// 1: f16 rows only; 2: a u8 KvType after the cache shape; 3: an info block, and the
// checksum covers the whole file; 4: the checksum is XXH3-64 (FNV-1a before, one byte at a
// time: 29 ms of a 29 MB file's 85 ms load), and a payload zstd cannot shrink by 12.5 % is
// stored as it is (compressed bytes == payload bytes), read in place with no second copy
// (f16 K/V rows gain about 3 %: reading them in place saves more than the bytes cost). Versions 1 to 3 still load.
constexpr uint32_t kVersion = 4;
constexpr size_t kHeaderBytes = 8 + 4 + 8 + 8 + 8 + 8;
constexpr uint64_t kMaxInfoBytes = 1 << 20;

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
  Reader(const uint8_t* b, size_t n, const std::string& what) : b_(b), n_(n), what_(what) {}
  template <typename T>
  T get() {
    T v;
    raw(&v, sizeof(T));
    return v;
  }
  void raw(void* p, size_t n) {
    if (n > n_ - off_) fail("{}: context payload ends early at byte {} (corrupt file)", what_, off_);
    if (n == 0) return;  // p may be an empty vector's null data(): memcpy must not see it
    std::memcpy(p, b_ + off_, n);
    off_ += n;
  }
  template <typename T>
  std::vector<T> vec(uint64_t max_n, const char* field) {
    const uint64_t n = get<uint64_t>();
    if (n > max_n || n * sizeof(T) > n_ - off_)
      fail("{}: {} has {} elements, implausible for this model (corrupt file)", what_, field, n);
    std::vector<T> v(n);
    raw(v.data(), n * sizeof(T));
    return v;
  }
  void skip(size_t n) {
    if (n > n_ - off_) fail("{}: context payload ends early at byte {} (corrupt file)", what_, off_);
    off_ += n;
  }
  bool done() const { return off_ == n_; }
  size_t remaining() const { return n_ - off_; }

 private:
  const uint8_t* b_;
  size_t n_;
  const std::string& what_;
  size_t off_ = 0;
};

// A K or V row holds a NaN or infinity: f16 values with an all-ones exponent, or a q8_0
// block whose f16 scale is one.
bool rows_finite(KvType t, const uint8_t* rows, int64_t n_rows, size_t row_bytes) {
  const size_t n = static_cast<size_t>(n_rows) * row_bytes;
  if (t == KvType::F16) {  // every value; no early exit, so the loop vectorises
    unsigned bad = 0;
    for (size_t off = 0; off + 2 <= n; off += 2) {
      uint16_t h;
      std::memcpy(&h, rows + off, 2);
      bad |= (h & 0x7c00) == 0x7c00;
    }
    return bad == 0;
  }
  for (size_t off = 0; off < n; off += 34) {  // q8_0: the f16 scale of each block
    uint16_t h;
    std::memcpy(&h, rows + off, 2);
    if ((h & 0x7c00) == 0x7c00) return false;
  }
  return true;
}

uint64_t file_checksum(uint32_t version, const uint8_t* d, size_t n) {
  return version >= 4 ? XXH3_64bits(d, n) : fnv1a(d, n);
}

struct Header {
  uint32_t version;
  uint64_t fp, info_n, n_raw, n_z, sum;
};

Header read_header(const uint8_t* d, size_t n, const std::string& what) {
  if (n < kHeaderBytes) fail("{}: {} bytes is too short for a kvzip context file", what, n);
  if (std::memcmp(d, kMagic, 8) != 0) fail("{}: not a kvzip context file (bad magic)", what);
  Header h{};
  std::memcpy(&h.version, d + 8, 4);
  std::memcpy(&h.fp, d + 12, 8);
  if (h.version < 1 || h.version > kVersion)
    fail("{}: context file version {} is not supported (this build reads 1 to {})", what, h.version, kVersion);
  if (h.version >= 3) {
    std::memcpy(&h.info_n, d + 20, 8);
    std::memcpy(&h.n_raw, d + 28, 8);
    std::memcpy(&h.n_z, d + 36, 8);
    if (h.info_n > kMaxInfoBytes) fail("{}: info block of {} bytes is implausible (corrupt file)", what, h.info_n);
  } else {
    h.info_n = 0;
    std::memcpy(&h.n_raw, d + 20, 8);
    std::memcpy(&h.n_z, d + 28, 8);
    std::memcpy(&h.sum, d + 36, 8);
  }
  return h;
}

}  // namespace

std::vector<uint8_t> encode_context(const ModelIdentity& id, const StoredContext& meta, const KvCache& cache,
                                    int zstd_level) {
  KVZ_ASSERT(meta.info.size() <= kMaxInfoBytes, "context info of {} bytes", meta.info.size());
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
  Writer out;
  out.raw(kMagic, 8);
  out.put<uint32_t>(kVersion);
  out.put<uint64_t>(id.fingerprint);
  out.put<uint64_t>(meta.info.size());
  out.put<uint64_t>(w.buf.size());
  const size_t z_at = out.buf.size();
  out.put<uint64_t>(0);  // compressed bytes, below
  out.raw(meta.info.data(), meta.info.size());
  const size_t frame_at = out.buf.size();
  out.buf.resize(frame_at + ZSTD_compressBound(w.buf.size()));
  size_t zn = ZSTD_compress(out.buf.data() + frame_at, out.buf.size() - frame_at, w.buf.data(), w.buf.size(),
                            zstd_level);
  if (ZSTD_isError(zn)) fail("context: zstd compression failed: {}", ZSTD_getErrorName(zn));
  if (zn >= w.buf.size() - w.buf.size() / 8) {  // saves under 12.5 %: store the payload itself
    std::memcpy(out.buf.data() + frame_at, w.buf.data(), w.buf.size());
    zn = w.buf.size();
  }
  out.buf.resize(frame_at + zn);
  const uint64_t zn64 = zn;
  std::memcpy(out.buf.data() + z_at, &zn64, 8);
  out.put<uint64_t>(file_checksum(kVersion, out.buf.data(), out.buf.size()));
  return std::move(out.buf);
}

ContextFileHeader peek_context(const uint8_t* d, size_t n, const std::string& what) {
  const Header h = read_header(d, n, what);
  if (h.info_n > n - kHeaderBytes) fail("{}: file is truncated inside its info block", what);
  ContextFileHeader out;
  out.version = h.version;
  out.fingerprint = h.fp;
  out.payload_bytes = h.n_raw;
  out.compressed_bytes = h.n_z;
  out.info.assign(reinterpret_cast<const char*>(d + kHeaderBytes), h.info_n);
  return out;
}

KvCache decode_context(const uint8_t* d, size_t n, const std::string& what, const ModelIdentity& id,
                       StoredContext& meta, int64_t extra_rows) {
  const Header h = read_header(d, n, what);
  // Cheap checks first: the whole size, then the model, then the checksum, then the payload.
  const uint64_t trailer = h.version >= 3 ? 8 : 0;
  if (h.n_z > n || h.info_n > n || kHeaderBytes + h.info_n + h.n_z + trailer != n)
    fail("{}: file is {} bytes, its header announces {} (truncated or trailing bytes)", what, n,
         kHeaderBytes + h.info_n + h.n_z + trailer);
  if (h.fp != id.fingerprint)
    fail("{}: this context was saved with a different model (fingerprint {:016x}, loaded model {:016x})", what, h.fp,
         id.fingerprint);
  // The largest payload a valid file can have for this model: every head full to four
  // times the model's context length, plus ids and scores.
  const uint64_t max_rows = static_cast<uint64_t>(std::max<int64_t>(id.n_ctx_train, 1)) * 4;
  const uint64_t max_raw = max_rows * id.n_layer * id.n_head_kv * (4 + 4ull * id.d_head) +
                           max_rows * 8 * (2 + id.n_layer * id.n_head_kv) + 4096;
  if (h.n_raw > max_raw || h.n_z > ZSTD_compressBound(h.n_raw))
    fail("{}: header sizes are implausible (corrupt file)", what);
  if (h.version >= 3) {
    uint64_t sum;
    std::memcpy(&sum, d + n - 8, 8);
    if (file_checksum(h.version, d, n - 8) != sum) fail("{}: checksum mismatch (corrupt file)", what);
  }
  const uint8_t* frame = d + kHeaderBytes + h.info_n;
  std::vector<uint8_t> inflated;
  const uint8_t* payload = frame;  // version 4 stores an incompressible payload as it is
  if (h.version < 4 || h.n_z != h.n_raw) {
    inflated.resize(h.n_raw);
    const size_t got = ZSTD_decompress(inflated.data(), inflated.size(), frame, h.n_z);
    if (ZSTD_isError(got) || got != h.n_raw) fail("{}: payload does not decompress (corrupt file)", what);
    if (h.version < 3 && fnv1a(inflated.data(), inflated.size()) != h.sum)
      fail("{}: checksum mismatch (corrupt file)", what);
    payload = inflated.data();
  }

  Reader r(payload, h.n_raw, what);
  StoredContext out;
  out.info.assign(reinterpret_cast<const char*>(d + kHeaderBytes), h.info_n);
  out.n_sys = r.get<int64_t>();
  out.n_pos = r.get<int64_t>();
  out.pruned = r.get<uint8_t>() != 0;
  out.sys_ids = r.vec<int32_t>(max_rows, "the system prompt");
  out.ctx_ids = r.vec<int32_t>(max_rows, "the context");
  for (const auto* ids : {&out.sys_ids, &out.ctx_ids})
    for (size_t i = 0; i < ids->size(); ++i)
      if ((*ids)[i] < 0 || (*ids)[i] >= id.n_vocab)
        fail("{}: token id {} at index {} of the {} is outside the vocabulary [0, {}) (corrupt file)", what, (*ids)[i],
             i, ids == &out.sys_ids ? "system prompt" : "context", id.n_vocab);
  out.scores.n_layer = r.get<int32_t>();
  out.scores.n_head_kv = r.get<int32_t>();
  out.scores.n_ctx = r.get<int64_t>();
  out.scores.v = r.vec<float>(max_rows * id.n_layer * id.n_head_kv, "the score tensor");
  if (!out.scores.v.empty()) {
    if (out.scores.n_layer != id.n_layer || out.scores.n_head_kv != id.n_head_kv ||
        out.scores.n_ctx != static_cast<int64_t>(out.ctx_ids.size()))
      fail("{}: score tensor shape {}x{}x{} does not match the model's {}x{} heads and the {} context tokens "
           "(corrupt file)", what, out.scores.n_layer, out.scores.n_head_kv, out.scores.n_ctx, id.n_layer,
           id.n_head_kv, out.ctx_ids.size());
    if (out.scores.v.size() != static_cast<size_t>(out.scores.n_layer) * out.scores.n_head_kv * out.scores.n_ctx)
      fail("{}: score tensor shape does not match its size (corrupt file)", what);
    for (size_t i = 0; i < out.scores.v.size(); ++i)
      if (std::isnan(out.scores.v[i]))
        fail("{}: score {} is NaN (corrupt file)", what, i);
  }
  const int L = r.get<int32_t>(), H = r.get<int32_t>(), D = r.get<int32_t>();
  if (L != id.n_layer || H != id.n_head_kv || D != id.d_head)
    fail("{}: cache shape {}x{}x{} does not match the model's {}x{}x{}", what, L, H, D, id.n_layer, id.n_head_kv,
         id.d_head);
  const uint8_t type_id = h.version >= 2 ? r.get<uint8_t>() : 0;
  if (type_id > static_cast<uint8_t>(KvType::Q8_0)) fail("{}: unknown KV cache type {} (corrupt file)", what, type_id);
  const KvType kv_type = static_cast<KvType>(type_id);
  if (kv_type == KvType::Q8_0 && D % 32 != 0) fail("{}: q8_0 rows with head size {} (corrupt file)", what, D);
  const size_t rb = kv_row_bytes(kv_type, D);
  const int64_t n_ctx = static_cast<int64_t>(out.ctx_ids.size());
  if (out.n_sys < 0 || out.n_sys != static_cast<int64_t>(out.sys_ids.size()) || out.n_pos < out.n_sys + n_ctx ||
      out.n_pos > static_cast<int64_t>(max_rows))
    fail("{}: position counter {} is inconsistent with {} system and {} context tokens (corrupt file)", what,
         out.n_pos, out.n_sys, n_ctx);
  KvCache cache(L, H, D, kv_type);
  // The heads' lengths first (each head: its length, positions, K and V rows), checked
  // against what is left, so that one allocation holds them all (KvCache::allocate_all).
  std::vector<int64_t> lens, caps;
  {
    Reader scan = r;
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        const int64_t len = scan.get<int64_t>();
        if (len < 0 || len > out.n_pos || static_cast<uint64_t>(len) * (4 + 2 * rb) > scan.remaining())
          fail("{}: head ({}, {}) has {} rows for {} positions (corrupt file)", what, il, ih, len, out.n_pos);
        scan.skip(static_cast<size_t>(len) * (4 + 2 * rb));
        lens.push_back(len);
        caps.push_back(len + extra_rows);
      }
  }
  cache.allocate_all(caps);
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih) {
      const int64_t len = r.get<int64_t>();
      KVZ_ASSERT(len == lens[static_cast<size_t>(il) * H + ih], "head ({}, {}) read twice differently", il, ih);
      HeadSegment& dst = cache.seg(il, ih);
      r.raw(dst.pos.get(), len * 4);
      r.raw(dst.k.get(), len * rb);
      r.raw(dst.v.get(), len * rb);
      dst.len = len;
      for (int64_t i = 0; i < len; ++i)
        if (dst.pos[i] < 0 || dst.pos[i] >= out.n_pos || (i > 0 && dst.pos[i] <= dst.pos[i - 1]))
          fail("{}: head ({}, {}) positions are not increasing within [0, {}) (corrupt file)", what, il, ih,
               out.n_pos);
      if (!rows_finite(kv_type, dst.k.get(), len, rb) || !rows_finite(kv_type, dst.v.get(), len, rb))
        fail("{}: head ({}, {}) holds a NaN or infinite key or value (corrupt file)", what, il, ih);
    }
  if (!r.done()) fail("{}: trailing bytes after the cache (corrupt file)", what);
  meta = std::move(out);
  return cache;
}

void write_file_atomic(const std::string& path, const void* bytes, size_t n) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open for writing: {}", tmp, std::strerror(errno));
  const auto* p = static_cast<const uint8_t*>(bytes);
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      fail("{}: write failed: {}", tmp, std::strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    fail("{}: cannot flush to disk: {}", tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("{}: cannot rename the finished file into place: {}", path, std::strerror(errno));
  }
  // The rename itself is durable only once the directory is flushed.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  if (std::fseek(f, 0, SEEK_END) != 0) fail("{}: cannot seek", path);
  const long size = std::ftell(f);
  if (size < 0) fail("{}: cannot tell its size", path);
  if (static_cast<uint64_t>(size) > max_bytes) fail("{}: {} bytes is more than the {} allowed", path, size, max_bytes);
  std::rewind(f);
  std::vector<uint8_t> b(static_cast<size_t>(size));
  if (std::fread(b.data(), 1, b.size(), f) != b.size()) fail("{}: read failed", path);
  return b;
}

void save_context(const std::string& path, const ModelIdentity& id, const StoredContext& meta, const KvCache& cache,
                  int zstd_level) {
  const std::vector<uint8_t> b = encode_context(id, meta, cache, zstd_level);
  write_file_atomic(path, b.data(), b.size());
}

KvCache load_context(const std::string& path, const ModelIdentity& id, StoredContext& meta) {
  // Mapped, not read: the page cache's own pages, with no buffer faulted in and zeroed first.
  const MappedFile f = MappedFile::open(path);
  if (f.size()) ::madvise(const_cast<uint8_t*>(f.data()), f.size(), MADV_SEQUENTIAL);
  return decode_context(f.data(), f.size(), path, id, meta);  // an empty file: named too short
}

ContextFileHeader peek_context_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  std::vector<uint8_t> b(kHeaderBytes);
  if (std::fread(b.data(), 1, kHeaderBytes, f) != kHeaderBytes) fail("{}: too short for a kvzip context file", path);
  const Header h = read_header(b.data(), b.size(), path);
  b.resize(kHeaderBytes + h.info_n);
  if (std::fread(b.data() + kHeaderBytes, 1, h.info_n, f) != h.info_n) fail("{}: truncated inside its info block", path);
  return peek_context(b.data(), b.size(), path);
}

}  // namespace kvz

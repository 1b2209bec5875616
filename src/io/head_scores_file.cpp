#include "io/head_scores_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/hash.h"
#include "io/context_store.h"

namespace kvz {

namespace {
constexpr char kMagic[8] = {'K', 'V', 'Z', 'H', 'E', 'A', 'D', '1'};

template <typename T>
void put(std::vector<uint8_t>& b, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
}  // namespace

void save_head_scores(const std::string& path, const ModelIdentity& id, const HeadScoreFile& h) {
  KVZ_ASSERT(h.scores.size() == static_cast<size_t>(h.n_layer) * h.n_head_kv, "head score shape");
  std::vector<uint8_t> b(kMagic, kMagic + 8);
  put<uint64_t>(b, id.fingerprint);
  put<uint32_t>(b, h.n_layer);
  put<uint32_t>(b, h.n_head_kv);
  put<uint32_t>(b, static_cast<uint32_t>(h.source.size()));
  b.insert(b.end(), h.source.begin(), h.source.end());
  for (float x : h.scores) put<float>(b, x);
  put<uint64_t>(b, fnv1a(b.data(), b.size()));
  write_file_atomic(path, b.data(), b.size());
}

HeadScoreFile load_head_scores(const std::string& path, const ModelIdentity& id) {
  const std::vector<uint8_t> b = read_file_bytes(path, kMaxHeadScoreBytes);
  return decode_head_scores(b.data(), b.size(), path, id);
}

HeadScoreFile decode_head_scores(const uint8_t* data, size_t n, const std::string& path, const ModelIdentity& id) {
  if (n > kMaxHeadScoreBytes) fail("{}: {} bytes is far too large for a head-score file", path, n);
  size_t off = 0;
  auto need = [&](size_t k, const char* what) {
    if (k > n - off) fail("{}: truncated while reading {}", path, what);
  };
  need(8, "magic");
  if (std::memcmp(data, kMagic, 8) != 0) fail("{}: not a kvzip head-score file (bad magic)", path);
  off = 8;
  auto get = [&](auto& v, const char* what) {
    need(sizeof(v), what);
    std::memcpy(&v, data + off, sizeof(v));
    off += sizeof(v);
  };
  uint64_t fp;
  uint32_t L, H, ns;
  get(fp, "fingerprint");
  get(L, "layer count");
  get(H, "head count");
  get(ns, "source length");
  need(ns, "source");
  HeadScoreFile h;
  h.source.assign(reinterpret_cast<const char*>(data + off), ns);
  off += ns;
  if (static_cast<int>(L) != id.n_layer || static_cast<int>(H) != id.n_head_kv)
    fail("{}: scores for {} layers x {} KV heads, the model has {} x {}", path, L, H, id.n_layer, id.n_head_kv);
  h.n_layer = static_cast<int>(L);
  h.n_head_kv = static_cast<int>(H);
  h.scores.resize(static_cast<size_t>(L) * H);
  need(h.scores.size() * 4, "scores");
  std::memcpy(h.scores.data(), data + off, h.scores.size() * 4);
  off += h.scores.size() * 4;
  const size_t body = off;
  uint64_t sum;
  get(sum, "checksum");
  if (off != n) fail("{}: {} trailing bytes (corrupt file)", path, n - off);
  if (sum != fnv1a(data, body)) fail("{}: checksum mismatch (corrupt file)", path);
  if (fp != id.fingerprint) fail("{}: these head scores were computed for a different model", path);
  for (float x : h.scores)
    if (!std::isfinite(x)) fail("{}: non-finite head score", path);
  return h;
}

}  // namespace kvz

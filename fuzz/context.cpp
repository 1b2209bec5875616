// Compressed-context reader (decode_context). A mutated file almost never passes its
// checksum, so the input is the payload itself (the fields past the checksum, uncompressed:
// ids, scores, cache shape, rows; context_store.cpp) behind two selector bytes:
//   u8 format version (1, 2 or 3, modulo 3) | u8 model (even: tiny, odd: SmolLM2-135M shapes) | payload
// The target compresses the payload and wraps it in a valid header for that version and
// model, with the checksum the version uses, so every mutation reaches the field checks.
// A context that decodes is encoded again and must decode to the same fields and rows.
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "core/hash.h"
#include "io/context_store.h"
#include "targets.h"

namespace kvz::fuzz {

namespace {

constexpr uint64_t kFingerprint = 0x6b767a66757a7a31ull;

ModelIdentity identity(uint8_t which) {
  ModelIdentity id;
  id.fingerprint = kFingerprint;
  id.arch = "llama";
  if (which % 2 == 0) {  // tests/unit/synthetic_model.h sizes, d_head 32 so q8_0 rows exist
    id.name = "tiny";
    id.n_layer = 2, id.n_head_kv = 2, id.d_head = 32, id.n_vocab = 300, id.n_ctx_train = 64;
  } else {  // SmolLM2-135M-Instruct
    id.name = "smollm2";
    id.n_layer = 30, id.n_head_kv = 3, id.d_head = 64, id.n_vocab = 49152, id.n_ctx_train = 8192;
  }
  return id;
}

void put_bytes(std::vector<uint8_t>& b, const void* p, size_t n) {
  const size_t at = b.size();
  b.resize(at + n);
  if (n) std::memcpy(b.data() + at, p, n);
}

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  put_bytes(b, &v, sizeof(T));
}

// A context file of `version` around `payload`, as encode_context writes it.
std::vector<uint8_t> wrap(uint32_t version, const uint8_t* payload, size_t n) {
  std::vector<uint8_t> z(ZSTD_compressBound(n));
  const size_t zn = ZSTD_compress(z.data(), z.size(), payload, n, 1);
  if (ZSTD_isError(zn)) std::abort();
  z.resize(zn);
  const std::string info = version >= 3 ? "{\"fuzz\":1}" : "";
  std::vector<uint8_t> f;
  put_bytes(f, "KVZCTX1", 8);  // with its terminating NUL
  put<uint32_t>(f, version);
  put<uint64_t>(f, kFingerprint);
  if (version >= 3) put<uint64_t>(f, info.size());
  put<uint64_t>(f, n);
  put<uint64_t>(f, zn);
  if (version < 3) put<uint64_t>(f, fnv1a(payload, n));
  put_bytes(f, info.data(), info.size());
  put_bytes(f, z.data(), z.size());
  if (version >= 3) put<uint64_t>(f, fnv1a(f.data(), f.size()));
  return f;
}

void expect(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz/context: round trip changed %s\n", what);
  std::abort();
}

}  // namespace

std::string context(const uint8_t* data, size_t size) {
  if (size < 2) return "input shorter than its two selector bytes";
  const uint32_t version = 1 + data[0] % 3;
  const ModelIdentity id = identity(data[1]);
  const std::vector<uint8_t> file = wrap(version, data + 2, size - 2);
  return refused([&] {
    StoredContext meta;
    const KvCache cache = decode_context(file.data(), file.size(), "fuzz.kvzctx", id, meta);
    // What a caller does next: rows as f32.
    std::vector<float> row(static_cast<size_t>(cache.d_head()));
    for (int il = 0; il < cache.n_layer(); ++il)
      for (int ih = 0; ih < cache.n_head_kv(); ++ih)
        for (int64_t r = 0; r < cache.seg(il, ih).len; ++r) {
          cache.keys_f32(il, ih, r, 1, row.data());
          cache.values_f32(il, ih, r, 1, row.data());
        }
    const std::vector<uint8_t> again = encode_context(id, meta, cache, 1);
    StoredContext meta2;
    const KvCache cache2 = decode_context(again.data(), again.size(), "fuzz.kvzctx (re-encoded)", id, meta2);
    expect(meta2.n_sys == meta.n_sys && meta2.n_pos == meta.n_pos && meta2.pruned == meta.pruned, "the counters");
    expect(meta2.sys_ids == meta.sys_ids && meta2.ctx_ids == meta.ctx_ids, "the ids");
    expect(meta2.scores.v == meta.scores.v, "the scores");  // never NaN: decode refuses those
    expect(cache2.type() == cache.type() && cache2.lengths() == cache.lengths(), "the cache shape");
    for (int il = 0; il < cache.n_layer(); ++il)
      for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
        const HeadSegment &a = cache.seg(il, ih), &b = cache2.seg(il, ih);
        const size_t n = static_cast<size_t>(a.len);
        if (n == 0) continue;
        expect(std::memcmp(a.pos.get(), b.pos.get(), n * 4) == 0 &&
                   std::memcmp(a.k.get(), b.k.get(), n * cache.row_bytes()) == 0 &&
                   std::memcmp(a.v.get(), b.v.get(), n * cache.row_bytes()) == 0,
               "the rows");
      }
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(context)

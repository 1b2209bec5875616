// The context file's versions: version 4 stores a payload zstd cannot shrink as it is and
// checksums with XXH3; a version 3 file (zstd frame, FNV-1a) still loads to the same context.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "core/hash.h"
#include "io/context_store.h"
#include "kv/kvzip_context.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

using ContextFormatTest = test::SyntheticModelTest;

std::vector<int32_t> ids(int n) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 37 + 11) % 256;
  return t;
}

uint64_t u64_at(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

// The header is magic (8), version (4), fingerprint, info, payload and stored byte counts (8
// each); then the info block, the stored payload and the checksum.
constexpr size_t kHeader = 44;

// Rewrites a version 4 file as version 3 wrote it: a zstd frame and FNV-1a over the rest.
std::vector<uint8_t> as_version3(const std::vector<uint8_t>& v4) {
  const uint64_t info_n = u64_at(v4, 20), n_raw = u64_at(v4, 28), n_z = u64_at(v4, 36);
  std::vector<uint8_t> payload(n_raw);
  const uint8_t* stored = v4.data() + kHeader + info_n;
  if (n_z == n_raw) {
    std::memcpy(payload.data(), stored, n_raw);
  } else {
    const size_t got = ZSTD_decompress(payload.data(), n_raw, stored, n_z);
    EXPECT_EQ(got, n_raw);
  }
  std::vector<uint8_t> out(v4.begin(), v4.begin() + kHeader + info_n);
  const uint32_t three = 3;
  std::memcpy(out.data() + 8, &three, 4);
  std::vector<uint8_t> frame(ZSTD_compressBound(n_raw));
  frame.resize(ZSTD_compress(frame.data(), frame.size(), payload.data(), n_raw, 3));
  const uint64_t z = frame.size();
  std::memcpy(out.data() + 36, &z, 8);
  out.insert(out.end(), frame.begin(), frame.end());
  const uint64_t sum = fnv1a(out.data(), out.size());
  const auto* s = reinterpret_cast<const uint8_t*>(&sum);
  out.insert(out.end(), s, s + 8);
  return out;
}

}  // namespace

TEST_F(ContextFormatTest, Version4StoresRowsAsTheyAreAndVersion3StillLoads) {
  ThreadPool pool(2);
  ContextOptions co;
  co.scoring.chunk = 32;
  KvzipContext a(*model_, pool, co);
  a.prefill_ids(ids(80));
  a.score();
  SelectOptions so;
  so.ratio = 0.5;
  a.prune(so);
  const StoredContext meta = a.stored();
  // Rows of uniformly random finite f16 values, which zstd cannot shrink by 12.5 % (the synthetic
  // model's own rows compress by about a quarter: small weights, few distinct exponents).
  KvCache cache = a.session().cache().clone();
  std::mt19937 rng(5);
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
      HeadSegment& s = cache.seg(il, ih);
      for (uint8_t* rows : {s.k.get(), s.v.get()})
        for (int64_t i = 0; i < s.len * static_cast<int64_t>(cache.row_bytes()) / 2; ++i) {
          const uint16_t h = static_cast<uint16_t>(rng()) & 0xbfff;  // exponent never all ones
          std::memcpy(rows + 2 * i, &h, 2);
        }
    }
  const ModelIdentity& id = model_->identity();

  // incompressible rows: stored as they are
  const std::vector<uint8_t> v4 = encode_context(id, meta, cache);
  const ContextFileHeader h = peek_context(v4.data(), v4.size(), "v4");
  EXPECT_EQ(h.version, 4u);
  EXPECT_EQ(h.compressed_bytes, h.payload_bytes);
  StoredContext m4;
  const KvCache c4 = decode_context(v4.data(), v4.size(), "v4", id, m4);
  EXPECT_EQ(c4.lengths(), cache.lengths());
  EXPECT_EQ(m4.scores.v, meta.scores.v);
  EXPECT_EQ(m4.ctx_ids, meta.ctx_ids);
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
      EXPECT_TRUE(test::same_rows(c4.seg(il, ih), cache.seg(il, ih), cache.row_bytes()));
      EXPECT_EQ(c4.seg(il, ih).cap, std::max<int64_t>(cache.seg(il, ih).len + 64, 1));  // room for a question
    }
  // With no room asked for (the server's immutable copy), every head is exactly its rows.
  StoredContext m0;
  const KvCache c0 = decode_context(v4.data(), v4.size(), "v4", id, m0, 0);
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih) {
      EXPECT_TRUE(test::same_rows(c0.seg(il, ih), cache.seg(il, ih), cache.row_bytes()));
      EXPECT_EQ(c0.seg(il, ih).cap, std::max<int64_t>(cache.seg(il, ih).len, 1));
    }

  // an empty cache leaves ids and scores, which compress: a zstd frame
  const KvCache empty(cache.n_layer(), cache.n_head_kv(), cache.d_head(), cache.type());
  StoredContext small = meta;
  small.n_pos = meta.n_pos;
  const std::vector<uint8_t> z = encode_context(id, small, empty);
  const ContextFileHeader hz = peek_context(z.data(), z.size(), "z");
  EXPECT_LT(hz.compressed_bytes, hz.payload_bytes);
  StoredContext mz;
  EXPECT_EQ(decode_context(z.data(), z.size(), "z", id, mz).lengths(), empty.lengths());
  EXPECT_EQ(mz.scores.v, meta.scores.v);

  // version 3 (zstd, FNV-1a): the same context back
  const std::vector<uint8_t> v3 = as_version3(v4);
  EXPECT_EQ(peek_context(v3.data(), v3.size(), "v3").version, 3u);
  StoredContext m3;
  const KvCache c3 = decode_context(v3.data(), v3.size(), "v3", id, m3);
  EXPECT_EQ(c3.lengths(), cache.lengths());
  EXPECT_EQ(m3.scores.v, meta.scores.v);
  for (int il = 0; il < cache.n_layer(); ++il)
    for (int ih = 0; ih < cache.n_head_kv(); ++ih)
      EXPECT_TRUE(test::same_rows(c3.seg(il, ih), cache.seg(il, ih), cache.row_bytes()));

  // each version's checksum is its own: a version 3 file relabelled 4 is refused
  std::vector<uint8_t> relabelled = v3;
  const uint32_t four = 4;
  std::memcpy(relabelled.data() + 8, &four, 4);
  StoredContext mr;
  try {
    decode_context(relabelled.data(), relabelled.size(), "relabelled", id, mr);
    FAIL() << "a version 3 checksum passed as version 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  // a flipped byte inside stored rows is caught by the checksum
  std::vector<uint8_t> flipped = v4;
  flipped[flipped.size() / 2] ^= 0x10;
  EXPECT_THROW(decode_context(flipped.data(), flipped.size(), "flipped", id, mr), Error);
}

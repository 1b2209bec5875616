// Per-head KV cache invariants: lengths, positions kept through compaction, truncation
// restores, memory really freed.
#include <gtest/gtest.h>

#include <cstring>

#include "cache/head_cache.h"

using namespace kvz;

namespace {
std::vector<uint16_t> row(int d, uint16_t v) { return std::vector<uint16_t>(d, v); }
}  // namespace

TEST(KvCache, AppendTruncateCompact) {
  const int d = 16;
  KvCache c(2, 3, d);
  c.reserve_extra(10);
  for (int t = 0; t < 10; ++t)
    for (int il = 0; il < 2; ++il)
      for (int ih = 0; ih < 3; ++ih) c.append(il, ih, row(d, t).data(), row(d, 100 + t).data(), t);
  EXPECT_EQ(c.total_rows(), 60);
  EXPECT_EQ(c.bytes_used(), 60u * 2 * d * 2);
  const auto lens = c.lengths();
  // keep even rows of head (1, 2) only
  std::vector<uint8_t> keep(10);
  for (int r = 0; r < 10; ++r) keep[r] = r % 2 == 0;
  c.compact(1, 2, keep.data(), 0);
  const HeadSegment& s = c.seg(1, 2);
  ASSERT_EQ(s.len, 5);
  EXPECT_EQ(s.cap, 5);
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(s.pos[r], 2 * r);
    // rows are f16 storage: raw 16-bit values, d per row
    uint16_t k0, vlast;
    std::memcpy(&k0, s.k.get() + r * c.row_bytes(), 2);
    std::memcpy(&vlast, s.v.get() + r * c.row_bytes() + 2 * (d - 1), 2);
    EXPECT_EQ(k0, 2 * r);
    EXPECT_EQ(vlast, 100 + 2 * r);
  }
  EXPECT_EQ(c.total_rows(), 55);
  // a query appends, then truncation restores the pruned state exactly
  const auto before = c.lengths();
  c.reserve_extra(2);
  for (int il = 0; il < 2; ++il)
    for (int ih = 0; ih < 3; ++ih) c.append(il, ih, row(d, 50).data(), row(d, 51).data(), 10);
  EXPECT_EQ(c.total_rows(), 61);
  c.truncate(before);
  EXPECT_EQ(c.lengths(), before);
  EXPECT_EQ(c.seg(1, 2).pos[4], 8);
  (void)lens;
}

TEST(KvCache, CompactFreesMemory) {
  const int d = 64;
  KvCache c(1, 1, d);
  c.reserve_extra(1000);
  for (int t = 0; t < 1000; ++t) c.append(0, 0, row(d, 1).data(), row(d, 2).data(), t);
  const size_t before = c.bytes_allocated();
  std::vector<uint8_t> keep(1000, 0);
  for (int r = 0; r < 1000; r += 4) keep[r] = 1;
  c.compact(0, 0, keep.data(), 8);
  EXPECT_EQ(c.seg(0, 0).len, 250);
  EXPECT_LT(c.bytes_allocated(), before / 3);
}

// clone(extra) copies every row into one RowArena with room for `extra` more per head; a
// head that outgrows its slice moves to an array of its own and the rest stay in the arena.
// Large enough (6 layers x 4 heads x 2,000 rows x 2 x 128 B = 12 MB) that the arena is a
// huge-page mapping; under AddressSanitizer a leak or a free of an arena slice fails here.
TEST(KvCache, CloneIntoOneArenaThenGrowOutOfIt) {
  const int d = 64, L = 6, H = 4;
  KvCache c(L, H, d);
  c.reserve_extra(2000);
  for (int t = 0; t < 2000; ++t)
    for (int il = 0; il < L; ++il)
      for (int ih = 0; ih < H; ++ih) {
        const auto r = row(d, static_cast<uint16_t>(t + 7 * il + ih));
        c.append(il, ih, r.data(), r.data(), t);
      }
  KvCache k = c.clone(5);
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih) {
      const HeadSegment &a = c.seg(il, ih), &b = k.seg(il, ih);
      ASSERT_EQ(b.len, 2000);
      EXPECT_EQ(b.cap, 2005);
      EXPECT_EQ(std::memcmp(a.k.get(), b.k.get(), 2000 * k.row_bytes()), 0);
      EXPECT_EQ(std::memcmp(a.v.get(), b.v.get(), 2000 * k.row_bytes()), 0);
      EXPECT_EQ(std::memcmp(a.pos.get(), b.pos.get(), 2000 * sizeof(int32_t)), 0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.k.get()) % 64, 0u);
    }
  // The room is there without a reallocation.
  const uint8_t* k0 = k.seg(0, 0).k.get();
  k.reserve_extra(5);
  EXPECT_EQ(k.seg(0, 0).k.get(), k0);
  // Past it, every head grows into memory of its own, rows intact.
  k.reserve_extra(100);
  EXPECT_NE(k.seg(0, 0).k.get(), k0);
  for (int il = 0; il < L; ++il)
    for (int ih = 0; ih < H; ++ih) {
      uint16_t first;
      std::memcpy(&first, k.seg(il, ih).k.get() + 1999 * k.row_bytes(), 2);
      EXPECT_EQ(first, 1999 + 7 * il + ih);
    }
  // A clone of a clone, then the first clone goes: the second owns its own arena.
  KvCache k2 = k.clone();
  k = KvCache();
  EXPECT_EQ(k2.total_rows(), int64_t{2000} * L * H);
  EXPECT_EQ(k2.seg(L - 1, H - 1).pos[1999], 1999);
}

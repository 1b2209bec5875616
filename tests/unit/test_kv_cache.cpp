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

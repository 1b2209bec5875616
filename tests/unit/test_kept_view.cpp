// kv/kept_view: the kept tokens of a hand-made cache, row by row.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "kv/kept_view.h"

namespace kvz {
namespace {

// 2 layers x 2 KV heads; every head gets the rows of `pos` (zero K/V).
KvCache cache_with(const std::vector<std::vector<int32_t>>& pos) {
  KvCache c(2, 2, 16);
  c.reserve_extra(16);
  const std::vector<uint8_t> zero(c.row_bytes(), 0);
  for (int il = 0; il < 2; ++il)
    for (int ih = 0; ih < 2; ++ih)
      for (int32_t p : pos[il * 2 + ih]) c.append(il, ih, zero.data(), zero.data(), p);
  return c;
}

TEST(KeptView, CountsTheContextRowsOfEachHead) {
  // n_sys 2 (positions 0, 1), context tokens 0..4 at positions 2..6, a later turn at 7.
  const KvCache c = cache_with({{0, 1, 2, 3, 4, 5, 6},  // everything
                                {0, 1, 2, 6, 7},        // tokens 0 and 4, and the turn
                                {0, 1},                 // no context token
                                {0, 1, 4, 5}});         // tokens 2 and 3
  const KeptView v = kept_view(c, 2, 5);
  EXPECT_EQ(v.rows(0, 0), 5);
  EXPECT_EQ(v.rows(0, 1), 2);
  EXPECT_EQ(v.rows(1, 0), 0);
  EXPECT_EQ(v.rows(1, 1), 2);
  EXPECT_EQ(v.token_heads, (std::vector<int32_t>{2, 1, 2, 2, 2}));
  EXPECT_DOUBLE_EQ(v.head_fraction(0, 1), 0.4);
  EXPECT_DOUBLE_EQ(v.layer_fraction(0), 0.7);
  EXPECT_DOUBLE_EQ(v.layer_fraction(1), 0.2);
  EXPECT_DOUBLE_EQ(v.token_fraction(1), 0.25);
  const uint8_t* h01 = v.head(0, 1);
  EXPECT_EQ(std::vector<uint8_t>(h01, h01 + 5), (std::vector<uint8_t>{1, 0, 0, 0, 1}));
  EXPECT_EQ(kept_bitmap_hex(h01, 5), "88");
  EXPECT_EQ(kept_bitmap_hex(v.head(0, 0), 5), "f8");
  EXPECT_EQ(kept_bitmap_hex(v.head(1, 0), 5), "00");
  EXPECT_EQ(kept_bitmap_hex(v.head(1, 1), 5), "30");
}

TEST(KeptView, RowsOutOfOrderAndEmptyContext) {
  const KvCache c = cache_with({{3, 2}, {}, {2}, {0}});  // positions need not be sorted here
  const KeptView v = kept_view(c, 2, 2);
  EXPECT_EQ(v.token_heads, (std::vector<int32_t>{2, 1}));
  const KeptView e = kept_view(c, 4, 0);
  EXPECT_EQ(e.n_ctx, 0);
  EXPECT_DOUBLE_EQ(e.layer_fraction(0), 0.0);
  EXPECT_EQ(kept_bitmap_hex(e.head(0, 0), 0), "");
}

TEST(KeptView, APositionHeldTwiceIsABrokenCache) {
  const KvCache c = cache_with({{2, 2}, {}, {}, {}});
  EXPECT_THROW(kept_view(c, 2, 3), Error);
}

}  // namespace
}  // namespace kvz

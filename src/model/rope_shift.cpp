#include "model/rope_shift.h"

#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"
#include "model/blocks.h"

namespace kvz {

void rotate_keys(const Model& m, int il, float* k, int64_t n_rows, int64_t delta) {
  if (delta == 0 || n_rows == 0) return;
  const HParams& hp = m.hp();
  KVZ_ASSERT(delta > std::numeric_limits<int32_t>::min() && delta < std::numeric_limits<int32_t>::max(),
             "rotate_keys: shift {} out of range", delta);
  const auto d = static_cast<int32_t>(delta);
  RopeTable t;  // one position: delta's angles (negative delta rotates back)
  t.build(hp, m.w().rope_freqs, &d, 1, hp.is_swa(il));
  // Every row gets the same rotation: rope_apply's heads are our rows.
  KVZ_ASSERT(n_rows <= std::numeric_limits<int>::max(), "rotate_keys: {} rows", n_rows);
  rope_apply(k, static_cast<int>(n_rows), hp.d_head, hp.rope_style, t.cos.data(), t.sin.data());
}

void shift_rows(const Model& m, KvCache& cache, int il, int ih, int64_t r0, int64_t n, int64_t delta) {
  if (delta == 0 || n == 0) return;
  HeadSegment& s = cache.seg(il, ih);
  KVZ_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= s.len, "shift_rows: rows [{}, {}) of {}", r0, r0 + n, s.len);
  const int d = cache.d_head();
  std::vector<float> k(static_cast<size_t>(n) * d);
  cache.keys_f32(il, ih, r0, n, k.data());
  rotate_keys(m, il, k.data(), n, delta);
  f32_to_kv_rows(cache.type(), k.data(), s.k.get() + r0 * cache.row_bytes(), n, d);
  for (int64_t r = r0; r < r0 + n; ++r) {
    const int64_t p = s.pos[r] + delta;
    KVZ_ASSERT(p >= 0 && p <= std::numeric_limits<int32_t>::max(), "shift_rows: position {} out of range", p);
    s.pos[r] = static_cast<int32_t>(p);
  }
}

}  // namespace kvz

#include "kv/compose.h"

#include <cstring>
#include <optional>

#include "core/error.h"
#include "model/rope_shift.h"

namespace kvz {

namespace {

// Positions [lo, hi) of a head's rows: rows are in increasing position order (the format
// checks it on load, the forward pass appends that way), so the range is contiguous.
std::pair<int64_t, int64_t> row_range(const HeadSegment& s, int64_t lo, int64_t hi) {
  int64_t a = 0;
  while (a < s.len && s.pos[a] < lo) ++a;
  int64_t b = a;
  while (b < s.len && s.pos[b] < hi) ++b;
  return {a, b};
}

}  // namespace

ComposedContext compose_contexts(const Model& m, std::span<const ComposePart> parts, KvType type) {
  if (parts.empty()) fail("compose: no contexts given");
  const HParams& hp = m.hp();
  const StoredContext& first = *parts[0].meta;
  const int64_t n_sys = first.n_sys;
  ComposedContext out;
  out.meta.n_sys = n_sys;
  out.meta.sys_ids = first.sys_ids;
  bool all_scores = true;
  int64_t n_ctx_total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const StoredContext& c = *parts[i].meta;
    const KvCache& kc = *parts[i].cache;
    if (kc.n_layer() != hp.n_layer || kc.n_head_kv() != hp.n_head_kv || kc.d_head() != hp.d_head)
      fail("compose: {} has a cache of another shape ({} layers x {} KV heads x {}) than the model's", parts[i].name,
           kc.n_layer(), kc.n_head_kv(), kc.d_head());
    if (c.sys_ids != first.sys_ids)
      fail("compose: {} was prefilled after another system prompt ({} tokens) than {} ({} tokens)", parts[i].name,
           c.sys_ids.size(), parts[0].name, first.sys_ids.size());
    const auto n_ctx = static_cast<int64_t>(c.ctx_ids.size());
    if (c.n_pos != n_sys + n_ctx)
      fail("compose: {} holds {} positions of conversation after its document; composition takes documents only "
           "(compose the context it was continued from)",
           parts[i].name, c.n_pos - n_sys - n_ctx);
    out.starts.push_back(n_ctx_total);
    n_ctx_total += n_ctx;
    out.meta.ctx_ids.insert(out.meta.ctx_ids.end(), c.ctx_ids.begin(), c.ctx_ids.end());
    out.meta.pruned = out.meta.pruned || c.pruned;
    all_scores = all_scores && !c.scores.v.empty();
  }
  out.meta.n_pos = n_sys + n_ctx_total;

  // Parts stored in another row type, converted once.
  std::vector<std::optional<KvCache>> converted(parts.size());
  auto cache_of = [&](size_t i) -> const KvCache& {
    if (parts[i].cache->type() == type) return *parts[i].cache;
    if (!converted[i]) converted[i] = parts[i].cache->converted(type);
    return *converted[i];
  };

  out.cache = KvCache(hp.n_layer, hp.n_head_kv, hp.d_head, type);
  KvCache& dst = out.cache;
  const size_t rb = dst.row_bytes();
  // Sliding-window layers: rows at positions <= n_pos - n_swa are out of every query's window.
  const int64_t first_visible = hp.n_swa > 0 ? out.meta.n_pos - hp.n_swa + 1 : 0;
  struct Piece {
    const HeadSegment* src;
    int64_t r0, r1, delta;
  };
  std::vector<Piece> pieces;
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv; ++ih) {
      const int64_t lo = hp.is_swa(il) ? first_visible : 0;
      pieces.clear();
      int64_t n_rows = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        const HeadSegment& s = cache_of(i).seg(il, ih);
        const int64_t delta = out.starts[i];
        const auto n_ctx = static_cast<int64_t>(parts[i].meta->ctx_ids.size());
        // The system prompt from the first part only, then the part's document rows.
        const int64_t from = i == 0 ? 0 : n_sys, to = n_sys + n_ctx;
        auto [a, b] = row_range(s, std::max(from, lo - delta), to);
        if (b > a) pieces.push_back({&s, a, b, delta});
        n_rows += b - a;
      }
      HeadSegment& d = dst.seg(il, ih);
      d.allocate(std::max<int64_t>(n_rows, 1), rb);
      for (const Piece& p : pieces) {
        const int64_t n = p.r1 - p.r0;
        std::memcpy(d.k.get() + d.len * rb, p.src->k.get() + p.r0 * rb, n * rb);
        std::memcpy(d.v.get() + d.len * rb, p.src->v.get() + p.r0 * rb, n * rb);
        std::memcpy(d.pos.get() + d.len, p.src->pos.get() + p.r0, n * sizeof(int32_t));
        d.len += n;
        shift_rows(m, dst, il, ih, d.len - n, n, p.delta);
      }
    }

  if (all_scores) {
    HeadScores& s = out.meta.scores;
    s.reset(hp.n_layer, hp.n_head_kv, n_ctx_total, 0.0f);
    for (size_t i = 0; i < parts.size(); ++i) {
      const HeadScores& p = parts[i].meta->scores;
      if (p.n_layer != hp.n_layer || p.n_head_kv != hp.n_head_kv ||
          p.n_ctx != static_cast<int64_t>(parts[i].meta->ctx_ids.size()))
        fail("compose: {} holds scores of shape {} x {} x {} for {} context tokens", parts[i].name, p.n_layer,
             p.n_head_kv, p.n_ctx, parts[i].meta->ctx_ids.size());
      for (int il = 0; il < hp.n_layer; ++il)
        for (int ih = 0; ih < hp.n_head_kv; ++ih)
          std::memcpy(s.head(il, ih) + out.starts[i], p.head(il, ih), p.n_ctx * sizeof(float));
    }
  }
  return out;
}

}  // namespace kvz

#include "kv/policy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace kvz {

PruneLevel parse_prune_level(const std::string& s) {
  if (s == "pair") return PruneLevel::Pair;
  if (s == "pair-uniform") return PruneLevel::PairUniform;
  if (s == "head") return PruneLevel::Head;
  if (s == "adakv") return PruneLevel::AdaKV;
  fail("unknown prune level '{}' (expected pair, pair-uniform, head or adakv)", s);
}

const char* prune_level_name(PruneLevel l) {
  switch (l) {
    case PruneLevel::Pair: return "pair";
    case PruneLevel::PairUniform: return "pair-uniform";
    case PruneLevel::Head: return "head";
    case PruneLevel::AdaKV: return "adakv";
  }
  return "?";
}

namespace {

void check_ratio(double r) {
  if (!(r > 0.0 && r <= 1.0)) fail("ratio {} is outside (0, 1]: it is the fraction of context KV pairs kept", r);
}

KeepMask empty_mask(int L, int H, int64_t n) {
  KeepMask m;
  m.n_layer = L;
  m.n_head_kv = H;
  m.n_ctx = n;
  m.keep.assign(static_cast<size_t>(L) * H * n, 0);
  m.n_total = static_cast<int64_t>(m.keep.size());
  return m;
}

bool all_evictable(const std::vector<uint8_t>& e) {
  return std::all_of(e.begin(), e.end(), [](uint8_t x) { return x != 0; });
}

void check_evictable(const std::vector<uint8_t>& e, int L) {
  if (!e.empty() && e.size() != static_cast<size_t>(L))
    fail("evictable-layer mask has {} entries for {} layers", e.size(), L);
  if (!e.empty() && std::none_of(e.begin(), e.end(), [](uint8_t x) { return x != 0; }))
    fail("no layer is evictable; nothing to prune");
}

// The layers marked evictable, in order.
std::vector<int> evictable_layers(const std::vector<uint8_t>& e) {
  std::vector<int> out;
  for (size_t il = 0; il < e.size(); ++il)
    if (e[il]) out.push_back(static_cast<int>(il));
  return out;
}

// Runs a selection on the evictable layers only and widens its mask to all layers, the
// others kept whole; n_kept / n_total stay those of the evictable layers.
template <class Select>
KeepMask on_evictable_layers(int L, int H, int64_t n, const std::vector<uint8_t>& e, Select select) {
  const std::vector<int> layers = evictable_layers(e);
  const KeepMask sub = select(static_cast<int>(layers.size()));
  KeepMask m = empty_mask(L, H, n);
  std::fill(m.keep.begin(), m.keep.end(), 1);
  const size_t per_layer = static_cast<size_t>(H) * n;
  for (size_t j = 0; j < layers.size(); ++j)
    std::copy(sub.keep.begin() + j * per_layer, sub.keep.begin() + (j + 1) * per_layer,
              m.keep.begin() + layers[j] * per_layer);
  m.n_kept = sub.n_kept;
  m.n_total = sub.n_total;
  return m;
}

// Exact top-k of v with deterministic ties (lower index first); marks them in keep.
void top_k(const float* v, int64_t n, int64_t k, uint8_t* keep) {
  if (k >= n) {
    std::fill(keep, keep + n, 1);
    return;
  }
  if (k <= 0) return;
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [v](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); };
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), better);
  for (int64_t i = 0; i < k; ++i) keep[idx[i]] = 1;
}

}  // namespace

KeepMask select_pairs(const HeadScores& s, const SelectOptions& o) {
  check_ratio(o.ratio);
  check_evictable(o.evictable, s.n_layer);
  if (!all_evictable(o.evictable)) {
    return on_evictable_layers(s.n_layer, s.n_head_kv, s.n_ctx, o.evictable, [&](int n_sub) {
      HeadScores sub;
      sub.reset(n_sub, s.n_head_kv, s.n_ctx, 0.0f);
      const size_t per_layer = static_cast<size_t>(s.n_head_kv) * s.n_ctx;
      int j = 0;
      for (int il : evictable_layers(o.evictable))
        std::copy(s.v.begin() + il * per_layer, s.v.begin() + (il + 1) * per_layer, sub.v.begin() + j++ * per_layer);
      SelectOptions so = o;
      so.evictable.clear();
      if (!o.layer_ratios.empty()) {  // per-layer budgets of the evictable layers
        so.layer_ratios.clear();
        for (int il : evictable_layers(o.evictable)) so.layer_ratios.push_back(o.layer_ratios.at(il));
      }
      return select_pairs(sub, so);
    });
  }
  KVZ_ASSERT(s.v.size() == static_cast<size_t>(s.n_layer) * s.n_head_kv * s.n_ctx, "score tensor size mismatch");
  for (float x : s.v)
    if (!std::isfinite(x)) fail("scores contain a non-finite value; refusing to prune");
  KeepMask m = empty_mask(s.n_layer, s.n_head_kv, s.n_ctx);
  const int64_t N = static_cast<int64_t>(s.v.size());
  if (o.level == PruneLevel::Head) {
    m = select_heads(head_scores_from_pairs(s), s.n_layer, s.n_head_kv, s.n_ctx, o.ratio);
    return m;
  }
  if (!o.layer_ratios.empty()) {
    if (o.layer_ratios.size() != static_cast<size_t>(s.n_layer))
      fail("{} per-layer ratios for a model of {} layers", o.layer_ratios.size(), s.n_layer);
    for (double r : o.layer_ratios) check_ratio(r);
  }
  auto layer_ratio = [&](int il) { return o.layer_ratios.empty() ? o.ratio : o.layer_ratios[il]; };
  const bool all = o.layer_ratios.empty() ? o.ratio >= 1.0
                                          : std::all_of(o.layer_ratios.begin(), o.layer_ratios.end(),
                                                        [](double r) { return r >= 1.0; });
  if (all && o.level != PruneLevel::Pair) {
    std::fill(m.keep.begin(), m.keep.end(), 1);
  } else if (o.level == PruneLevel::PairUniform) {
    for (int il = 0; il < s.n_layer; ++il) {
      const int64_t k = static_cast<int64_t>(std::floor(s.n_ctx * layer_ratio(il)));
      for (int ih = 0; ih < s.n_head_kv; ++ih)
        top_k(s.head(il, ih), s.n_ctx, k, m.keep.data() + (static_cast<size_t>(il) * s.n_head_kv + ih) * s.n_ctx);
    }
  } else if (o.level == PruneLevel::AdaKV) {
    if (!(o.ada_alpha >= 0.0 && o.ada_alpha <= 1.0)) fail("AdaKV alpha {} is outside [0, 1]", o.ada_alpha);
    const int H = s.n_head_kv;
    const int64_t n = s.n_ctx;
    std::vector<float> layer(static_cast<size_t>(H) * n);
    for (int il = 0; il < s.n_layer; ++il) {
      const int64_t k = static_cast<int64_t>(std::floor(n * layer_ratio(il)));
      int64_t k_safe = static_cast<int64_t>(std::floor(k * o.ada_alpha));
      if (o.ada_alpha > 0 && k > 0) k_safe = std::max<int64_t>(k_safe, 1);
      uint8_t* keep = m.keep.data() + static_cast<size_t>(il) * H * n;
      for (int ih = 0; ih < H; ++ih) top_k(s.head(il, ih), n, k_safe, keep + static_cast<size_t>(ih) * n);
      // The safeguard pairs are kept; the rest of the layer's H*k goes to the best others.
      std::copy(s.head(il, 0), s.head(il, 0) + static_cast<size_t>(H) * n, layer.begin());
      for (size_t i = 0; i < layer.size(); ++i)
        if (keep[i]) layer[i] = std::numeric_limits<float>::infinity();
      std::fill(keep, keep + layer.size(), 0);
      top_k(layer.data(), static_cast<int64_t>(layer.size()), H * k, keep);
    }
  } else if (o.ratio >= 1.0) {
    std::fill(m.keep.begin(), m.keep.end(), 1);
  } else if (o.strict_threshold) {
    std::vector<float> sorted(s.v);
    const int64_t n = std::max<int64_t>(static_cast<int64_t>(std::floor(N * o.ratio)) - 1, 0);
    std::nth_element(sorted.begin(), sorted.begin() + n, sorted.end(), std::greater<float>());
    const float thr = sorted[n];
    for (int64_t i = 0; i < N; ++i) m.keep[i] = s.v[i] > thr;
  } else {
    top_k(s.v.data(), N, static_cast<int64_t>(std::floor(N * o.ratio)), m.keep.data());
  }
  m.n_kept = std::count(m.keep.begin(), m.keep.end(), uint8_t{1});
  return m;
}

KeepMask select_heads(const std::vector<float>& hs, int L, int H, int64_t n_ctx, double ratio,
                      const std::vector<uint8_t>& evictable) {
  check_ratio(ratio);
  if (hs.size() != static_cast<size_t>(L) * H)
    fail("head scores have {} entries, the model has {} layers x {} KV heads", hs.size(), L, H);
  check_evictable(evictable, L);
  if (!all_evictable(evictable)) {
    return on_evictable_layers(L, H, n_ctx, evictable, [&](int n_sub) {
      std::vector<float> sub;
      for (int il : evictable_layers(evictable)) sub.insert(sub.end(), hs.begin() + il * H, hs.begin() + (il + 1) * H);
      return select_heads(sub, n_sub, H, n_ctx, ratio);
    });
  }
  KeepMask m = empty_mask(L, H, n_ctx);
  const int64_t n_heads = static_cast<int64_t>(L) * H;
  const int64_t k = std::clamp<int64_t>(std::llround(ratio * n_heads), 1, n_heads);
  std::vector<uint8_t> head_keep(n_heads, 0);
  top_k(hs.data(), n_heads, k, head_keep.data());
  for (int64_t h = 0; h < n_heads; ++h)
    if (head_keep[h]) std::fill(m.keep.begin() + h * n_ctx, m.keep.begin() + (h + 1) * n_ctx, 1);
  m.n_kept = k * n_ctx;
  return m;
}

std::vector<float> head_scores_from_pairs(const HeadScores& s) {
  std::vector<float> out(static_cast<size_t>(s.n_layer) * s.n_head_kv, 0.0f);
  for (int il = 0; il < s.n_layer; ++il)
    for (int ih = 0; ih < s.n_head_kv; ++ih) {
      const float* h = s.head(il, ih);
      float mx = 0.0f;
      for (int64_t t = 0; t < s.n_ctx; ++t) mx = std::max(mx, h[t]);
      out[static_cast<size_t>(il) * s.n_head_kv + ih] = mx;
    }
  return out;
}

}  // namespace kvz

// Selection policies: turn scores into keep masks under a budget. Shared by every press,
// so methods compare under one budget (STYLE.md). `ratio` is the KEPT fraction of the
// context pairs (kvzip-spec §1), in (0, 1].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/scores.h"

namespace kvz {

enum class PruneLevel {
  Pair,         // one global budget over all layers x KV heads x tokens (non-uniform heads)
  PairUniform,  // the same budget in every (layer, KV head)
  Head,         // whole heads: scores constant per head (context-independent head scores)
  AdaKV,        // AdaKV (arXiv:2407.11550): each layer's budget spread over its heads by score,
                // every head keeping at least alpha of an even share (kvpress AdaKVPress)
};
PruneLevel parse_prune_level(const std::string& s);  // "pair", "pair-uniform", "head", "adakv"
const char* prune_level_name(PruneLevel l);

struct KeepMask {
  int n_layer = 0, n_head_kv = 0;
  int64_t n_ctx = 0;
  std::vector<uint8_t> keep;  // [n_layer][n_head_kv][n_ctx]
  int64_t n_kept = 0;   // kept pairs of the evictable layers
  int64_t n_total = 0;  // pairs of the evictable layers (the budget's denominator)
  double ratio_true() const { return n_total == 0 ? 1.0 : static_cast<double>(n_kept) / n_total; }
  const uint8_t* head(int il, int ih) const { return keep.data() + (static_cast<size_t>(il) * n_head_kv + ih) * n_ctx; }
};

struct SelectOptions {
  double ratio = 1.0;
  PruneLevel level = PruneLevel::Pair;
  // Reference-compatible global threshold (snu-mllab/KVzip `_threshold`): thr = the
  // (floor(N r) - 1)-th largest score, keep scores STRICTLY above it, so ties with the
  // threshold are all evicted. Default is exact top-k with ties broken by
  // (layer, head, position), lowest first.
  bool strict_threshold = false;
  // Per-layer kept fractions (PyramidKV), [n_layer]; empty: `ratio` in every layer. Used by
  // pair-uniform and adakv; pair and head have one global budget.
  std::vector<double> layer_ratios;
  // AdaKV safeguard: each head keeps its top floor(alpha * n) pairs (at least 1 when alpha
  // > 0), n = the layer's per-head budget; the rest of the layer's budget goes to the
  // layer's best remaining pairs regardless of head.
  double ada_alpha = 0.2;
  // [n_layer]: 1 = the layer's pairs compete for the budget; 0 = always kept and outside
  // the budget (Gemma 3's sliding-window layers, kvzip-spec §3.2). Empty: every layer.
  std::vector<uint8_t> evictable;
};

// Throws kvz::Error for a ratio outside (0, 1] or non-finite scores.
KeepMask select_pairs(const HeadScores& s, const SelectOptions& o);

// Head-level selection from [n_layer][n_head_kv] head scores: keeps the best
// round(ratio * L * H) heads (at least one), ties broken by (layer, head); never drops
// every head because of ties (kvzip-spec §4.3).
// `evictable` as in SelectOptions: heads of other layers are always kept and not counted.
KeepMask select_heads(const std::vector<float>& head_scores, int n_layer, int n_head_kv, int64_t n_ctx, double ratio,
                      const std::vector<uint8_t>& evictable = {});

// max over tokens of pair scores: [n_layer][n_head_kv] (kvzip-spec §4.3).
std::vector<float> head_scores_from_pairs(const HeadScores& s);

}  // namespace kvz

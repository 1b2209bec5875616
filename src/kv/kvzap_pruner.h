// Streaming KVzap eviction (arXiv 2601.07891 §3; docs: kvzap-and-presses.md §1.6), attached
// to a Session as its LayerObserver. Every token entering layer il is scored once from its
// attention input by the surrogate (one predicted log-score per KV head); the score is kept
// beside the row. A row stays while its token is among the `window` most recent positions
// (pos >= n_pos - window); when it leaves the window it is decided once, per KV head:
// evicted if its score < tau, kept for good otherwise. prune() makes the decisions; forward()
// runs a token sequence in batches of n_batch with a prune() after each, so chunked prefill
// and decode steps (n_batch = 1 per call) follow the same rule.
//
// Eviction is in place (KvCache::remove_rows): no allocation, no copy of the whole cache,
// only the rows after the first evicted one of a head move up. RoPE positions stay with
// their rows, so attention over the remaining rows is as if the evicted ones were masked.
//
// Protection:
//  - protect_prefix(n): rows at positions < n are never evicted (KvzipContext keeps the
//    system prompt; kvpress protects nothing; the default here is 0).
//  - begin_query(): until end_query(), rows that existed before the call are not decided
//    (neither evicted nor marked kept), only rows added later may go. So Session::restore
//    to a checkpoint taken at begin_query() followed by end_query() brings the cache and
//    the pruner back exactly (a KvzipContext::query with update_cache=false). The price:
//    inside such a query the context's last `window` rows stay even when they leave the
//    window; they are decided by the next prune() outside a query.
// Sliding-window layers (Gemma 3) drop rows from the front themselves; prune() notices and
// drops the matching scores.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "kv/kvzap_model.h"
#include "model/session.h"

namespace kvz {

struct KvzapOptions {
  float threshold = -std::numeric_limits<float>::infinity();  // tau, on the log-score scale
  int64_t window = 128;                                         // protected recent positions
};

struct KvzapStats {
  std::vector<int64_t> entered;  // [n_layer] (token, KV head) pairs scored
  std::vector<int64_t> evicted;  // [n_layer] pairs evicted
  double predict_seconds = 0;    // wall time spent in predict()
  // Kept fraction of the pairs that entered (1 - kvpress's compression_ratio).
  double kept_fraction(int il) const;
  double kept_fraction() const;
};

class KvzapPruner final : public LayerObserver {
 public:
  // Attaches itself to `session` (set_observer); the surrogate must match its model.
  KvzapPruner(Session& session, const KvzapModel& surrogate, KvzapOptions opt);
  ~KvzapPruner() override;
  KvzapPruner(const KvzapPruner&) = delete;
  KvzapPruner& operator=(const KvzapPruner&) = delete;

  const KvzapOptions& options() const { return opt_; }
  void set_threshold(float tau) { opt_.threshold = tau; }
  void protect_prefix(int64_t n_pos) { protect_below_ = n_pos; }

  // Session::forward in batches of n_batch with a prune() after each batch.
  void forward(std::span<const int32_t> tokens, LogitsMode mode, std::vector<float>* logits, int64_t n_batch = 512);
  // Decides every row that has left the window; returns the rows evicted.
  int64_t prune();

  void begin_query();
  void end_query();  // after Session::restore to the checkpoint taken at begin_query()

  // Forget all rows (after Session::reset()).
  void reset();
  const KvzapStats& stats() const { return stats_; }
  // Predicted score of row `slot` of head (il, ih) (tests, reports).
  float score(int il, int ih, int64_t slot) const;

  void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) override {}
  void on_attn_input(int il, const float* h, int64_t n, const KvCache& cache, ThreadPool& pool) override;

 private:
  struct HeadState {
    std::vector<float> score;     // [rows] parallel to the head's rows
    std::vector<uint8_t> kept;    // [rows] 1: decided and kept
    int64_t first_open = 0;       // rows before it are all decided
  };
  HeadState& head(int il, int ih) { return heads_[static_cast<size_t>(il) * n_head_kv_ + ih]; }
  void sync(int il, int ih);

  Session& session_;
  const KvzapModel& surrogate_;
  KvzapOptions opt_;
  int n_head_kv_;
  std::vector<HeadState> heads_;
  std::vector<float> out_, scratch_;  // [n][n_head_kv]; surrogate hidden
  std::vector<uint8_t> keep_;
  int64_t protect_below_ = 0;
  int64_t query_floor_ = -1;  // inside begin_query(): rows at positions below it are frozen
  KvzapStats stats_;
};

// Multiply-adds per token of the model's weight matrices (q, k, v, o, the FFN's three and
// the output head); attention over the cache (context-length dependent) is not included.
int64_t model_matmul_macs_per_token(const HParams& hp);

// Resolves the surrogate folder: `dir` when given; else <cache>/kvzap/<model stem>-mlp,
// falling back to -linear. Throws kvz::Error naming the paths tried and `kvzip train-kvzap`.
std::string kvzap_default_dir(const std::string& dir, const std::string& model_path, const std::string& cache_root);

}  // namespace kvz

// Compression methods ("presses") behind one interface. A press turns a prefilled context,
// and in query-aware mode the question, into HeadScores [layer][KV head][context token]
// (higher = keep). Pruning, budgets and the compressed cache are shared (kv/policy,
// KvzipContext), so every method competes under the same budget and really frees memory.
//
// Adding a method: one file presses/<name>.cpp (paper link + the equation implemented) and
// one line in presses/registry.cpp (name, description, parameters, factory). See STYLE.md.
//
// Front ends resolve a method by name only:
//   const MethodInfo& mi = method_info(name);              // description, params, default level
//   auto press = make_press(name, parse_press_params("window=32"));
//   SelectOptions so; so.ratio = r; so.level = mi.level;   // or any level, e.g. adakv
//   ctx.compress(*press, so);                              // ctx.compress(*press, so, question): query-aware
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kv/policy.h"
#include "kv/presses/kvzip.h"
#include "cache/scores.h"
#include "model/session.h"

namespace kvz {

// What a press sees. The session's cache holds exactly [sys | ctx] rows in every head of
// every global layer, unpruned, and n_pos() == n_sys + n_ctx; a press must leave it that
// way (observe_rows below does). A sliding-window layer (Gemma 3's local layers) holds only
// its recent rows: presses leave its scores at 0 (it is never evicted) and must not read
// its rows as context rows; observe_rows passes observers the global layers only. Rows are absolute indices into that sequence; scores cover the ctx rows only
// (the system prompt is always kept, kvzip-spec §4).
struct PressInput {
  Session& session;
  int64_t n_sys = 0;
  const std::vector<int32_t>& sys_ids;
  const std::vector<int32_t>& ctx_ids;
  // Query-aware mode: the question exactly as the query will feed it (KvzipContext::
  // question_ids). Empty: query-agnostic, the scores must serve any later question.
  const std::vector<int32_t>& question_ids;
  const KvzipRepeatPrompt& repeat;  // KVzip's reconstruction prompt pieces
  std::function<void(int64_t, int64_t)> progress;

  int64_t n_ctx() const { return static_cast<int64_t>(ctx_ids.size()); }
  int64_t n_full() const { return n_sys + n_ctx(); }
  // The observed sequence: [sys | ctx | question]; its length.
  int64_t n_seq() const { return n_full() + static_cast<int64_t>(question_ids.size()); }
  int32_t token(int64_t row) const;
};

// A layer observer that also learns where its query rows sit: row0 is the absolute row of
// the batch's first query (all heads have equal length while a press observes).
class RowObserver : public LayerObserver {
 public:
  void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) final {
    on_rows(il, q, cache.seg(il, 0).len - n, n, cache, pool);
  }
  // q: [n][n_head * d_head] post-RoPE queries of rows row0 .. row0+n-1.
  virtual void on_rows(int il, const float* q, int64_t row0, int64_t n, const KvCache& cache, ThreadPool& pool) = 0;
};

// Re-runs rows [from, n_seq) of the observed sequence with `obs` installed (the question
// rows are appended for the duration), then restores the cache to [sys | ctx]. Rows below
// `from` are not recomputed; re-running a row reproduces its K/V (same inputs, same
// positions). Cost: the forward pass of n_seq - from tokens.
void observe_rows(PressInput& in, int64_t from, RowObserver& obs);

// Softmax attention probabilities of query rows over one head's keys, fp32:
// p[i][j] = softmax_j(scale * q_i . k_j) over j < limit[i], 0 for j >= limit[i].
// keys: [n_keys][d] f32. p: [n_rows][n_keys].
void attention_probs(const float* q, int64_t q_stride, int n_rows, const int64_t* limit, const float* keys,
                     int64_t n_keys, int d, float scale, float* p);

// Accumulates, per (layer, KV head), the softmax attention that the observed query rows
// pay to every key row, summed over the rows and the G query heads of the group (causal:
// row r sees keys [0, r]). Used by SnapKV / PyramidKV (window rows), TOVA (last row) and
// H2O (all rows). Cost: the attention of the observed rows, fp32, O(rows * n_seq * d).
class AttentionSumObserver final : public RowObserver {
 public:
  AttentionSumObserver(const HParams& hp, int64_t n_seq);
  void on_rows(int il, const float* q, int64_t row0, int64_t n, const KvCache& cache, ThreadPool& pool) override;
  // [n_seq] sums for (il, ih); columns past the last observed row's limit stay 0.
  const double* head(int il, int ih) const { return sums_.data() + (static_cast<size_t>(il) * hp_.n_head_kv + ih) * n_seq_; }
  int64_t rows_seen(int il) const { return rows_[il]; }

 private:
  const HParams& hp_;
  int64_t n_seq_;
  std::vector<double> sums_;   // [L][H][n_seq]
  std::vector<int64_t> rows_;  // [L] observed rows per layer
  std::vector<float> keys_;    // [H][len][d] f32 keys of the current layer
  // Slices per KV head: a fixed partition of the row blocks (never the thread count), so
  // the sums are the same bitwise at any number of threads. 4 balance 2-4 threads over
  // SmolLM2's 3 heads (12 slices) at the cost of 4 partial [len] sums per head.
  static constexpr int kSumSlices = 4;
  std::vector<double> part_;   // [H][kSumSlices][len] partial sums per slice
};

// A declared parameter: one declaration drives parsing, `kvzip methods` and defaults.
struct PressParam {
  enum Kind { Int, Real, Text };
  std::string name;
  Kind kind = Real;
  double def = 0;            // Int / Real
  double min = 0, max = 0;   // inclusive range (Int / Real)
  std::string text_def;      // Text (e.g. a file path; "" = unset)
  std::string help;
};

// Parameter values for one press: numbers by name (and text values such as a path).
class PressParams {
 public:
  double num(const std::string& name) const;
  int64_t integer(const std::string& name) const { return static_cast<int64_t>(num(name)); }
  const std::string& text(const std::string& name) const;
  void set_num(const std::string& name, double v) { nums_[name] = v; }
  void set_text(const std::string& name, std::string v) { texts_[name] = std::move(v); }
  const std::map<std::string, double>& nums() const { return nums_; }
  const std::map<std::string, std::string>& texts() const { return texts_; }

 private:
  std::map<std::string, double> nums_;
  std::map<std::string, std::string> texts_;
};

class Press {
 public:
  virtual ~Press() = default;
  // Scores of every context token: [n_layer][n_head_kv][n_ctx], higher = keep.
  virtual HeadScores score(PressInput& in) = 0;
  // Per-layer kept fractions whose mean is `ratio` (PyramidKV); empty = the same for all.
  virtual std::vector<double> layer_ratios(int n_layer, int64_t n_ctx, double ratio) const { return {}; }
  // Whether the scores depend on the question (query-aware mode makes a difference).
  virtual bool uses_question() const { return false; }
  // Positions past the context that score() needs at least, for a context of n_ctx tokens
  // (repeat_overhead: kvzip_repeat_overhead of the context's prompt). 0 for methods that
  // only look at rows already in the cache; KVzip's repeat pass: kvzip_min_positions_after.
  // Query-aware scoring adds the question's ids on top.
  virtual int64_t positions_after_context(int64_t n_ctx, int64_t repeat_overhead) const { return 0; }
};

// One registry entry.
struct MethodInfo {
  std::string name;
  std::string description;  // one line
  std::vector<PressParam> params;
  PruneLevel level;          // default selection: what the method's paper / kvpress does
  std::function<std::unique_ptr<Press>(const PressParams&)> make;
};

// Every method, in display order (presses/registry.cpp).
const std::vector<MethodInfo>& press_registry();
const MethodInfo& method_info(const std::string& name);  // throws kvz::Error listing the names

// Builds a press from "key=value" pairs; unknown keys, bad numbers and out-of-range values
// throw kvz::Error. Missing keys take their declared defaults.
std::unique_ptr<Press> make_press(const std::string& name, const std::map<std::string, std::string>& params = {});
// "window=32,kernel=7" -> {{"window","32"},{"kernel","7"}}; empty string -> {}.
std::map<std::string, std::string> parse_press_params(const std::string& s);
// Resolved values (defaults filled in) for `name`, for reports and bench headers.
PressParams resolve_press_params(const std::string& name, const std::map<std::string, std::string>& params);

}  // namespace kvz

// A long context loaded once, compressed once, asked many questions: the C++ counterpart of
// the reference's ModelKVzip (kvzip-spec §2): prefill(context) -> score() -> prune(ratio,
// level) -> query(q, update_cache) many times.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/context_store.h"
#include "kv/kvzip_template.h"
#include "kv/policy.h"
#include "kv/press.h"
#include "kv/presses/kvzip.h"
#include "cache/scores.h"
#include "model/generate.h"
#include "model/session.h"

namespace kvz {

struct PruneReport {
  double ratio_requested = 1.0;
  double ratio_true = 1.0;  // kept / total context pairs, as realised
  size_t kv_bytes_before = 0, kv_bytes_after = 0;
};

struct QueryResult {
  std::string answer;           // decoded, without the end-of-turn token
  std::vector<int32_t> answer_ids;
  int32_t end_id = -1;          // the end-of-generation token that ended the answer, or -1
  GenerateStats stats;          // stats.prefill_* is the query's own prefill
};

struct ContextOptions {
  int64_t n_ctx_max = 0;   // 0: the model's training context
  std::string task = "qa"; // "qa" or "gsm..." (prompt instruction)
  bool think_block = false;
  // Keep an unpruned copy of the context's KV so prune() can be called again at another
  // ratio without re-prefilling (evaluation sweeps). Costs the full cache's memory.
  bool retain_full = false;
  // Storage of the cache rows (f16 as llama.cpp; q8_0 halves KV memory and decode traffic).
  KvType kv_type = KvType::F16;
  // Prefill batch (tokens per forward call; progress is reported after each).
  int64_t n_batch = 512;
  KvzipScoreOptions scoring;
};

// The template the model's chat family gives KVzip (kvzip_template.h), and the ids a
// question is fed as after a context: enc("\n\n" + question) ++ postfix. Free functions, so
// that a context restored from a file (the server's) is queried exactly as KvzipContext::query.
KvzipTemplate model_kvzip_template(const Model& m, const std::string& task = "qa", bool think_block = false);
std::vector<int32_t> kvzip_question_ids(const Model& m, const KvzipTemplate& t, const std::string& question);
// The repeat prompt pieces KVzip feeds after a context under template t (kvzip-spec §2.2).
KvzipRepeatPrompt kvzip_repeat_prompt(const Model& m, const KvzipTemplate& t);
// The context-length rule: positions a context of n_sys + n_ctx tokens needs to be compressed
// with `press`: the context itself plus what the press's scoring runs after it and rolls
// back (Press::positions_after_context): KVzip's repeat prompt and one chunk, the chunk
// shrinking near the window down to kKvzipMinChunk (kvzip_fit_chunk); nothing for methods
// without a repeat pass. Questions come after scoring, so they need room of their own
// (the longest question plus the answer), not on top of this.
int64_t compress_positions_needed(int64_t n_sys, int64_t n_ctx, const Press& press, const KvzipRepeatPrompt& rp);

// The window rule every front end checks before a prefill (the CLI's compress and ask, the
// eval runner), so that nothing is prefilled only to fail later: the context has tokens and
// fits the window with the system prompt; each scoring pass fits (`scoring`: the positions
// each pass needs, from KvzipContext::positions_needed); the answers fit (`answer_room`
// positions after the context: the longest question and the answer tokens; 0: not checked).
// The first check that fails, with its numbers; each front end words its own message.
struct WindowFit {
  enum class Fails { nothing, no_tokens, context, scoring, answers };
  Fails fails = Fails::nothing;
  int64_t n_ctx = 0, n_sys = 0, window = 0;
  int64_t need = 0;  // scoring: the failing pass's positions; answers: answer_room
  size_t pass = 0;   // scoring: the failing pass's index in `scoring`
  bool ok() const { return fails == Fails::nothing; }
};
WindowFit check_window(int64_t n_sys, int64_t n_ctx, int64_t window, std::span<const int64_t> scoring,
                       int64_t answer_room);

class KvzipContext {
 public:
  KvzipContext(const Model& model, ThreadPool& pool, ContextOptions opt = {});

  // Encodes prefix + context (pieces tokenized separately) and prefills. Replaces any
  // previous context. Refuses a context that does not fit the window; what scoring needs
  // beyond it is checked by score() (front ends check first: positions_needed).
  void prefill(const std::string& context, const std::function<void(int64_t, int64_t)>& progress = {});
  void prefill_ids(const std::vector<int32_t>& ctx_ids, const std::function<void(int64_t, int64_t)>& progress = {});

  // KVzip scores of the context pairs; must run before any prune or query (with
  // retain_full it may run again after a prune: it restores the full cache first).
  const HeadScores& score(const std::function<void(int64_t, int64_t)>& progress = {});
  // Scores of any registered method (kv/press.h). question empty: query-agnostic (the
  // scores serve every later question); otherwise query-aware: the press sees the question
  // (as query() feeds it) after the context. Needs the full cache: after a prune this
  // restores it, which requires retain_full (query-aware: one rebuild per question).
  const HeadScores& score(Press& press, const std::string& question = "",
                          const std::function<void(int64_t, int64_t)>& progress = {});
  // score(press, question), then prune with `o`; the press's per-layer budgets (PyramidKV)
  // fill o.layer_ratios when it has none.
  PruneReport compress(Press& press, SelectOptions o, const std::string& question = "",
                       const std::function<void(int64_t, int64_t)>& progress = {});
  // The ids query() feeds for `question`: enc("\n\n" + question) ++ postfix.
  std::vector<int32_t> question_ids(const std::string& question) const;
  // Scores from elsewhere (another press, a saved file); shape must match.
  void set_scores(HeadScores s);
  const HeadScores& scores() const { return scores_; }
  bool has_scores() const { return !scores_.v.empty(); }

  // compress_positions_needed for a context of n_ctx tokens under this context's template
  // (press null: KVzip with ContextOptions::scoring, what score() runs).
  int64_t positions_needed(int64_t n_ctx, const Press* press = nullptr) const;
  int64_t n_ctx_max() const { return session_.n_ctx_max(); }

  // Evicts the least important context pairs; memory of evicted rows is freed. Without
  // retain_full it can run once; with it, each call starts again from the full cache.
  // Only global-attention layers are pruned, and the ratio is over their pairs; sliding-window
  // layers (Gemma 3) keep their rolling window (kvzip-spec §3.2, §9.12).
  PruneReport prune(const SelectOptions& o);
  // prune(o) with the press's per-layer budgets (PyramidKV) in o.layer_ratios when it has
  // none: what compress() does after scoring, for scores already there (a loaded file).
  PruneReport prune(const Press& press, SelectOptions o);
  PruneReport prune_heads(const std::vector<float>& head_scores, double ratio);
  // Prunes an already pruned context further, from its scores, within the pairs it still
  // holds (a context loaded from a file, whose full cache is gone): the selection runs on the
  // scores with the evicted pairs ranked last, and keeps only pairs still present. At the
  // level the context was pruned with, for the nested levels (pair, pair-uniform, head: a
  // smaller budget's top set lies inside a larger one's), this is exactly what pruning the
  // full cache to o.ratio gives; for adakv, per-layer budgets or another level it is the
  // best selection among the kept pairs, which may differ.
  // o.ratio must not exceed ratio_kept(). An unpruned context is simply pruned.
  // press: as prune(press, o), for its per-layer budgets.
  PruneReport reprune(SelectOptions o, const Press* press = nullptr);
  // [n_layer][n_head_kv][n_ctx]: 1 where the context pair's row is still in the cache (rows
  // carry their positions; context token t sits at position n_sys + t).
  std::vector<uint8_t> kept_mask() const;
  // Kept fraction of the evictable layers' context pairs, as PruneReport::ratio_true.
  double ratio_kept() const;
  // Stores every cache row (and the retained full cache) as `t` instead. Approximate
  // against a context computed in `t` from the start: there, later context rows were
  // computed against already converted earlier rows.
  void convert_kv(KvType t);

  // Answers a query from the (compressed) cache. update_cache=false restores the context
  // exactly afterwards; true keeps the turn (query + answer) in the cache.
  QueryResult query(const std::string& question, const GenerateParams& p, bool update_cache,
                    const std::function<bool(int32_t)>& on_token = {});
  // As query(), from ids the caller made (question_ids(), or any continuation). A query
  // that throws (a cancelled on_token included) leaves the context as it was.
  QueryResult query_ids(const std::vector<int32_t>& ids, const GenerateParams& p, bool update_cache,
                        const std::function<bool(int32_t)>& on_token = {},
                        const std::function<void(int64_t, int64_t)>& prefill_progress = {});

  // Teacher-forced next-token log-probabilities of `targets` after the query, from the
  // current (possibly compressed) cache, without generating; the cache and position are
  // restored afterwards, as with update_cache=false. Returns [targets.size()][n_vocab]
  // log-softmax rows, f32: row i is the distribution that predicts targets[i] (row 0 comes
  // after the query's last token). Used for fidelity metrics (kvzip-spec §6.2, test.py).
  std::vector<float> answer_logprobs(const std::string& question, const std::vector<int32_t>& targets);

  // Persist / restore the context (its current, possibly pruned cache, ids and scores)
  // to a versioned, checksummed, zstd-compressed file (io/context_store.h). Loading a file
  // made for another model or a corrupt file throws and leaves this context unchanged.
  // full_cache: write the retained unpruned cache (retain_full) with the scores instead, so
  // a later reader can prune it to any ratio (the file is as large as the full cache).
  void save(const std::string& path, const std::string& info = "", bool full_cache = false) const;
  // What save() writes besides the cache: ids, position counter, scores.
  StoredContext stored() const;
  void load(const std::string& path);
  // Takes a context from elsewhere (a decoded file, a composition of several: kv/compose.h)
  // as load() does; `what` names it in errors. Checks the system prompt and the window.
  void assign(StoredContext meta, KvCache cache, const std::string& what);

  Session& session() { return session_; }
  const Session& session() const { return session_; }
  const Model& model() const { return model_; }
  int64_t n_sys() const { return n_sys_; }
  int64_t n_ctx() const { return static_cast<int64_t>(ctx_ids_.size()); }
  const std::vector<int32_t>& ctx_ids() const { return ctx_ids_; }
  const KvzipTemplate& tmpl() const { return tmpl_; }
  size_t kv_bytes() const { return session_.cache().bytes_used(); }
  bool pruned() const { return pruned_; }
  // The unpruned cache: the retained copy once pruned with retain_full (stable while a
  // re-prune scores), else the session's before any prune (not during a score(): scoring
  // appends rows to it); throws when it was pruned without retain_full.
  const KvCache& full_cache() const;
  bool has_full() const { return full_ != nullptr; }
  // The caller evicted context rows itself (KvzapPruner while prefilling): from now on the
  // context counts as pruned (it cannot be scored again, and a saved file says so).
  void note_pruned() { pruned_ = true; }

 private:
  PruneReport apply_mask(const KeepMask& m, double ratio);
  void restore_full();  // back to the unpruned context (retain_full), or throw
  void fill_layer_ratios(const Press& press, SelectOptions& o) const;
  std::vector<uint8_t> evictable_layers() const;  // [n_layer]: all but sliding-window layers
  std::vector<int32_t> enc(const std::string& s) const;

  const Model& model_;
  ContextOptions opt_;
  Session session_;
  KvzipTemplate tmpl_;
  std::vector<int32_t> sys_ids_, ctx_ids_, postfix_ids_;
  int64_t n_sys_ = 0;
  HeadScores scores_;
  std::unique_ptr<KvCache> full_;  // retain_full: the unpruned context
  bool pruned_ = false;
};

}  // namespace kvz

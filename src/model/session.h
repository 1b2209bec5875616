// A session: one KV cache, one position counter and the scratch buffers of the forward
// pass, over a shared immutable Model. Several sessions can use one Model side by side;
// a session itself is used by one caller at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "cache/head_cache.h"
#include "model/blocks.h"
#include "model/model.h"

namespace kvz {

enum class LogitsMode { None, Last, All };

// A hook into the forward pass, for scorers that need the attention queries (KVzip's
// reconstruction pass, H2O, SnapKV, ...). Called in every layer after the batch's K/V
// rows were appended to every head and before attention runs.
class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  // q: [n][n_head * d_head] post-RoPE (post-QK-norm) queries of the batch, f32.
  virtual void on_layer(int il, const float* q, int64_t n, const KvCache& cache, ThreadPool& pool) = 0;
  // h: [n][n_embd] the attention input of the batch (the residual stream after the layer's
  // input RMSNorm, before the q/k/v projections; KVzap's surrogate input). Called before
  // the batch's K/V rows are appended.
  virtual void on_attn_input(int il, const float* h, int64_t n, const KvCache& cache, ThreadPool& pool) {}

  // Optional: the attention's own logits. When captures_logits(il), every work item of the
  // layer's attention (a block of tokens t0 .. t0 + nt - 1, rows t * G + g for the G query
  // heads of KV head ih, on thread ith) asks logit_capture for key ranges and a buffer
  // (kernels/attention.h LogitCapture), and on_logits gets them once the item is done, on
  // the same thread. Such a layer never takes the split-K decode path. after_attention(il)
  // follows the layer's attention, on the calling thread.
  virtual bool captures_logits(int il) const { return false; }
  virtual void logit_capture(int il, int ih, int ith, int64_t t0, int64_t nt, LogitCapture& cap) {}
  virtual void on_logits(int il, int ih, int ith, int64_t t0, int64_t nt, const LogitCapture& cap) {}
  virtual void after_attention(int il, ThreadPool& pool) {}
  // A batch run without logits (LogitsMode::None) may stop after this layer's attention when
  // the observer is all that reads it (KVzip's repeat pass: its last scored layer); -1 runs
  // every layer. The cache still gets K and V rows only up to that layer.
  virtual int last_layer() const { return -1; }
};

// The activations of one forward batch, [n][...] f32, sized for the largest batch seen.
struct ForwardScratch {
  int64_t n = 0;
  std::vector<float> x, h, q, k, v, attn, gate, up;
  std::vector<uint8_t> kq, vq;  // [n][n_kv] K/V rows in a cache's storage type
  std::vector<int32_t> pos;     // [n] RoPE position of each row
  RopeTable rope, rope_swa;     // the sliding-window layers' table only when the model has them
  void ensure(const HParams& hp, int64_t n_rows, size_t kv_row_bytes);
};

class Session {
 public:
  // pool is shared and must outlive the session; n_ctx_max bounds positions (0: model's).
  // kv_type: storage of the cache rows (f16 default; q8_0 halves KV memory and traffic).
  Session(const Model& model, ThreadPool& pool, int64_t n_ctx_max = 0, KvType kv_type = KvType::F16);

  const Model& model() const { return model_; }
  KvCache& cache() { return cache_; }
  const KvCache& cache() const { return cache_; }

  // Next RoPE position (global across heads; never decreases on eviction).
  int64_t n_pos() const { return n_pos_; }
  void set_n_pos(int64_t p) { n_pos_ = p; }
  int64_t n_ctx_max() const { return n_ctx_max_; }

  // Runs `tokens` at positions n_pos().. and appends their K/V to every head. Logits are
  // [n_vocab] (Last) or [n_tokens][n_vocab] (All), f32. Long inputs are processed in
  // batches of at most `n_batch` tokens. Throws kvz::Error when the context would
  // exceed n_ctx_max, or on an out-of-range token id.
  void forward(std::span<const int32_t> tokens, LogitsMode mode, std::vector<float>* logits, int64_t n_batch = 512,
               const std::function<void(int64_t done, int64_t total)>& progress = {});

  // Clears the cache and the position counter.
  void reset();

  // Everything forward() changes: restore(checkpoint()) undoes any number of forward calls
  // exactly (a query with update_cache=false, a KVzip repeat pass, a benchmark repetition).
  // Costs the head lengths, plus a copy of the sliding-window layers' rows (at most about
  // two windows each), which forward() may drop from the front.
  struct Checkpoint {
    int64_t n_pos = 0;
    KvCache::Snapshot cache;
  };
  Checkpoint checkpoint() const;
  void restore(const Checkpoint& c);

  // Sliding-window layers: drops now every row no later query can see (positions <=
  // n_pos - n_swa) and frees its memory. forward() does this lazily; call it where memory
  // is measured or given back (after KVzip pruning). Attention results do not change.
  void shrink_windows();

  // One decode step of several sessions at once: row i is tokens[i] of sessions[i], at that
  // session's next position. Every weight matrix is read once for all rows; each row
  // attends over its own session's cache. logits: [n][n_vocab] f32. The sessions must share
  // one model and pool and be distinct; none may have an observer. Each session's position
  // advances by one, exactly as forward() of that one token would (the same arithmetic per
  // row, so results match forward() up to the kernels' batch-shape rounding).
  static void forward_step(std::span<Session* const> sessions, std::span<const int32_t> tokens, float* logits,
                           ForwardScratch& scratch);

  // Installs (or with nullptr removes) a layer observer; not owned.
  void set_observer(LayerObserver* o) { observer_ = o; }
  ThreadPool& pool() { return pool_; }

 private:
  void forward_batch(const int32_t* tokens, int64_t n, LogitsMode mode, float* logits);
  void attention(int il, int64_t n, const std::vector<int64_t>& base_len);
  bool attention_split(int il, int64_t n, const std::vector<int64_t>& base_len);
  int64_t window_start(const HeadSegment& s, int64_t visible, int32_t pos) const;
  void trim_windows();
  void append_rows(int il, int64_t n, const uint8_t* kq, const uint8_t* vq, const int32_t* pos,
                   std::vector<int64_t>& base_len);

  const Model& model_;
  ThreadPool& pool_;
  KvCache cache_;
  int64_t n_pos_ = 0;
  int64_t n_ctx_max_ = 0;
  LayerObserver* observer_ = nullptr;

  ForwardScratch sc_;  // no allocation in steady-state decode
  // Split-K decode attention (attention_split): work items, per-part outputs and lse.
  struct SplitItem {
    int ih;
    int64_t lo, hi;
  };
  std::vector<SplitItem> split_items_;
  std::vector<int64_t> split_first_;
  std::vector<float> split_out_, split_lse_;
};

}  // namespace kvz

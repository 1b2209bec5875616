// The server's compute: one engine thread owns the thread pool and runs every forward pass.
// Generation requests occupy up to `parallel` slots; each slot has its own Session whose
// cache starts as a copy of the stored context's rows (copy-on-write: the shared context
// is never written). Slots that are decoding advance together: one Session::forward_step
// per step reads every weight matrix once for all of them, each row attending over its own
// per-head cache. A new request joins between steps; its prompt is prefilled in chunks of
// `prefill_chunk` tokens, one chunk between two decode steps. A context upload runs on the
// same thread, and between its prefill batches and scoring chunks the engine serves the
// slots, so an upload stalls decoding clients for at most one batch or scoring chunk.
// Requests beyond `parallel` wait in arrival order. No HTTP here.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "kv/kvzap_model.h"
#include "kv/kvzip_context.h"
#include "model/model.h"
#include "model/session.h"
#include "model/sampler.h"
#include "server/contexts.h"
#include "server/metrics.h"
#include "server/request.h"

namespace kvz::server {

// One generation: filled by the HTTP side, driven by the engine, read back through events.
class GenJob {
 public:
  // Inputs, fixed before submit().
  std::vector<int32_t> prompt;                // fed after the base context (or an empty cache)
  std::shared_ptr<const ReadyContext> base;   // null: no stored context
  // Non-null (full_cache): the slot starts from this context's retained unpruned cache
  // instead of base's compressed rows (read on the engine thread only, like entry->full).
  std::shared_ptr<const KvzipContext> full;
  std::string base_id;
  GenRequest req;

  struct Event {
    std::string text;           // new text (may be empty)
    bool done = false;
    std::string finish_reason;  // "stop" | "length" | "cancelled" (done)
    std::string error;          // non-empty: the request failed (done)
    int error_status = 500;
  };
  // Waits up to `ms` for events; returns them (empty on timeout).
  std::vector<Event> wait(int ms);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Results, valid once an event with done arrives.
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double prefill_s = 0, decode_s = 0;
  std::string new_context_id;  // update_cache: the derived context

  // Engine side.
  void push(Event e);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

// One context upload or re-prune.
struct CompressJob {
  std::shared_ptr<ContextEntry> entry;
  ContextRequest req;     // upload
  std::vector<int32_t> ids;  // upload: the tokenized text
  std::shared_ptr<const KvzapModel> surrogate;  // upload with req.threshold: KVzap's surrogate
  bool recompress = false;
  RecompressRequest re;   // recompress
};

struct EngineOptions {
  int threads = 0;          // 0: all cores
  int parallel = 4;         // decode slots
  int64_t n_ctx = 0;        // 0: the model's training context
  int64_t prefill_chunk = 256;
};

class Engine {
 public:
  Engine(const Model& model, const EngineOptions& opt, ContextRegistry& contexts, Metrics& metrics,
         ContextRegistry::Log log);
  ~Engine();  // stop(false)

  void submit(std::shared_ptr<GenJob> job);
  void submit(std::shared_ptr<CompressJob> job);
  // Stops taking work. drain: finish every running and queued generation first (uploads
  // in progress finish too); otherwise cancel them. Returns when the thread has ended.
  void stop(bool drain);

  int64_t n_ctx() const { return n_ctx_; }
  int parallel() const { return opt_.parallel; }
  size_t queue_depth() const;
  int active_slots() const { return active_.load(); }

 private:
  struct Slot;
  void run();
  // Admits waiting requests, prefills one chunk, runs one decode step.
  void serve_slots();
  void admit(std::shared_ptr<GenJob> job);
  void finish(Slot& s, const std::string& reason);
  void fail_slot(Slot& s, const std::string& error, int status);
  void return_free_memory();
  void run_compress(CompressJob& job);
  // What an upload or a re-prune produced, for publish().
  struct Compressed {
    std::string method, level;
    std::optional<double> ratio;  // none: a threshold upload
    PruneReport pr;
    double prefill_s = 0, score_s = 0;
  };
  // The ready context: its rows cloned, its description, the store write (contexts_.publish).
  void publish(CompressJob& job, const std::shared_ptr<KvzipContext>& ctx, const Compressed& c);

  const Model& model_;
  EngineOptions opt_;
  ContextRegistry& contexts_;
  Metrics& metrics_;
  ContextRegistry::Log log_;
  int64_t n_ctx_;
  ThreadPool pool_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GenJob>> waiting_;
  std::deque<std::shared_ptr<CompressJob>> uploads_;
  bool stopping_ = false, drain_ = false;

  std::vector<std::unique_ptr<Slot>> slots_;  // engine thread only
  std::atomic<int> active_{0};
  ForwardScratch step_scratch_;     // forward_step's activations (engine thread only)
  std::vector<float> step_logits_;  // [slots][n_vocab]
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace kvz::server

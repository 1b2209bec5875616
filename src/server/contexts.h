// The server's compressed contexts: every uploaded document's state, its ready cache when
// in memory, and its bytes in the context store (store.h). A ready context is immutable and
// shared by reference (std::shared_ptr<const ReadyContext>): any number of requests read
// it at once, a re-prune or a continued conversation publishes a new object, and readers
// of the old one keep it until they finish. Thread-safe.
//
// Persistence: every ready context is written to the store in the versioned, checksummed
// context format (io/context_store.h), atomically, before it is reported ready; its info
// block holds the JSON that GET /v1/contexts/{id} shows. At start the store is listed
// (header and info only); a context made for another model is skipped with a log line and
// left in the store. The cache is fetched, fully verified, on first use. Contexts not in use
// are dropped from memory least-recently-used first when the held KV bytes pass the memory
// budget (still in the store).
//
// A shared store (Redis: several replicas) is the truth and this registry a cache of it:
// looking up an id asks the store for its state (so an upload another replica compresses
// shows its progress here, a context deleted elsewhere is dropped from memory here, and one
// re-pruned elsewhere is fetched again), except for the uploads this replica is compressing
// itself (`owned`: it holds their claim, renewed by a keeper thread, and writes their
// progress to the store). The directory store is private to this process: the registry's
// own map is the truth, as it always was.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/head_cache.h"
#include "io/context_store.h"
#include "io/model_identity.h"
#include "server/store.h"

namespace kvz {
class KvzipContext;
}

namespace kvz::server {

enum class CtxState { Queued, Prefilling, Scoring, Ready, Failed };
const char* ctx_state_name(CtxState s);

// A ready context as the server holds it. The scores stay in the stored bytes only (1.5 MB
// for 4K tokens of SmolLM2, 5 % of its KV at ratio 0.3): answers, views, composition and
// re-pruning (from the retained full context) never read them here, and a context derived
// with update_cache is stored without them.
struct ReadyContext {
  StoredContext meta;  // ids, position counter, info JSON text (scores left empty)
  KvCache cache;       // the (compressed) rows
  size_t bytes() const { return cache.bytes_allocated(); }
};

struct ContextEntry {
  std::string id;
  mutable std::mutex mu;  // guards everything below
  CtxState state = CtxState::Queued;
  double progress = 0;   // of the current state, [0, 1]
  std::string error;     // Failed
  nlohmann::json info;   // the public description (contexts.cpp: describe)
  std::shared_ptr<const ReadyContext> ready;  // null while not in memory
  bool on_disk = false;   // in the store
  bool deleted = false;
  bool owned = false;     // this process holds the store's claim (compressing or re-pruning it)
  std::string version;    // the store's version of the bytes `ready` was decoded from
  std::string abandon;    // non-empty: the engine gives up this upload with this message
  uint64_t last_use = 0;
  // retain_full: the unpruned context, for POST .../compress (engine thread only).
  std::shared_ptr<KvzipContext> full;
};

class ContextRegistry {
 public:
  using Log = std::function<void(const std::string&)>;
  ContextRegistry(ModelIdentity id, std::unique_ptr<ContextStore> store, size_t mem_budget, Log log);
  ~ContextRegistry();

  // Lists the contexts of the store (a directory is created when absent).
  void scan();

  std::string store_name() const { return store_->name(); }
  bool shared() const { return shared_; }
  size_t mem_budget() const { return mem_budget_; }

  // A new entry in state Queued with a fresh id, claimed in the store.
  std::shared_ptr<ContextEntry> create(nlohmann::json info);
  // nullptr when unknown (or deleted).
  std::shared_ptr<ContextEntry> find(const std::string& id);
  std::vector<std::shared_ptr<ContextEntry>> list();
  // Removes from memory and the store (every replica's store); false when unknown. A context
  // being compressed is marked deleted and its result discarded when the engine finishes it.
  bool remove(const std::string& id);
  // A re-prune of a ready context claims it first: ApiError 409 when another replica is
  // re-pruning it. end_recompress: it stays ready (with last_error when the re-prune failed)
  // and the claim is released.
  void claim_for_recompress(const std::shared_ptr<ContextEntry>& e);
  void end_recompress(const std::shared_ptr<ContextEntry>& e, const std::string& error);

  // The ready cache of a context, fetched from the store when not in memory. ApiError 404 for an
  // unknown id, 409 when it is not ready (state and progress in the message) or failed.
  std::shared_ptr<const ReadyContext> acquire(const std::string& id);

  // Persists `ready` atomically under the entry's id, then marks it Ready with `info`.
  // Throws kvz::Error when it cannot be written (the engine then marks the entry Failed).
  void publish(const std::shared_ptr<ContextEntry>& e, std::shared_ptr<ReadyContext> ready, nlohmann::json info);
  void set_state(const std::shared_ptr<ContextEntry>& e, CtxState s, double progress);
  // Failed, here and in the store (the claim is released).
  void set_failed(const std::shared_ptr<ContextEntry>& e, const std::string& error);

  // KV bytes of the ready contexts held in memory.
  size_t bytes_held() const;
  size_t n_held() const;
  // The public JSON of an entry: info + state, progress, error.
  static nlohmann::json describe(const ContextEntry& e);

 private:
  void evict_over_budget();  // mu_ held
  std::shared_ptr<ContextEntry> make_entry(const StoreRecord& r) const;
  void apply(ContextEntry& e, const StoreRecord& r) const;  // e.mu held
  // The store's record, merged into the map (inserted when new); nullptr for another model's.
  std::shared_ptr<ContextEntry> merge(const StoreRecord& r);
  // Gone from the store: out of the map and memory, marked deleted.
  void forget(const std::shared_ptr<ContextEntry>& e);
  // A claim renewal said the context is gone (-1) or the claim lost (0).
  void on_renew(const std::shared_ptr<ContextEntry>& e, int r);
  void keep_claims();  // the keeper thread

  ModelIdentity id_;
  std::unique_ptr<ContextStore> store_;
  bool shared_;
  size_t mem_budget_;
  Log log_;
  mutable std::mutex mu_;  // guards the map and the LRU clock; entry fields use their own
  std::map<std::string, std::shared_ptr<ContextEntry>> entries_;
  std::atomic<uint64_t> clock_{0};
  std::mutex load_mu_;  // one load at a time (two requests for a cold context load it once)

  std::mutex keeper_mu_;
  std::condition_variable keeper_cv_;
  bool keeper_stop_ = false;
  std::thread keeper_;  // renews this replica's claims (shared stores only)
};

// "ctx-" + 16 random hex digits.
std::string new_context_id();
// Only ids of that shape are ever turned into paths or store keys.
bool valid_context_id(const std::string& id);

}  // namespace kvz::server

// The server's compressed contexts: every uploaded document's state, its ready cache when
// in memory, and its file under the context directory. A ready context is immutable and
// shared by reference (std::shared_ptr<const ReadyContext>): any number of requests read
// it at once, a re-prune or a continued conversation publishes a new object, and readers
// of the old one keep it until they finish. Thread-safe.
//
// Persistence: <dir>/<id>.kvz in the versioned, checksummed context format
// (io/context_store.h), written atomically (temporary file, fsync, rename, fsync of the
// directory) before the context is reported ready; its info block holds the JSON that
// GET /v1/contexts/{id} shows. At start every file is listed again (header and info only);
// a file made for another model is skipped with a log line and left on disk. The cache is
// loaded, fully verified, on first use. Contexts not in use are dropped from memory
// least-recently-used first when the held KV bytes pass the memory budget (still on disk).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/head_cache.h"
#include "io/context_store.h"
#include "io/model_identity.h"

namespace kvz {
class KvzipContext;
}

namespace kvz::server {

enum class CtxState { Queued, Prefilling, Scoring, Ready, Failed };
const char* ctx_state_name(CtxState s);

struct ReadyContext {
  StoredContext meta;  // ids, position counter, scores, info JSON text
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
  bool on_disk = false;
  bool deleted = false;
  uint64_t last_use = 0;
  // retain_full: the unpruned context, for POST .../compress (engine thread only).
  std::shared_ptr<KvzipContext> full;
};

class ContextRegistry {
 public:
  using Log = std::function<void(const std::string&)>;
  ContextRegistry(ModelIdentity id, std::string dir, size_t mem_budget, Log log);

  // Lists the files of the context directory (creating it when absent).
  void scan();

  const std::string& dir() const { return dir_; }
  size_t mem_budget() const { return mem_budget_; }

  // A new entry in state Queued with a fresh id.
  std::shared_ptr<ContextEntry> create(nlohmann::json info);
  // nullptr when unknown (or deleted).
  std::shared_ptr<ContextEntry> find(const std::string& id) const;
  std::vector<std::shared_ptr<ContextEntry>> list() const;
  // Removes from memory and disk; false when unknown. A context being compressed is marked
  // deleted and its result discarded when the engine finishes it.
  bool remove(const std::string& id);

  // The ready cache of a context, loaded from disk when not in memory. ApiError 404 for an
  // unknown id, 409 when it is not ready (state and progress in the message) or failed.
  std::shared_ptr<const ReadyContext> acquire(const std::string& id);

  // Persists `ready` atomically under the entry's id, then marks it Ready with `info`.
  // Throws kvz::Error when the file cannot be written (the entry is then Failed).
  void publish(const std::shared_ptr<ContextEntry>& e, std::shared_ptr<ReadyContext> ready, nlohmann::json info);
  void set_state(const std::shared_ptr<ContextEntry>& e, CtxState s, double progress);
  void set_failed(const std::shared_ptr<ContextEntry>& e, const std::string& error);

  // KV bytes of the ready contexts held in memory.
  size_t bytes_held() const;
  size_t n_held() const;
  // The public JSON of an entry: info + state, progress, error.
  static nlohmann::json describe(const ContextEntry& e);

 private:
  std::string path_of(const std::string& id) const;
  void evict_over_budget();  // mu_ held

  ModelIdentity id_;
  std::string dir_;
  size_t mem_budget_;
  Log log_;
  mutable std::mutex mu_;  // guards the map and the LRU clock; entry fields use their own
  std::map<std::string, std::shared_ptr<ContextEntry>> entries_;
  std::atomic<uint64_t> clock_{0};
  std::mutex load_mu_;  // one disk load at a time (two requests for a cold context load it once)
};

// "ctx-" + 16 random hex digits.
std::string new_context_id();
// Only ids of that shape are ever turned into paths.
bool valid_context_id(const std::string& id);

}  // namespace kvz::server

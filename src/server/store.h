// Where the server's contexts live: the bytes of each ready context (the versioned,
// checksummed file format of io/context_store.h, unchanged) and what other processes may
// need to know while one is being compressed. Two implementations:
//   store_dir.cpp    one file per context under a directory (--context-dir, the default);
//                    private to one server process.
//   store_redis.cpp  a Redis database (--store redis://HOST:PORT/DB), shared by several
//                    replicas: the bytes in bounded chunks, a metadata hash per context,
//                    and a claim that makes one replica the only one compressing an upload.
// The registry (contexts.h) keeps the in-memory side: which contexts are held, LRU, budget.
// Every method is thread-safe. Failures to reach the store are ApiError 503.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace kvz::server {

// One context as the store knows it.
struct StoreRecord {
  std::string id;
  std::string state = "ready";  // queued | prefilling | scoring | ready | failed
  double progress = 1;          // of the current state, [0, 1]
  std::string error;            // failed
  uint64_t fingerprint = 0;     // of the model it was made with
  std::string info;             // the public JSON (as in the file's info block)
  std::string version;          // names the bytes now published ("" in the directory store)
};

// The bytes of a stored context: in memory (a shared store's), or a file mapped where it is
// (the directory store's: no copy, and no fresh pages to fault in for one).
class StoreBlob {
 public:
  StoreBlob() = default;
  explicit StoreBlob(std::vector<uint8_t> bytes) : vec_(std::move(bytes)) {}
  explicit StoreBlob(MappedFile file) : map_(std::move(file)) {}
  const uint8_t* data() const { return map_.size() ? map_.data() : vec_.data(); }
  size_t size() const { return map_.size() ? map_.size() : vec_.size(); }
  std::vector<uint8_t> bytes() const { return {data(), data() + size()}; }

 private:
  std::vector<uint8_t> vec_;
  MappedFile map_;
};

class ContextStore {
 public:
  using Log = std::function<void(const std::string&)>;
  virtual ~ContextStore() = default;

  // "dir:PATH" or "redis://HOST:PORT/DB", for log lines.
  virtual std::string name() const = 0;
  // True when other processes read and change the same contexts (the registry then asks
  // the store instead of trusting its own map).
  virtual bool shared() const = 0;

  // Every context (the directory store: ready files only, header and info read).
  virtual std::vector<StoreRecord> list() = 0;
  // One context; nullopt when unknown. A shared store turns an upload whose compressing
  // replica stopped renewing its claim into `failed` here.
  virtual std::optional<StoreRecord> stat(const std::string& id) = 0;
  // The published bytes of a ready context (checked against the recorded size; the caller
  // decodes them, which verifies the checksum); *version names them. kvz::Error when absent.
  virtual StoreBlob read(const std::string& id, std::string* version) = 0;
  // Publishes the bytes of a ready context atomically: a reader sees the old bytes or the
  // whole new ones, never a part. A shared store publishes only while this process holds
  // the claim (rec.state is written as ready); false when the context was deleted or the
  // claim was lost meanwhile (nothing is then left behind). *version names the bytes.
  virtual bool write(const StoreRecord& rec, const std::vector<uint8_t>& bytes, std::string* version) = 0;
  // Removes a context everywhere; false when it was unknown.
  virtual bool remove(const std::string& id) = 0;

  // Uploads in progress. The directory store keeps none of this (one process: the
  // registry's own entry is the truth) and always succeeds.
  // Claims a new id and records it as queued; false when the id is taken.
  virtual bool begin(const StoreRecord& rec) = 0;
  // Claims an existing ready context for a re-prune; false when another process holds it.
  virtual bool claim(const std::string& id) = 0;
  // Renews this process's claim and, when state is non-empty, records state and progress.
  // 1: done; 0: the claim was lost (expired and taken); -1: the context is gone (deleted).
  virtual int renew(const std::string& id, const std::string& state, double progress) = 0;
  // Ends this process's claim: records the upload as failed with `error` (when non-empty
  // and the context is not ready) and releases the claim.
  virtual void release(const std::string& id, const std::string& error) = 0;
  // How often renew() must run while a claim is held (0: never).
  virtual int renew_interval_ms() const = 0;
};

// "dir:PATH", "redis://HOST[:PORT][/DB][?chunk=BYTES&claim_ms=MS]" (store_dir.cpp).
std::unique_ptr<ContextStore> open_context_store(const std::string& spec, ContextStore::Log log);
std::unique_ptr<ContextStore> open_dir_store(const std::string& dir, ContextStore::Log log);
std::unique_ptr<ContextStore> open_redis_store(const std::string& url, ContextStore::Log log);

}  // namespace kvz::server

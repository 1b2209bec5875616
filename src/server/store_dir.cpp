// The directory store: <dir>/<id>.kvz per ready context, written atomically (temporary
// file, fsync, rename, fsync of the directory: io/context_store.h write_file_atomic), the
// layout `kvzip serve --context-dir` has always used. One process owns the directory, so
// uploads in progress are known to that process only and claims always succeed.
#include <filesystem>
#include <mutex>

#include <fmt/format.h>

#include "core/error.h"
#include "io/context_store.h"
#include "server/contexts.h"
#include "server/store.h"

namespace kvz::server {

namespace {

namespace fs = std::filesystem;

class DirStore final : public ContextStore {
 public:
  DirStore(std::string dir, Log log) : dir_(std::move(dir)), log_(std::move(log)) {}

  std::string name() const override { return "dir:" + dir_; }
  bool shared() const override { return false; }

  std::vector<StoreRecord> list() override {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) fail("{}: cannot create the context directory: {}", dir_, ec.message());
    std::vector<StoreRecord> out;
    for (const auto& de : fs::directory_iterator(dir_, ec)) {
      const fs::path p = de.path();
      if (p.extension() == ".tmp") {  // a write interrupted by a crash: never a context
        log_(fmt::format("{}: removing an unfinished write", p.string()));
        fs::remove(p, ec);
        continue;
      }
      if (p.extension() != ".kvz" || !valid_context_id(p.stem().string())) continue;
      try {
        const ContextFileHeader h = peek_context_file(p.string());
        StoreRecord r;
        r.id = p.stem().string();
        r.fingerprint = h.fingerprint;
        r.info = h.info;
        out.push_back(std::move(r));
      } catch (const Error& err) {
        log_(fmt::format("skipped: {}; left on disk", err.what()));
      }
    }
    if (ec) fail("{}: cannot list the context directory: {}", dir_, ec.message());
    return out;
  }

  std::optional<StoreRecord> stat(const std::string& id) override {
    if (!valid_context_id(id)) return std::nullopt;
    std::error_code ec;
    if (!fs::exists(path_of(id), ec)) return std::nullopt;
    const ContextFileHeader h = peek_context_file(path_of(id));
    StoreRecord r;
    r.id = id;
    r.fingerprint = h.fingerprint;
    r.info = h.info;
    return r;
  }

  StoreBlob read(const std::string& id, std::string* version) override {
    if (version) version->clear();
    // Mapped, not read: files are only ever replaced by a rename (write_file_atomic), so a
    // mapping keeps the bytes it was made with.
    return StoreBlob(MappedFile::open(path_of(id)));
  }

  bool write(const StoreRecord& rec, const std::vector<uint8_t>& bytes, std::string* version) override {
    write_file_atomic(path_of(rec.id), bytes.data(), bytes.size());
    if (version) version->clear();
    return true;
  }

  bool remove(const std::string& id) override {
    std::error_code ec;
    const bool existed = fs::remove(path_of(id), ec);
    if (ec) log_(fmt::format("{}: cannot remove: {}", path_of(id), ec.message()));
    return existed;
  }

  bool begin(const StoreRecord& rec) override {
    std::error_code ec;
    return !fs::exists(path_of(rec.id), ec);
  }
  bool claim(const std::string&) override { return true; }
  int renew(const std::string&, const std::string&, double) override { return 1; }
  void release(const std::string&, const std::string&) override {}
  int renew_interval_ms() const override { return 0; }

 private:
  std::string path_of(const std::string& id) const { return (fs::path(dir_) / (id + ".kvz")).string(); }

  std::string dir_;
  Log log_;
};

}  // namespace

std::unique_ptr<ContextStore> open_dir_store(const std::string& dir, ContextStore::Log log) {
  if (dir.empty()) fail("the context directory is empty (--store dir:PATH or --context-dir PATH)");
  return std::make_unique<DirStore>(dir, std::move(log));
}

std::unique_ptr<ContextStore> open_context_store(const std::string& spec, ContextStore::Log log) {
  if (spec.rfind("dir:", 0) == 0) return open_dir_store(spec.substr(4), std::move(log));
  if (spec.rfind("redis://", 0) == 0) return open_redis_store(spec, std::move(log));
  fail("--store '{}': expected dir:PATH or redis://HOST:PORT/DB", spec);
}

}  // namespace kvz::server

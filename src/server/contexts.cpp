#include "server/contexts.h"

#include <filesystem>
#include <random>

#include "server/api_error.h"

namespace kvz::server {

namespace fs = std::filesystem;
using nlohmann::json;

const char* ctx_state_name(CtxState s) {
  switch (s) {
    case CtxState::Queued: return "queued";
    case CtxState::Prefilling: return "prefilling";
    case CtxState::Scoring: return "scoring";
    case CtxState::Ready: return "ready";
    case CtxState::Failed: return "failed";
  }
  return "?";
}

std::string new_context_id() {
  std::random_device rd;
  const uint64_t v = (uint64_t{rd()} << 32) ^ rd();
  return fmt::format("ctx-{:016x}", v);
}

bool valid_context_id(const std::string& id) {
  if (id.size() != 20 || id.compare(0, 4, "ctx-") != 0) return false;
  for (size_t i = 4; i < id.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(id[i])) || std::isupper(static_cast<unsigned char>(id[i])))
      return false;
  return true;
}

ContextRegistry::ContextRegistry(ModelIdentity id, std::string dir, size_t mem_budget, Log log)
    : id_(std::move(id)), dir_(std::move(dir)), mem_budget_(mem_budget), log_(std::move(log)) {}

std::string ContextRegistry::path_of(const std::string& id) const { return (fs::path(dir_) / (id + ".kvz")).string(); }

void ContextRegistry::scan() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail("{}: cannot create the context directory: {}", dir_, ec.message());
  size_t n = 0;
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
      if (h.fingerprint != id_.fingerprint) {
        log_(fmt::format("{}: skipped: made for another model (fingerprint {:016x}, this model {:016x}); left on disk",
                         p.string(), h.fingerprint, id_.fingerprint));
        continue;
      }
      auto e = std::make_shared<ContextEntry>();
      e->id = p.stem().string();
      e->state = CtxState::Ready;
      e->progress = 1;
      e->on_disk = true;
      e->info = json::parse(h.info, nullptr, false);
      if (!e->info.is_object()) e->info = json::object();
      e->info["id"] = e->id;
      std::lock_guard lk(mu_);
      entries_[e->id] = e;
      ++n;
    } catch (const Error& err) {
      log_(fmt::format("skipped: {}; left on disk", err.what()));
    }
  }
  if (ec) fail("{}: cannot list the context directory: {}", dir_, ec.message());
  log_(fmt::format("{} stored context(s) in {}", n, dir_));
}

std::shared_ptr<ContextEntry> ContextRegistry::create(json info) {
  auto e = std::make_shared<ContextEntry>();
  std::lock_guard lk(mu_);
  do e->id = new_context_id();
  while (entries_.count(e->id));
  info["id"] = e->id;
  e->info = std::move(info);
  entries_[e->id] = e;
  return e;
}

std::shared_ptr<ContextEntry> ContextRegistry::find(const std::string& id) const {
  std::lock_guard lk(mu_);
  const auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<ContextEntry>> ContextRegistry::list() const {
  std::lock_guard lk(mu_);
  std::vector<std::shared_ptr<ContextEntry>> out;
  for (const auto& [k, e] : entries_) out.push_back(e);
  return out;
}

bool ContextRegistry::remove(const std::string& id) {
  std::shared_ptr<ContextEntry> e;
  {
    std::lock_guard lk(mu_);
    const auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    e = it->second;
    entries_.erase(it);
  }
  std::lock_guard el(e->mu);
  e->deleted = true;
  e->ready.reset();
  e->full.reset();
  std::error_code ec;
  fs::remove(path_of(id), ec);
  if (ec) log_(fmt::format("{}: cannot remove: {}", path_of(id), ec.message()));
  return true;
}

std::shared_ptr<const ReadyContext> ContextRegistry::acquire(const std::string& id) {
  std::shared_ptr<ContextEntry> e = find(id);
  if (!e) context_not_found(id, "context_id");
  {
    std::lock_guard el(e->mu);
    if (e->state == CtxState::Failed)
      throw ApiError(409, "context '" + id + "' failed: " + e->error, "invalid_request_error", "context_id",
                     "context_failed");
    if (e->state != CtxState::Ready)
      throw ApiError(409,
                     fmt::format("context '{}' is not ready yet ({}, {:.0f}%); poll GET /v1/contexts/{}", id,
                                 ctx_state_name(e->state), 100 * e->progress, id),
                     "invalid_request_error", "context_id", "context_not_ready");
    e->last_use = ++clock_;
    if (e->ready) return e->ready;
  }
  std::lock_guard ll(load_mu_);
  {
    std::lock_guard el(e->mu);
    if (e->ready) return e->ready;  // loaded meanwhile
  }
  auto r = std::make_shared<ReadyContext>();
  try {
    r->cache = load_context(path_of(id), id_, r->meta);
  } catch (const Error& err) {
    throw ApiError(500, std::string("cannot load the stored context: ") + err.what(), "server_error", "context_id",
                   "context_unreadable");
  }
  {
    std::lock_guard el(e->mu);
    if (e->deleted) context_not_found(id, "context_id");
    e->ready = r;
  }
  std::lock_guard lk(mu_);
  evict_over_budget();
  return r;
}

void ContextRegistry::publish(const std::shared_ptr<ContextEntry>& e, std::shared_ptr<ReadyContext> ready, json info) {
  info["id"] = e->id;
  info["state"] = "ready";
  ready->meta.info = info.dump();
  {
    std::lock_guard el(e->mu);
    if (e->deleted) return;  // deleted while it was being compressed: nothing to keep
  }
  save_context(path_of(e->id), id_, ready->meta, ready->cache);
  {
    std::lock_guard el(e->mu);
    if (e->deleted) {  // deleted while being written: the file goes too
      std::error_code ec;
      fs::remove(path_of(e->id), ec);
      return;
    }
    e->info = std::move(info);
    e->ready = std::move(ready);
    e->on_disk = true;
    e->state = CtxState::Ready;
    e->progress = 1;
    e->last_use = ++clock_;
  }
  std::lock_guard lk(mu_);
  evict_over_budget();
}

void ContextRegistry::set_state(const std::shared_ptr<ContextEntry>& e, CtxState s, double progress) {
  std::lock_guard el(e->mu);
  e->state = s;
  e->progress = progress;
}

void ContextRegistry::set_failed(const std::shared_ptr<ContextEntry>& e, const std::string& error) {
  std::lock_guard el(e->mu);
  e->state = CtxState::Failed;
  e->error = error;
  e->full.reset();
}

void ContextRegistry::evict_over_budget() {
  if (mem_budget_ == 0) return;
  for (;;) {
    size_t held = 0;
    ContextEntry* lru = nullptr;
    uint64_t oldest = UINT64_MAX;
    for (const auto& [k, e] : entries_) {
      std::lock_guard el(e->mu);
      if (!e->ready) continue;
      held += e->ready->bytes();
      // In use by a request (or the registry's caller): dropping it would free nothing.
      if (e->ready.use_count() == 1 && e->on_disk && e->last_use < oldest) {
        oldest = e->last_use;
        lru = e.get();
      }
    }
    if (held <= mem_budget_ || !lru) return;
    std::lock_guard el(lru->mu);
    log_(fmt::format("{}: dropped from memory (held {} bytes > budget {}); still on disk", lru->id, held, mem_budget_));
    lru->ready.reset();
  }
}

size_t ContextRegistry::bytes_held() const {
  std::lock_guard lk(mu_);
  size_t held = 0;
  for (const auto& [k, e] : entries_) {
    std::lock_guard el(e->mu);
    if (e->ready) held += e->ready->bytes();
  }
  return held;
}

size_t ContextRegistry::n_held() const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& [k, e] : entries_) {
    std::lock_guard el(e->mu);
    n += e->ready != nullptr;
  }
  return n;
}

json ContextRegistry::describe(const ContextEntry& e) {
  std::lock_guard el(e.mu);
  json j = e.info;
  j["id"] = e.id;
  j["object"] = "context";
  j["state"] = ctx_state_name(e.state);
  j["progress"] = e.progress;
  j["in_memory"] = e.ready != nullptr;
  j["retain_full"] = e.full != nullptr;
  if (e.state == CtxState::Failed) j["error"] = e.error;
  return j;
}

}  // namespace kvz::server

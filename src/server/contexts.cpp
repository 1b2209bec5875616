#include "server/contexts.h"

#include <chrono>
#include <random>
#include <set>

#include "server/api_error.h"

namespace kvz::server {

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

namespace {

CtxState parse_state(const std::string& s) {
  if (s == "queued") return CtxState::Queued;
  if (s == "prefilling") return CtxState::Prefilling;
  if (s == "scoring") return CtxState::Scoring;
  if (s == "ready") return CtxState::Ready;
  return CtxState::Failed;  // "failed", or a state this build does not know
}

}  // namespace

ContextRegistry::ContextRegistry(ModelIdentity id, std::unique_ptr<ContextStore> store, size_t mem_budget, Log log)
    : id_(std::move(id)),
      store_(std::move(store)),
      shared_(store_->shared()),
      mem_budget_(mem_budget),
      log_(std::move(log)) {
  if (store_->renew_interval_ms() > 0) keeper_ = std::thread([this] { keep_claims(); });
}

ContextRegistry::~ContextRegistry() {
  {
    std::lock_guard lk(keeper_mu_);
    keeper_stop_ = true;
  }
  keeper_cv_.notify_all();
  if (keeper_.joinable()) keeper_.join();
}

void ContextRegistry::apply(ContextEntry& e, const StoreRecord& r) const {
  e.state = parse_state(r.state);
  e.progress = r.progress;
  e.error = r.error;
  e.info = json::parse(r.info, nullptr, false);
  if (!e.info.is_object()) e.info = json::object();
  e.info["id"] = e.id;
  e.on_disk = e.state == CtxState::Ready;
  // Re-pruned elsewhere: the bytes held here are no longer the context's.
  if (e.ready && r.version != e.version) e.ready.reset();
}

std::shared_ptr<ContextEntry> ContextRegistry::make_entry(const StoreRecord& r) const {
  auto e = std::make_shared<ContextEntry>();
  e->id = r.id;
  apply(*e, r);
  return e;
}

std::shared_ptr<ContextEntry> ContextRegistry::merge(const StoreRecord& r) {
  if (r.fingerprint != id_.fingerprint) return nullptr;
  std::shared_ptr<ContextEntry> e;
  {
    std::lock_guard lk(mu_);
    auto& slot = entries_[r.id];
    if (!slot) {
      slot = make_entry(r);
      return slot;
    }
    e = slot;
  }
  std::lock_guard el(e->mu);
  if (!e->owned) apply(*e, r);  // this replica's own uploads: its state is the live one
  return e;
}

void ContextRegistry::forget(const std::shared_ptr<ContextEntry>& e) {
  {
    std::lock_guard lk(mu_);
    const auto it = entries_.find(e->id);
    if (it != entries_.end() && it->second == e) entries_.erase(it);
  }
  std::lock_guard el(e->mu);
  if (!e->deleted && e->ready) log_(fmt::format("{}: gone from the store; dropped from memory", e->id));
  e->deleted = true;
  e->ready.reset();
  e->full.reset();
}

void ContextRegistry::scan() {
  size_t n = 0;
  for (const StoreRecord& r : store_->list()) {
    if (r.fingerprint != id_.fingerprint) {
      log_(fmt::format("{}: skipped: made for another model (fingerprint {:016x}, this model {:016x}); left in {}",
                       r.id, r.fingerprint, id_.fingerprint, store_->name()));
      continue;
    }
    auto e = make_entry(r);
    std::lock_guard lk(mu_);
    entries_[e->id] = e;
    ++n;
  }
  log_(fmt::format("{} stored context(s) in {}", n, store_->name()));
}

std::shared_ptr<ContextEntry> ContextRegistry::create(json info) {
  auto e = std::make_shared<ContextEntry>();
  e->owned = true;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      do e->id = new_context_id();
      while (entries_.count(e->id));
    }
    info["id"] = e->id;
    StoreRecord r;
    r.id = e->id;
    r.state = "queued";
    r.progress = 0;
    r.fingerprint = id_.fingerprint;
    r.info = info.dump();
    if (store_->begin(r)) break;  // else the id is taken in the store: draw another
  }
  e->info = std::move(info);
  std::lock_guard lk(mu_);
  entries_[e->id] = e;
  return e;
}

std::shared_ptr<ContextEntry> ContextRegistry::find(const std::string& id) {
  std::shared_ptr<ContextEntry> e;
  {
    std::lock_guard lk(mu_);
    const auto it = entries_.find(id);
    if (it != entries_.end()) e = it->second;
  }
  if (!shared_) return e;
  if (e) {
    std::lock_guard el(e->mu);
    if (e->owned) return e;
  }
  if (!valid_context_id(id)) return nullptr;
  std::optional<StoreRecord> r;
  try {
    r = store_->stat(id);
  } catch (const ApiError& err) {
    // The store is unreachable: a context held here is still answered from memory.
    if (e && err.status == 503) return e;
    throw;
  }
  if (!r || r->fingerprint != id_.fingerprint) {
    if (e) forget(e);
    return nullptr;
  }
  return merge(*r);
}

std::vector<std::shared_ptr<ContextEntry>> ContextRegistry::list() {
  if (shared_) {
    std::set<std::string> seen;
    for (const StoreRecord& r : store_->list())
      if (merge(r)) seen.insert(r.id);
    std::vector<std::shared_ptr<ContextEntry>> gone;
    {
      std::lock_guard lk(mu_);
      for (const auto& [k, e] : entries_) {
        std::lock_guard el(e->mu);
        if (!e->owned && !seen.count(k)) gone.push_back(e);
      }
    }
    for (const auto& e : gone) forget(e);
  }
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
    if (it != entries_.end()) {
      e = it->second;
      entries_.erase(it);
    }
  }
  if (e) {
    std::lock_guard el(e->mu);
    e->deleted = true;
    e->ready.reset();
    e->full.reset();
  }
  if (!shared_) {
    if (e) store_->remove(id);
    return e != nullptr;
  }
  // Known to the store but never seen here counts too: a delete reaches every replica.
  const bool in_store = valid_context_id(id) && store_->remove(id);
  return in_store || e != nullptr;
}

void ContextRegistry::claim_for_recompress(const std::shared_ptr<ContextEntry>& e) {
  if (!store_->claim(e->id))
    throw ApiError(409, "context '" + e->id + "' is being re-pruned by another replica; try again when it is done",
                   "invalid_request_error", "id", "context_busy");
  std::lock_guard el(e->mu);
  e->owned = true;
}

void ContextRegistry::end_recompress(const std::shared_ptr<ContextEntry>& e, const std::string& error) {
  bool release = false;
  {
    std::lock_guard el(e->mu);
    e->state = CtxState::Ready;  // the previous compression stays ready
    e->progress = 1;
    if (!error.empty()) e->info["last_error"] = error;
    release = e->owned;
    e->owned = false;
  }
  if (release) try {
      store_->release(e->id, "");
    } catch (const std::exception& ex) {
      log_(fmt::format("{}: cannot release the claim: {} (it expires by itself)", e->id, ex.what()));
    }
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
  std::string version;
  try {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const StoreBlob bytes = store_->read(id, &version);
    const auto t1 = clock::now();
    // No room for more rows: a ready context is never appended to (slots copy it).
    r->cache = decode_context(bytes.data(), bytes.size(), store_->name() + " " + id, id_, r->meta, 0);
    r->meta.scores = {};  // as publish() leaves them (ReadyContext)
    const auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    log_(fmt::format("{}: loaded from the store, {} bytes: read {:.1f} ms, checked and decoded {:.1f} ms", id,
                     bytes.size(), ms(t0, t1), ms(t1, clock::now())));
  } catch (const ApiError&) {
    throw;  // the store cannot be reached: 503
  } catch (const Error& err) {
    throw ApiError(500, std::string("cannot load the stored context: ") + err.what(), "server_error", "context_id",
                   "context_unreadable");
  }
  {
    std::lock_guard el(e->mu);
    if (e->deleted) context_not_found(id, "context_id");
    e->ready = r;
    e->version = version;
    e->on_disk = true;
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
  const std::vector<uint8_t> bytes = encode_context(id_, ready->meta, ready->cache);
  ready->meta.scores = {};  // in the stored bytes; nothing the server does reads them (ReadyContext)
  StoreRecord rec;
  rec.id = e->id;
  rec.fingerprint = id_.fingerprint;
  rec.info = ready->meta.info;
  std::string version;
  if (!store_->write(rec, bytes, &version)) {
    // Shared stores only: deleted elsewhere meanwhile, or this replica's claim expired.
    if (!store_->stat(e->id)) {
      forget(e);
      return;
    }
    {
      std::lock_guard el(e->mu);
      e->owned = false;
    }
    fail("this replica's claim on the context expired before it was published (another replica marked it "
         "failed); upload it again");
  }
  {
    std::lock_guard el(e->mu);
    if (e->deleted) {  // deleted while being written: the bytes go too
      store_->remove(e->id);
      return;
    }
    e->info = std::move(info);
    e->ready = std::move(ready);
    e->version = version;
    e->on_disk = true;
    e->owned = false;
    e->state = CtxState::Ready;
    e->progress = 1;
    e->last_use = ++clock_;
  }
  std::lock_guard lk(mu_);
  evict_over_budget();
}

void ContextRegistry::on_renew(const std::shared_ptr<ContextEntry>& e, int r) {
  if (r > 0) return;
  if (r < 0) {
    log_(fmt::format("{}: deleted from the store while being compressed here; abandoning it", e->id));
    forget(e);
    return;
  }
  std::lock_guard el(e->mu);
  e->abandon = "this replica's claim on the context expired (another replica marked it failed); upload it again";
  e->owned = false;
}

void ContextRegistry::keep_claims() {
  const auto every = std::chrono::milliseconds(store_->renew_interval_ms());
  std::unique_lock lk(keeper_mu_);
  while (!keeper_cv_.wait_for(lk, every, [&] { return keeper_stop_; })) {
    lk.unlock();
    std::vector<std::shared_ptr<ContextEntry>> mine;
    {
      std::lock_guard ml(mu_);
      for (const auto& [k, e] : entries_) {
        std::lock_guard el(e->mu);
        if (e->owned) mine.push_back(e);
      }
    }
    for (const auto& e : mine) try {
        on_renew(e, store_->renew(e->id, "", 0));
      } catch (const std::exception& ex) {
        log_(fmt::format("{}: cannot renew the claim: {}", e->id, ex.what()));
      }
    lk.lock();
  }
}

void ContextRegistry::set_state(const std::shared_ptr<ContextEntry>& e, CtxState s, double progress) {
  bool owned = false;
  {
    std::lock_guard el(e->mu);
    e->state = s;
    e->progress = progress;
    owned = e->owned;
  }
  // Other replicas show the progress; a renewal that finds the context gone stops the work.
  if (shared_ && owned) on_renew(e, store_->renew(e->id, ctx_state_name(s), progress));
}

void ContextRegistry::set_failed(const std::shared_ptr<ContextEntry>& e, const std::string& error) {
  bool owned = false;
  {
    std::lock_guard el(e->mu);
    e->state = CtxState::Failed;
    e->error = error;
    e->full.reset();
    owned = e->owned;
    e->owned = false;
  }
  if (owned) try {
      store_->release(e->id, error);
    } catch (const std::exception& ex) {
      log_(fmt::format("{}: cannot record the failure in the store: {} (its claim expires by itself)", e->id,
                       ex.what()));
    }
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

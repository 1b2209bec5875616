// The Redis store (hiredis): contexts shared by every replica that names the same database.
//
// Keys (one database; `id` is ctx-<16 hex>, `v` a version: 16 random hex digits):
//   kvzip:contexts         set of every id
//   kvzip:ctx:<id>         hash: state, progress, error, fingerprint (16 hex), info (JSON),
//                          version, chunks, bytes, owner
//   kvzip:blob:<id>:<v>    hash "0".."chunks-1": the context file's bytes (format v3 of
//                          io/context_store.h, byte for byte what the directory store writes)
//                          in chunks of at most `chunk` bytes
//   kvzip:claim:<id>       the owner string of the one replica compressing it, with an expiry
//
// Atomicity. An upload claims its id (SET NX PX inside the script that records it queued).
// Publishing writes every chunk under a fresh version key first (with an expiry, so a writer
// that dies leaves nothing for good), then in one WATCH/MULTI/EXEC: checks that the claim
// is still its own and the context still exists, points the hash at the new version with
// state ready, drops the expiry of the new chunks, deletes the old version's chunks and the
// claim. A reader takes the version from the hash and then the chunks, and starts again
// when that version vanished under it (a re-prune published meanwhile); it checks the size
// here and the caller's decode checks the file checksum. So a reader never sees half a
// context, and a crash anywhere leaves either the old context or the whole new one.
//
// Claims. The owner renews its claim every claim_ms / 3 (the registry's keeper thread).
// When a replica dies, its claim expires; the next replica to look at the context (stat)
// marks the upload failed, with a message that says so. It is not taken over: the upload's
// text is not in the store, and an input that brought one replica down would bring down the
// next one too (docs/scale-out.md).
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "server/api_error.h"
#include "server/contexts.h"
#include "server/store.h"

namespace kvz::server {

namespace {

constexpr const char* kIndex = "kvzip:contexts";

// Lua scripts: each runs atomically in Redis.
// KEYS: meta, claim, index; ARGV: owner, claim ms, state, fingerprint, info, id.
constexpr const char* kBegin = R"(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'progress', '0', 'error', '', 'fingerprint', ARGV[4],
           'info', ARGV[5], 'owner', ARGV[1], 'version', '', 'chunks', '0', 'bytes', '0')
redis.call('SADD', KEYS[3], ARGV[6])
return 1)";
// KEYS: meta, claim; ARGV: owner, claim ms, state ('' = renew only), progress.
constexpr const char* kRenew = R"(
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[3], 'progress', ARGV[4]) end
return 1)";
// KEYS: meta, claim; ARGV: owner, error ('' = release only).
constexpr const char* kRelease = R"(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'state') ~= 'ready' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[2], 'progress', '0')
end
return 1)";
// An upload whose claim expired: failed. KEYS: meta, claim; ARGV: error.
constexpr const char* kExpire = R"(
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'queued' or s == 'prefilling' or s == 'scoring' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[1], 'progress', '0')
  return 1
end
return 0)";
// KEYS: meta, claim, index; ARGV: id, blob key prefix.
constexpr const char* kRemove = R"(
local v = redis.call('HGET', KEYS[1], 'version')
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
if v and v ~= '' then redis.call('DEL', ARGV[2] .. v) end
return n)";

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

// The connection broke (or was never made): the caller reconnects and tries once more.
struct ConnLost {
  std::string what;
};

std::string random_hex() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string str_of(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? std::string(r->str, r->len)
                                                                               : std::string();
}

// "redis://HOST[:PORT][/DB][?chunk=BYTES&claim_ms=MS]".
struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379, db = 0;
  size_t chunk = size_t{1} << 20;
  int claim_ms = 15000;
};

int to_int(const std::string& s, const std::string& url, const char* what, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    fail("--store '{}': {} '{}' must be an integer in [{}, {}]", url, what, s, lo, hi);
  return static_cast<int>(v);
}

RedisUrl parse_url(const std::string& url) {
  RedisUrl u;
  std::string rest = url.substr(8);  // after redis://
  std::string query;
  if (const size_t q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (const size_t s = rest.find('/'); s != std::string::npos) {
    const std::string db = rest.substr(s + 1);
    if (!db.empty()) u.db = to_int(db, url, "the database number", 0, 1 << 20);
    rest = rest.substr(0, s);
  }
  if (const size_t c = rest.rfind(':'); c != std::string::npos) {
    u.port = to_int(rest.substr(c + 1), url, "the port", 1, 65535);
    rest = rest.substr(0, c);
  }
  if (!rest.empty()) u.host = rest;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string kv = query.substr(0, amp);
    query = amp == std::string::npos ? "" : query.substr(amp + 1);
    const size_t eq = kv.find('=');
    const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "chunk") u.chunk = static_cast<size_t>(to_int(v, url, "chunk", 4096, 256 << 20));
    else if (k == "claim_ms") u.claim_ms = to_int(v, url, "claim_ms", 300, 3600 * 1000);
    else fail("--store '{}': unknown parameter '{}' (known: chunk, claim_ms)", url, k);
  }
  return u;
}

class RedisStore final : public ContextStore {
 public:
  RedisStore(std::string url, Log log) : url_(std::move(url)), u_(parse_url(url_)), log_(std::move(log)) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    owner_ = fmt::format("{}:{}:{}", host, ::getpid(), random_hex());
    with([&] { cmd({"PING"}); });  // fail at start, not at the first request
  }
  ~RedisStore() override {
    if (c_) redisFree(c_);
  }

  std::string name() const override { return url_; }
  bool shared() const override { return true; }
  int renew_interval_ms() const override { return u_.claim_ms / 3; }

  std::vector<StoreRecord> list() override {
    std::vector<StoreRecord> out;
    std::vector<std::string> ids;
    with([&] {
      Reply r = cmd({"SMEMBERS", kIndex});
      ids.clear();
      for (size_t i = 0; i < r->elements; ++i) ids.push_back(str_of(r->element[i]));
    });
    for (const auto& id : ids)
      if (auto rec = stat(id)) out.push_back(std::move(*rec));
    return out;
  }

  std::optional<StoreRecord> stat(const std::string& id) override {
    std::optional<StoreRecord> out;
    with([&] {
      out = read_meta(id);
      if (!out || (out->state != "queued" && out->state != "prefilling" && out->state != "scoring")) return;
      if (cmd({"EXISTS", claim_key(id)})->integer == 1) return;
      // The compressing replica stopped renewing its claim: it crashed or was killed.
      const std::string owner = meta_field(id, "owner");
      const std::string err = fmt::format(
          "the replica compressing this context ({}) stopped before finishing: its claim expired after {} ms "
          "without renewal (it crashed, was killed or lost the store); upload the document again",
          owner, u_.claim_ms);
      Reply r = eval(kExpire, {meta_key(id), claim_key(id)}, {err});
      if (r->integer == 1) log_(fmt::format("{}: marked failed: {}", id, err));
      out = read_meta(id);
    });
    return out;
  }

  StoreBlob read(const std::string& id, std::string* version) override {
    std::vector<uint8_t> out;
    with([&] {
      for (int attempt = 0; attempt < 5; ++attempt) {
        Reply m = cmd({"HMGET", meta_key(id), "state", "version", "chunks", "bytes"});
        if (m->elements != 4 || m->element[0]->type == REDIS_REPLY_NIL) fail("{}: no such context in {}", id, url_);
        if (str_of(m->element[0]) != "ready") fail("{}: not ready in {}", id, url_);
        const std::string v = str_of(m->element[1]);
        const size_t n_chunks = std::strtoull(str_of(m->element[2]).c_str(), nullptr, 10);
        const size_t n_bytes = std::strtoull(str_of(m->element[3]).c_str(), nullptr, 10);
        const std::string blob = blob_key(id, v);
        for (size_t i = 0; i < n_chunks; ++i) append({"HGET", blob, std::to_string(i)});
        out.clear();
        out.reserve(n_bytes);
        bool vanished = false;
        for (size_t i = 0; i < n_chunks; ++i) {
          Reply c = get_reply();
          if (c->type != REDIS_REPLY_STRING) {
            vanished = true;  // replaced meanwhile; drain the rest, then start again
            continue;
          }
          out.insert(out.end(), c->str, c->str + c->len);
        }
        if (vanished) continue;
        if (out.size() != n_bytes)
          fail("{}: {} holds {} bytes of it, its record says {} (corrupt store)", id, url_, out.size(), n_bytes);
        if (version) *version = v;
        return;
      }
      fail("{}: its bytes kept changing while being read from {}", id, url_);
    });
    return StoreBlob(std::move(out));
  }

  bool write(const StoreRecord& rec, const std::vector<uint8_t>& bytes, std::string* version) override {
    const std::string v = random_hex();
    const std::string blob = blob_key(rec.id, v);
    const size_t n_chunks = (bytes.size() + u_.chunk - 1) / u_.chunk;
    bool ok = false;
    with([&] {
      // A retry after a reply lost in transit: the publish did happen.
      if (meta_field(rec.id, "version") == v) {
        ok = true;
        return;
      }
      // The chunks, under the new version only; they expire unless published.
      cmd({"DEL", blob});
      for (size_t i = 0; i < n_chunks; ++i) {
        const size_t at = i * u_.chunk, n = std::min(u_.chunk, bytes.size() - at);
        cmd({"HSET", blob, std::to_string(i),
             std::string_view(reinterpret_cast<const char*>(bytes.data()) + at, n)});
        if (i == 0) cmd({"PEXPIRE", blob, "3600000"});
      }
      for (int attempt = 0; attempt < 5; ++attempt) {
        cmd({"WATCH", meta_key(rec.id), claim_key(rec.id)});
        const bool exists = cmd({"EXISTS", meta_key(rec.id)})->integer == 1;
        const std::string holder = str_of(cmd({"GET", claim_key(rec.id)}).get());
        if (!exists || holder != owner_) {
          cmd({"UNWATCH"});
          cmd({"DEL", blob});
          log_(fmt::format("{}: not published: {}", rec.id,
                           exists ? "this replica's claim expired and it is no longer the owner" : "it was deleted"));
          ok = false;
          return;
        }
        const std::string old = meta_field(rec.id, "version");
        cmd({"MULTI"});
        cmd({"HSET", meta_key(rec.id), "state", "ready", "progress", "1", "error", "", "fingerprint",
             fmt::format("{:016x}", rec.fingerprint), "info", rec.info, "version", v, "chunks",
             std::to_string(n_chunks), "bytes", std::to_string(bytes.size()), "owner", ""});
        cmd({"PERSIST", blob});
        cmd({"DEL", claim_key(rec.id)});
        if (!old.empty() && old != v) cmd({"DEL", blob_key(rec.id, old)});
        Reply r = cmd({"EXEC"});
        if (r->type == REDIS_REPLY_ARRAY) {
          ok = true;
          return;
        }
        // EXEC aborted: a watched key changed (a concurrent delete, a claim expiry); look again.
      }
      cmd({"DEL", blob});
      fail("{}: could not publish to {}: it kept changing", rec.id, url_);
    });
    if (ok && version) *version = v;
    return ok;
  }

  bool remove(const std::string& id) override {
    bool existed = false;
    with([&] {
      existed = eval(kRemove, {meta_key(id), claim_key(id), kIndex}, {id, "kvzip:blob:" + id + ":"})->integer > 0;
    });
    return existed;
  }

  bool begin(const StoreRecord& rec) override {
    bool ok = false;
    with([&] {
      ok = eval(kBegin, {meta_key(rec.id), claim_key(rec.id), kIndex},
                {owner_, std::to_string(u_.claim_ms), rec.state, fmt::format("{:016x}", rec.fingerprint), rec.info,
                 rec.id})
               ->integer == 1;
    });
    return ok;
  }

  bool claim(const std::string& id) override {
    bool ok = false;
    with([&] {
      Reply r = cmd({"SET", claim_key(id), owner_, "NX", "PX", std::to_string(u_.claim_ms)});
      ok = r->type == REDIS_REPLY_STATUS;
      // Our own claim, set by a try whose reply was lost.
      if (!ok) ok = str_of(cmd({"GET", claim_key(id)}).get()) == owner_;
    });
    return ok;
  }

  int renew(const std::string& id, const std::string& state, double progress) override {
    int out = 1;
    with([&] {
      out = static_cast<int>(eval(kRenew, {meta_key(id), claim_key(id)},
                                  {owner_, std::to_string(u_.claim_ms), state, fmt::format("{:.4f}", progress)})
                                 ->integer);
    });
    return out;
  }

  void release(const std::string& id, const std::string& error) override {
    with([&] { eval(kRelease, {meta_key(id), claim_key(id)}, {owner_, error}); });
  }

 private:
  static std::string meta_key(const std::string& id) { return "kvzip:ctx:" + id; }
  static std::string claim_key(const std::string& id) { return "kvzip:claim:" + id; }
  static std::string blob_key(const std::string& id, const std::string& v) { return "kvzip:blob:" + id + ":" + v; }

  std::optional<StoreRecord> read_meta(const std::string& id) {
    Reply r = cmd({"HGETALL", meta_key(id)});
    if (r->elements == 0) return std::nullopt;
    StoreRecord rec;
    rec.id = id;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      const std::string k = str_of(r->element[i]), v = str_of(r->element[i + 1]);
      if (k == "state") rec.state = v;
      else if (k == "progress") rec.progress = std::strtod(v.c_str(), nullptr);
      else if (k == "error") rec.error = v;
      else if (k == "fingerprint") rec.fingerprint = std::strtoull(v.c_str(), nullptr, 16);
      else if (k == "info") rec.info = v;
      else if (k == "version") rec.version = v;
    }
    return rec;
  }

  std::string meta_field(const std::string& id, const char* field) {
    return str_of(cmd({"HGET", meta_key(id), field}).get());
  }

  // One command, binary-safe. ConnLost when the connection fails; kvz::Error for a Redis error.
  Reply cmd(std::initializer_list<std::string_view> args) {
    append(args);
    return get_reply();
  }
  Reply cmd(const std::vector<std::string_view>& args) {
    append(args);
    return get_reply();
  }
  template <typename Args>
  void append(const Args& args) {
    if (!c_) throw ConnLost{"not connected"};
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
      throw ConnLost{c_->errstr};
  }
  void append(std::initializer_list<std::string_view> args) { append<std::initializer_list<std::string_view>>(args); }
  Reply get_reply() {
    void* p = nullptr;
    if (redisGetReply(c_, &p) != REDIS_OK || !p) throw ConnLost{c_->err ? c_->errstr : "no reply"};
    Reply r(static_cast<redisReply*>(p));
    if (r->type == REDIS_REPLY_ERROR) fail("{}: {}", url_, std::string(r->str, r->len));
    return r;
  }
  Reply eval(const char* script, std::vector<std::string> keys, std::vector<std::string> args) {
    std::vector<std::string_view> a{"EVAL", script};
    const std::string nk = std::to_string(keys.size());
    a.push_back(nk);
    for (const auto& k : keys) a.push_back(k);
    for (const auto& v : args) a.push_back(v);
    return cmd(a);
  }

  void connect() {
    if (c_) {
      redisFree(c_);
      c_ = nullptr;
    }
    const timeval tv{2, 0};
    redisContext* c = redisConnectWithTimeout(u_.host.c_str(), u_.port, tv);
    if (!c) throw ConnLost{"cannot allocate a connection"};
    if (c->err) {
      const std::string e = c->errstr;
      redisFree(c);
      throw ConnLost{e};
    }
    const timeval io{30, 0};  // a large context's chunks on a slow link
    redisSetTimeout(c, io);
    c_ = c;
    if (u_.db != 0) cmd({"SELECT", std::to_string(u_.db)});
  }

  // Runs f on a live connection under the lock; on a broken connection reconnects and runs
  // it once more (f must be safe to repeat: every caller above is). A store that cannot be
  // reached is a 503: the replica stays up and serves what it holds in memory.
  template <typename F>
  void with(F&& f) {
    std::lock_guard lk(mu_);
    std::string last;
    for (int attempt = 0; attempt < 3; ++attempt) {
      try {
        if (!c_) connect();
        f();
        return;
      } catch (const ConnLost& e) {
        last = e.what;
        if (c_) {
          redisFree(c_);
          c_ = nullptr;
        }
        if (attempt + 1 < 3) std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
      } catch (const Error&) {
        // Replies may still be pending, or a MULTI open: start the next call on a fresh connection.
        if (c_) {
          redisFree(c_);
          c_ = nullptr;
        }
        throw;
      }
    }
    throw ApiError(503, fmt::format("the context store {} cannot be reached: {}", url_, last), "server_error", "",
                   "store_unavailable");
  }

  std::string url_;
  RedisUrl u_;
  Log log_;
  std::string owner_;
  std::mutex mu_;  // one connection, one command sequence at a time
  redisContext* c_ = nullptr;
};

}  // namespace

std::unique_ptr<ContextStore> open_redis_store(const std::string& url, ContextStore::Log log) {
  return std::make_unique<RedisStore>(url, std::move(log));
}

}  // namespace kvz::server

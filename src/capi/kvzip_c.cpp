// The C API (include/kvzip.h) over the engine: handles, status codes and error strings at
// the boundary, nothing else. Every entry point runs its body inside guard(), which turns
// every C++ exception into a status and a message; no exception leaves this file.
#include "kvzip.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "eval/demo_doc.h"
#include "io/head_scores_file.h"
#include "kv/kept_view.h"
#include "kv/compose.h"
#include "kv/kvzip_context.h"
#include "kv/policy.h"
#include "kv/press.h"
#include "model/generate.h"
#include "model/model.h"
#include "tokenizer/text_stream.h"

struct kvz_model {
  std::unique_ptr<kvz::Model> m;
  int n_threads = 0;
  mutable std::string err;
};

struct kvz_gen_options {
  kvz::GenerateParams gp;
  bool update_cache = false;
  const volatile int* cancel_flag = nullptr;
  kvz_gen_options() { gp.n_predict = 128; }
};

struct kvz_context {
  kvz_model* model = nullptr;
  std::unique_ptr<kvz::ThreadPool> pool;     // this context's workers (before ctx: outlives it)
  std::unique_ptr<kvz::KvzipContext> ctx;
  // False while no context is in the cache, or after a prefill or method scoring that stopped
  // half way and may have left the session partial: only a new prefill or load helps.
  bool ready = false;
  kvz::PruneLevel default_level = kvz::PruneLevel::Pair;  // the last scoring method's own
  std::atomic<bool> cancel{false};
  kvz::QueryResult last;
  mutable std::string err;
};

namespace {

thread_local std::string tl_error;

// An error decided at this boundary (not the engine's): argument or state.
struct ApiError {
  kvz_status status;
  std::string msg;
};
struct Cancelled {};

[[noreturn]] void arg_error(std::string msg) { throw ApiError{KVZ_ERR_ARGUMENT, std::move(msg)}; }
[[noreturn]] void state_error(std::string msg) { throw ApiError{KVZ_ERR_STATE, std::move(msg)}; }

kvz_status report(std::string* handle_err, kvz_status st, std::string msg) {
  tl_error = msg;
  if (handle_err) *handle_err = std::move(msg);
  return st;
}

template <class F>
kvz_status guard(std::string* handle_err, F&& body) {
  try {
    body();
    return KVZ_OK;
  } catch (const ApiError& e) {
    return report(handle_err, e.status, e.msg);
  } catch (const Cancelled&) {
    return report(handle_err, KVZ_ERR_CANCELLED, "cancelled");
  } catch (const kvz::Error& e) {
    return report(handle_err, KVZ_ERR_ENGINE, e.what());
  } catch (const std::bad_alloc&) {
    return report(handle_err, KVZ_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return report(handle_err, KVZ_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return report(handle_err, KVZ_ERR_INTERNAL, "internal error: unknown exception");
  }
}

// Handle checks: a NULL handle has no error slot of its own, so only the thread's is set.
#define KVZ_NEED_HANDLE(h, what) \
  if (!(h)) return report(nullptr, KVZ_ERR_ARGUMENT, what " is NULL")

void need(const void* p, const char* what) {
  if (!p) arg_error(std::string(what) + " is NULL");
}

// Caller-made token ids: a pointer when there are any, each inside the model's vocabulary.
void need_ids(const kvz::Model& m, const int32_t* ids, size_t n) {
  if (n > 0) need(ids, "ids");
  const int32_t n_vocab = m.hp().n_vocab;
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= n_vocab)
      arg_error("token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) + " is outside [0, " +
                std::to_string(n_vocab) + ")");
}

// The buffer convention of kvzip.h: copy up to cap, report the full count.
template <class T>
void copy_out(const T* src, size_t n, T* out, size_t cap, size_t* n_out) {
  need(n_out, "n_out");
  if (cap > 0) need(out, "out");
  if (n > 0 && cap > 0) std::memcpy(out, src, std::min(n, cap) * sizeof(T));  // out may be NULL when cap == 0
  *n_out = n;
}

// A progress callback of the API as the engine's std::function; a non-zero return or a
// kvz_context_cancel stops the call by unwinding to guard().
std::function<void(int64_t, int64_t)> progress_fn(kvz_context* c, kvz_progress_fn fn, void* user) {
  return [c, fn, user](int64_t done, int64_t total) {
    if ((fn && fn(user, done, total) != 0) || (c && c->cancel.load(std::memory_order_relaxed))) throw Cancelled{};
  };
}

kvz::KvzipContext& ready_ctx(kvz_context* c, const char* what) {
  if (!c->ready) state_error(std::string(what) + ": the context holds no text; prefill or load one first");
  return *c->ctx;
}
const kvz::KvzipContext& ready_ctx(const kvz_context* c, const char* what) {
  return ready_ctx(const_cast<kvz_context*>(c), what);
}

void check_ratio(double ratio) {
  if (!(ratio > 0.0 && ratio <= 1.0)) arg_error("ratio " + std::to_string(ratio) + " is outside (0, 1] (the kept fraction)");
}

kvz::PruneLevel level_of(const char* level, kvz::PruneLevel def) {
  if (!level || !*level) return def;
  try {
    return kvz::parse_prune_level(level);
  } catch (const kvz::Error& e) {
    arg_error(e.what());
  }
}

// [n_layer][n_head_kv][n_ctx] 1 where the context pair's row is still in the cache (read off
// the rows' positions: kv/kept_view.h, the same reading as the server's /kept).
std::vector<uint8_t> kept_mask(const kvz::KvzipContext& ctx) {
  return kvz::kept_view(ctx.session().cache(), ctx.n_sys(), ctx.n_ctx()).mask;
}

double ratio_true(const kvz::KvzipContext& ctx, const std::vector<uint8_t>& keep) {
  const kvz::HParams& hp = ctx.model().hp();
  const int64_t n_ctx = ctx.n_ctx();
  int64_t kept = 0, total = 0;
  for (int il = 0; il < hp.n_layer; ++il) {
    if (hp.is_swa(il)) continue;  // never pruned, outside the budget (as PruneReport)
    const uint8_t* k = keep.data() + static_cast<size_t>(il) * hp.n_head_kv * n_ctx;
    kept += std::count(k, k + hp.n_head_kv * n_ctx, uint8_t{1});
    total += hp.n_head_kv * n_ctx;
  }
  return total == 0 ? 1.0 : static_cast<double>(kept) / total;
}

const std::vector<kvz::MethodInfo>& methods() { return kvz::press_registry(); }
const kvz::MethodInfo* method_at(int i) {
  return i >= 0 && i < static_cast<int>(methods().size()) ? &methods()[i] : nullptr;
}

// The body of kvz_generate, also behind kvz_generate_text.
void generate_ids(kvz_context* c, const std::vector<int32_t>& ids, const kvz_gen_options* o, kvz_token_fn on_token,
                  void* user) {
  kvz::KvzipContext& ctx = ready_ctx(c, "generate");
  static const kvz_gen_options defaults;
  const kvz_gen_options& opt = o ? *o : defaults;
  if (ids.empty()) arg_error("generate: no query ids");
  c->last = kvz::QueryResult{};
  const kvz::Tokenizer& tok = c->model->m->tokenizer();
  kvz::TextStream text(tok, {});  // only with a callback: the pieces it is shown
  std::vector<int32_t> out;       // generated ids without an end-of-turn token
  std::string piece;
  auto stop_requested = [&] {
    return c->cancel.load(std::memory_order_relaxed) || (opt.cancel_flag && *opt.cancel_flag != 0);
  };
  auto on_id = [&](int32_t id) -> bool {
    const bool eog = tok.is_eog(id);
    if (!eog) out.push_back(id);
    if (on_token) {
      if (!eog) text.push(out, piece);
      else piece = text.flush(out);  // whatever was held back, then the end of the turn
      if (on_token(user, id, piece.data(), piece.size()) != 0) throw Cancelled{};
    }
    if (stop_requested()) throw Cancelled{};
    return true;
  };
  auto progress = [&](int64_t, int64_t) {
    if (stop_requested()) throw Cancelled{};
  };
  try {
    c->last = ctx.query_ids(ids, opt.gp, opt.update_cache, on_id, progress);
  } catch (...) {
    c->last.answer_ids = out;  // what was produced before the stop stays readable
    c->last.answer = tok.decode(out, /*skip_special=*/true);
    throw;
  }
}

}  // namespace

extern "C" {

const char* kvz_version(void) { return "0.1.0"; }

const char* kvz_status_name(kvz_status s) {
  switch (s) {
    case KVZ_OK: return "KVZ_OK";
    case KVZ_ERR_ARGUMENT: return "KVZ_ERR_ARGUMENT";
    case KVZ_ERR_STATE: return "KVZ_ERR_STATE";
    case KVZ_ERR_ENGINE: return "KVZ_ERR_ENGINE";
    case KVZ_ERR_CANCELLED: return "KVZ_ERR_CANCELLED";
    case KVZ_ERR_NO_MEMORY: return "KVZ_ERR_NO_MEMORY";
    case KVZ_ERR_INTERNAL: return "KVZ_ERR_INTERNAL";
  }
  return "KVZ_ERR_UNKNOWN";
}

const char* kvz_last_error(void) { return tl_error.c_str(); }

// ---- models ----------------------------------------------------------------------------

kvz_status kvz_model_load(const char* path, int n_threads, kvz_model** out) {
  return guard(nullptr, [&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    if (n_threads > 1024) arg_error("n_threads " + std::to_string(n_threads) + " is above 1024");
    auto h = std::make_unique<kvz_model>();
    h->m = kvz::Model::load(path);
    h->n_threads = n_threads;
    *out = h.release();
  });
}

void kvz_model_free(kvz_model* m) { delete m; }

const char* kvz_model_error(const kvz_model* m) { return m ? m->err.c_str() : "model is NULL"; }

kvz_status kvz_model_get_info(const kvz_model* m, kvz_model_info* out) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(&m->err, [&] {
    need(out, "out");
    const kvz::HParams& hp = m->m->hp();
    const kvz::ModelIdentity& id = m->m->identity();
    *out = kvz_model_info{};
    out->n_layer = hp.n_layer;
    out->n_head = hp.n_head;
    out->n_head_kv = hp.n_head_kv;
    out->d_head = hp.d_head;
    out->n_embd = hp.n_embd;
    out->n_vocab = hp.n_vocab;
    out->n_ctx_train = hp.n_ctx_train;
    out->n_threads = m->n_threads;
    out->fingerprint = id.fingerprint;
    out->architecture = id.arch.c_str();
    out->name = id.name.c_str();
  });
}

kvz_status kvz_tokenize(const kvz_model* m, const char* text, size_t len, int parse_special, int32_t* out, size_t cap,
                        size_t* n_out) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(&m->err, [&] {
    if (len > 0) need(text, "text");
    const std::vector<int32_t> ids = m->m->tokenizer().encode(std::string_view(text ? text : "", len), false, parse_special != 0);
    copy_out(ids.data(), ids.size(), out, cap, n_out);
  });
}

kvz_status kvz_detokenize(const kvz_model* m, const int32_t* ids, size_t n, char* out, size_t cap, size_t* n_out) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(&m->err, [&] {
    need_ids(*m->m, ids, n);
    const std::string s = m->m->tokenizer().decode(std::vector<int32_t>(ids, ids + n), true);
    copy_out(s.data(), s.size(), out, cap, n_out);
  });
}

kvz_status kvz_apply_template(const kvz_model* m, const char* question, int32_t* out, size_t cap, size_t* n_out) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(&m->err, [&] {
    need(question, "question");
    const std::vector<int32_t> ids = kvz::kvzip_question_ids(*m->m, kvz::model_kvzip_template(*m->m), question);
    copy_out(ids.data(), ids.size(), out, cap, n_out);
  });
}

kvz_status kvz_model_score_heads(kvz_model* m, const char* text, const char* path, kvz_progress_fn progress,
                                 void* user) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(&m->err, [&] {
    need(path, "path");
    kvz::ThreadPool pool(m->n_threads);
    kvz::KvzipContext ctx(*m->m, pool);
    const std::string sample = text ? std::string(text) : kvz::make_demo_document().context;
    const auto cb = progress_fn(nullptr, progress, user);
    ctx.prefill(sample, cb);
    ctx.score(cb);
    kvz::HeadScoreFile h;
    h.n_layer = m->m->hp().n_layer;
    h.n_head_kv = m->m->hp().n_head_kv;
    h.scores = kvz::head_scores_from_pairs(ctx.scores());
    h.source = (text ? std::string("a sample text") : std::string("kvzip demo document")) + " (" +
               std::to_string(ctx.n_ctx()) + " tokens)";
    kvz::save_head_scores(path, m->m->identity(), h);
  });
}

// ---- methods ---------------------------------------------------------------------------

int kvz_method_count(void) { return static_cast<int>(methods().size()); }
const char* kvz_method_name(int i) { return method_at(i) ? method_at(i)->name.c_str() : nullptr; }
const char* kvz_method_description(int i) { return method_at(i) ? method_at(i)->description.c_str() : nullptr; }
const char* kvz_method_default_level(int i) { return method_at(i) ? kvz::prune_level_name(method_at(i)->level) : nullptr; }
int kvz_method_param_count(int i) { return method_at(i) ? static_cast<int>(method_at(i)->params.size()) : -1; }

kvz_status kvz_method_param_get(int i, int j, kvz_method_param* out) {
  return guard(nullptr, [&] {
    need(out, "out");
    const kvz::MethodInfo* mi = method_at(i);
    if (!mi) arg_error("method index " + std::to_string(i) + " is outside [0, " + std::to_string(kvz_method_count()) + ")");
    if (j < 0 || j >= static_cast<int>(mi->params.size()))
      arg_error("parameter index " + std::to_string(j) + " of " + mi->name + " is outside [0, " +
                std::to_string(mi->params.size()) + ")");
    const kvz::PressParam& p = mi->params[j];
    *out = kvz_method_param{};
    out->name = p.name.c_str();
    out->help = p.help.c_str();
    out->is_text = p.kind == kvz::PressParam::Text;
    out->is_integer = p.kind == kvz::PressParam::Int;
    out->def = p.def;
    out->min = p.min;
    out->max = p.max;
    out->text_default = p.text_def.c_str();
  });
}

// ---- contexts --------------------------------------------------------------------------

kvz_status kvz_context_new(kvz_model* m, const char* options, kvz_context** out) {
  KVZ_NEED_HANDLE(m, "model");
  return guard(nullptr, [&] {
    need(out, "out");
    *out = nullptr;
    std::map<std::string, std::string> kv;
    try {
      kv = kvz::parse_press_params(options ? options : "");
    } catch (const kvz::Error& e) {
      arg_error(std::string("context options: ") + e.what());
    }
    kvz::ContextOptions co;
    int threads = m->n_threads;
    auto integer = [&](const std::string& key, const std::string& v, long long lo, long long hi) {
      char* end = nullptr;
      const long long x = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || x < lo || x > hi)
        arg_error("context option " + key + "=" + v + ": expected an integer in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
      return x;
    };
    for (const auto& [key, v] : kv) {
      if (key == "kv_type") {
        if (v != "f16" && v != "q8_0") arg_error("context option kv_type=" + v + ": expected f16 or q8_0");
        co.kv_type = kvz::parse_kv_type(v);
      } else if (key == "n_ctx") {
        co.n_ctx_max = integer(key, v, 0, int64_t{1} << 24);
      } else if (key == "retain_full") {
        co.retain_full = integer(key, v, 0, 1) != 0;
      } else if (key == "threads") {
        threads = static_cast<int>(integer(key, v, 0, 1024));
      } else if (key == "chunk") {
        co.scoring.chunk = integer(key, v, 1, int64_t{1} << 24);
      } else {
        arg_error("unknown context option '" + key + "' (known: kv_type, n_ctx, retain_full, threads, chunk)");
      }
    }
    auto h = std::make_unique<kvz_context>();
    h->model = m;
    h->pool = std::make_unique<kvz::ThreadPool>(threads);
    h->ctx = std::make_unique<kvz::KvzipContext>(*m->m, *h->pool, co);
    *out = h.release();
  });
}

void kvz_context_free(kvz_context* c) { delete c; }

const char* kvz_context_error(const kvz_context* c) { return c ? c->err.c_str() : "context is NULL"; }

void kvz_context_cancel(kvz_context* c) {
  if (c) c->cancel.store(true, std::memory_order_relaxed);
}

// Every long call starts by clearing the cancel request: only a running call is cancelled.
#define KVZ_BEGIN_CALL(c) (c)->cancel.store(false, std::memory_order_relaxed)

kvz_status kvz_context_prefill(kvz_context* c, const char* text, size_t len, kvz_progress_fn progress, void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    if (len > 0) need(text, "text");
    c->ready = false;
    c->ctx->prefill(std::string(text ? text : "", len), progress_fn(c, progress, user));
    c->ready = true;
    c->default_level = kvz::PruneLevel::Pair;
  });
}

kvz_status kvz_context_prefill_ids(kvz_context* c, const int32_t* ids, size_t n, kvz_progress_fn progress, void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    need_ids(*c->model->m, ids, n);
    c->ready = false;
    c->ctx->prefill_ids(std::vector<int32_t>(ids, ids + n), progress_fn(c, progress, user));
    c->ready = true;
    c->default_level = kvz::PruneLevel::Pair;
  });
}

kvz_status kvz_context_score(kvz_context* c, kvz_progress_fn progress, void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    // KVzip's pass restores the cache after every chunk, so a cancel between chunks
    // leaves the prefilled context intact.
    ready_ctx(c, "score").score(progress_fn(c, progress, user));
    c->default_level = kvz::PruneLevel::Pair;
  });
}

kvz_status kvz_context_score_method(kvz_context* c, const char* method, const char* params, const char* question,
                                    kvz_progress_fn progress, void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    need(method, "method");
    kvz::KvzipContext& ctx = ready_ctx(c, "score");
    std::unique_ptr<kvz::Press> press;
    const kvz::MethodInfo* mi = nullptr;
    try {
      mi = &kvz::method_info(method);
      press = kvz::make_press(method, kvz::parse_press_params(params ? params : ""));
    } catch (const kvz::Error& e) {
      arg_error(e.what());
    }
    try {
      ctx.score(*press, question ? question : "", progress_fn(c, progress, user));
    } catch (const Cancelled&) {
      // Other presses re-run rows of the context with progress reported inside the pass;
      // stopped there, the cache may miss rows.
      c->ready = false;
      throw ApiError{KVZ_ERR_CANCELLED, "cancelled during " + std::string(method) +
                                            " scoring; the context must be prefilled or loaded again"};
    }
    c->default_level = mi->level;
  });
}

kvz_status kvz_context_prune(kvz_context* c, double ratio, const char* level) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    check_ratio(ratio);
    kvz::KvzipContext& ctx = ready_ctx(c, "prune");
    if (!ctx.has_scores()) state_error("prune: the context has no scores; score it first (kvz_context_score)");
    kvz::SelectOptions so;
    so.ratio = ratio;
    so.level = level_of(level, c->default_level);
    ctx.prune(so);
  });
}

kvz_status kvz_context_prune_threshold(kvz_context* c, double threshold) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    if (!std::isfinite(threshold)) arg_error("threshold must be a finite number");
    kvz::KvzipContext& ctx = ready_ctx(c, "prune");
    if (!ctx.has_scores()) state_error("prune: the context has no scores; score it first (kvz_context_score)");
    // Exact top-k (pair level) with k = the number of scores >= threshold keeps exactly
    // those pairs; at least one is kept, as the ratio must be positive.
    const kvz::HeadScores& s = ctx.scores();
    const kvz::HParams& hp = c->model->m->hp();
    int64_t above = 0, total = 0;
    for (int il = 0; il < hp.n_layer; ++il) {
      if (hp.is_swa(il)) continue;
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const float* h = s.head(il, ih);
        above += std::count_if(h, h + s.n_ctx, [&](float x) { return x >= threshold; });
        total += s.n_ctx;
      }
    }
    kvz::SelectOptions so;
    so.ratio = total == 0 ? 1.0 : std::max<double>(1.0, static_cast<double>(above)) / static_cast<double>(total);
    so.level = kvz::PruneLevel::Pair;
    ctx.prune(so);
  });
}

kvz_status kvz_context_prune_heads_file(kvz_context* c, const char* path, double ratio) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(path, "path");
    check_ratio(ratio);
    kvz::KvzipContext& ctx = ready_ctx(c, "prune");
    const kvz::HeadScoreFile hs = kvz::load_head_scores(path, c->model->m->identity());
    ctx.prune_heads(hs.scores, ratio);
  });
}

kvz_status kvz_context_save(const kvz_context* c, const char* path) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(path, "path");
    ready_ctx(c, "save").save(path);
  });
}

kvz_status kvz_context_load(kvz_context* c, const char* path) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(path, "path");
    c->ctx->load(path);  // throws before anything changes
    c->ready = true;
    c->default_level = kvz::PruneLevel::Pair;
  });
}

kvz_status kvz_context_compose(kvz_context* c, const kvz_context* const* parts, size_t n) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(parts, "parts");
    if (n == 0) arg_error("compose: give at least one context");
    std::vector<kvz::StoredContext> metas;
    metas.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const kvz_context* p = parts[i];
      if (!p) arg_error(fmt::format("compose: parts[{}] is NULL", i));
      if (p->model != c->model) arg_error(fmt::format("compose: parts[{}] belongs to another model", i));
      if (!p->ready) state_error(fmt::format("compose: parts[{}] holds no context (prefill or load one)", i));
      metas.push_back(p->ctx->stored());
    }
    std::vector<kvz::ComposePart> ps;
    for (size_t i = 0; i < n; ++i)
      ps.push_back({&metas[i], &parts[i]->ctx->session().cache(), fmt::format("parts[{}]", i)});
    kvz::ComposedContext out = kvz::compose_contexts(*c->model->m, ps, c->ctx->session().cache().type());
    c->ctx->assign(std::move(out.meta), std::move(out.cache), "the composed context");  // throws before changing c
    c->ready = true;
    c->default_level = kvz::PruneLevel::Pair;
  });
}

kvz_status kvz_context_get_info(const kvz_context* c, kvz_context_info* out) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(out, "out");
    const kvz::HParams& hp = c->model->m->hp();
    *out = kvz_context_info{};
    out->n_layer = hp.n_layer;
    out->n_head_kv = hp.n_head_kv;
    out->ratio_true = 1.0;
    if (!c->ready) return;
    const kvz::KvzipContext& ctx = *c->ctx;
    out->n_ctx = ctx.n_ctx();
    out->n_sys = ctx.n_sys();
    out->n_pos = ctx.session().n_pos();
    out->has_scores = ctx.has_scores();
    out->pruned = ctx.pruned();
    out->kv_bytes = ctx.kv_bytes();
    out->ratio_true = ratio_true(ctx, kept_mask(ctx));
  });
}

kvz_status kvz_context_scores(const kvz_context* c, const float** data, int64_t shape[3]) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(data, "data");
    need(shape, "shape");
    const kvz::KvzipContext& ctx = ready_ctx(c, "scores");
    if (!ctx.has_scores()) state_error("scores: the context has not been scored");
    const kvz::HeadScores& s = ctx.scores();
    *data = s.v.data();
    shape[0] = s.n_layer;
    shape[1] = s.n_head_kv;
    shape[2] = s.n_ctx;
  });
}

kvz_status kvz_context_kept(const kvz_context* c, uint8_t* out, size_t cap, size_t* n_out) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    const std::vector<uint8_t> k = kept_mask(ready_ctx(c, "kept"));
    copy_out(k.data(), k.size(), out, cap, n_out);
  });
}

kvz_status kvz_context_ids(const kvz_context* c, int32_t* out, size_t cap, size_t* n_out) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    const std::vector<int32_t>& ids = ready_ctx(c, "ids").ctx_ids();
    copy_out(ids.data(), ids.size(), out, cap, n_out);
  });
}

// ---- generation ------------------------------------------------------------------------

kvz_status kvz_gen_options_new(kvz_gen_options** out) {
  return guard(nullptr, [&] {
    need(out, "out");
    *out = new kvz_gen_options();
  });
}

void kvz_gen_options_free(kvz_gen_options* o) { delete o; }

kvz_status kvz_gen_options_set_max_new_tokens(kvz_gen_options* o, int n) {
  KVZ_NEED_HANDLE(o, "options");
  return guard(nullptr, [&] {
    if (n < 1 || n > (1 << 20)) arg_error("max_new_tokens " + std::to_string(n) + " is outside [1, 1048576]");
    o->gp.n_predict = n;
  });
}

kvz_status kvz_gen_options_set_temperature(kvz_gen_options* o, float t) {
  KVZ_NEED_HANDLE(o, "options");
  return guard(nullptr, [&] {
    if (!(t >= 0.0f && t <= 100.0f)) arg_error("temperature " + std::to_string(t) + " is outside [0, 100] (0: greedy)");
    o->gp.sampling.temperature = t;
  });
}

kvz_status kvz_gen_options_set_top_k(kvz_gen_options* o, int k) {
  KVZ_NEED_HANDLE(o, "options");
  return guard(nullptr, [&] {
    if (k < 0) arg_error("top_k " + std::to_string(k) + " is negative (0: off)");
    o->gp.sampling.top_k = k;
  });
}

kvz_status kvz_gen_options_set_top_p(kvz_gen_options* o, float p) {
  KVZ_NEED_HANDLE(o, "options");
  return guard(nullptr, [&] {
    if (!(p > 0.0f && p <= 1.0f)) arg_error("top_p " + std::to_string(p) + " is outside (0, 1] (1: off)");
    o->gp.sampling.top_p = p;
  });
}

kvz_status kvz_gen_options_set_seed(kvz_gen_options* o, uint64_t seed) {
  KVZ_NEED_HANDLE(o, "options");
  o->gp.sampling.seed = seed;
  return KVZ_OK;
}

kvz_status kvz_gen_options_set_update_cache(kvz_gen_options* o, int on) {
  KVZ_NEED_HANDLE(o, "options");
  o->update_cache = on != 0;
  return KVZ_OK;
}

kvz_status kvz_gen_options_set_cancel_flag(kvz_gen_options* o, const volatile int* flag) {
  KVZ_NEED_HANDLE(o, "options");
  o->cancel_flag = flag;
  return KVZ_OK;
}

kvz_status kvz_generate(kvz_context* c, const int32_t* ids, size_t n, const kvz_gen_options* o, kvz_token_fn on_token,
                        void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    need_ids(*c->model->m, ids, n);
    generate_ids(c, std::vector<int32_t>(ids, ids + n), o, on_token, user);
  });
}

kvz_status kvz_generate_text(kvz_context* c, const char* question, const kvz_gen_options* o, kvz_token_fn on_token,
                             void* user) {
  KVZ_NEED_HANDLE(c, "context");
  KVZ_BEGIN_CALL(c);
  return guard(&c->err, [&] {
    need(question, "question");
    generate_ids(c, ready_ctx(c, "generate").question_ids(question), o, on_token, user);
  });
}

kvz_status kvz_context_answer(const kvz_context* c, const char** text, size_t* len) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(text, "text");
    need(len, "len");
    *text = c->last.answer.c_str();
    *len = c->last.answer.size();
  });
}

kvz_status kvz_context_answer_ids(const kvz_context* c, const int32_t** ids, size_t* n) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(ids, "ids");
    need(n, "n");
    *ids = c->last.answer_ids.data();
    *n = c->last.answer_ids.size();
  });
}

kvz_status kvz_context_gen_stats(const kvz_context* c, kvz_gen_stats* out) {
  KVZ_NEED_HANDLE(c, "context");
  return guard(&c->err, [&] {
    need(out, "out");
    const kvz::GenerateStats& s = c->last.stats;
    *out = kvz_gen_stats{s.n_prompt, s.n_generated, s.prefill_s, s.decode_s, s.stopped_at_eog ? 1 : 0};
  });
}

}  // extern "C"

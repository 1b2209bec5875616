#include "server/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/error.h"
#include "kv/kvzap_pruner.h"
#include "kv/kvzip_context.h"
#include "kv/press.h"
#include "model/session.h"
#include "server/api_error.h"
#include "tokenizer/text_stream.h"

namespace kvz::server {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }
int64_t us_since(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t).count();
}
}  // namespace

std::vector<GenJob::Event> GenJob::wait(int ms) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, std::chrono::milliseconds(ms), [&] { return !events_.empty(); });
  std::vector<Event> out(events_.begin(), events_.end());
  events_.clear();
  return out;
}

void GenJob::push(Event e) {
  {
    std::lock_guard lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

struct Engine::Slot {
  std::shared_ptr<GenJob> job;
  std::unique_ptr<Session> s;
  std::unique_ptr<Sampler> sampler;
  std::vector<float> logits;  // [n_vocab] of the next token
  std::vector<int32_t> out;   // generated ids, without an end-of-generation token
  int64_t prefilled = 0;
  bool decoding = false;
  TextStream text;
  clock_type::time_point t_admit, t_decode;
};

Engine::Engine(const Model& model, const EngineOptions& opt, ContextRegistry& contexts, Metrics& metrics,
               ContextRegistry::Log log)
    : model_(model),
      opt_(opt),
      contexts_(contexts),
      metrics_(metrics),
      log_(std::move(log)),
      n_ctx_(opt.n_ctx > 0 ? opt.n_ctx : model.hp().n_ctx_train),
      pool_(opt.threads) {
  if (opt_.parallel < 1 || opt_.parallel > kAttnMaxRows) fail("--parallel {} is outside [1, {}]", opt_.parallel, kAttnMaxRows);
  if (opt_.prefill_chunk < 1) fail("prefill chunk must be positive");
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() { stop(false); }

void Engine::submit(std::shared_ptr<GenJob> job) {
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    waiting_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void Engine::submit(std::shared_ptr<CompressJob> job) {
  {
    std::lock_guard lk(mu_);
    if (stopping_) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    uploads_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void Engine::stop(bool drain) {
  {
    std::lock_guard lk(mu_);
    if (!stopping_) drain_ = drain;
    else if (!drain) drain_ = false;  // a second, forced stop
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard jl(join_mu_);  // a second stop (forced) may come from another thread
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

size_t Engine::queue_depth() const {
  std::lock_guard lk(mu_);
  return waiting_.size() + uploads_.size();
}

// An upload allocates and frees the full cache and the scoring buffers (several times the
// compressed context it leaves behind), and every request copies its context's rows. glibc
// keeps freed heap memory for reuse and hands little of it back by itself: run() trims after
// each upload and once the slots have drained and the engine has been idle a second.
void Engine::return_free_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

void Engine::run() {
  bool trim_pending = false;  // slots finished since the last trim
  for (;;) {
    std::shared_ptr<CompressJob> upload;
    {
      std::unique_lock lk(mu_);
      const auto has_work = [&] {
        return stopping_ || !uploads_.empty() || active_.load() > 0 ||
               (!waiting_.empty() && static_cast<int>(slots_.size()) < opt_.parallel);
      };
      // Trimming after every request would make the next one fault its pages in afresh;
      // after a second without work it costs no one anything.
      if (trim_pending && !cv_.wait_for(lk, std::chrono::seconds(1), has_work)) {
        lk.unlock();
        return_free_memory();
        trim_pending = false;
        continue;
      }
      cv_.wait(lk, has_work);
      if (stopping_ && !drain_) {  // cancel everything
        for (auto& j : waiting_) j->push({"", true, "cancelled", "the server is shutting down", 503});
        waiting_.clear();
        for (auto& u : uploads_) contexts_.set_failed(u->entry, "the server stopped before this upload was compressed");
        uploads_.clear();
      }
      if (stopping_ && waiting_.empty() && uploads_.empty() && slots_.empty()) break;
      if (stopping_ && !drain_ && slots_.empty()) break;
      if (!uploads_.empty()) {
        upload = uploads_.front();
        uploads_.pop_front();
      }
    }
    if (stopping_ && !drain_)
      for (auto& s : slots_) s->job->cancel();
    if (upload) {
      run_compress(*upload);
      return_free_memory();
      continue;
    }
    serve_slots();
    // Each slot holds its own copy of its context's rows: once the last one is done and the
    // engine has been idle a second, the freed copies go back to the system too.
    if (slots_.empty()) trim_pending = true;
  }
  for (auto& s : slots_) s->job->push({"", true, "cancelled", "the server is shutting down", 503});
  slots_.clear();
  active_ = 0;
}

void Engine::admit(std::shared_ptr<GenJob> job) {
  auto slot = std::make_unique<Slot>();
  slot->job = std::move(job);
  GenJob& j = *slot->job;
  slot->t_admit = clock_type::now();
  try {
    const KvType type = j.base ? j.base->cache.type() : KvType::F16;
    slot->s = std::make_unique<Session>(model_, pool_, n_ctx_, type);
    if (j.base) {  // the slot's own copy: the shared context is never written
      // With room for the prompt and the first answer tokens, so the first forward pass does
      // not regrow (and copy again) every head; a longer answer grows as usual.
      const int64_t room = static_cast<int64_t>(j.prompt.size()) + std::min(j.req.max_tokens, 256) + 1;
      slot->s->cache() = j.full ? j.full->full_cache().clone(room) : j.base->cache.clone(room);
      slot->s->set_n_pos(j.base->meta.n_pos);
    }
    if (slot->s->n_pos() + static_cast<int64_t>(j.prompt.size()) + 1 > n_ctx_)
      throw ApiError(400, fmt::format("the prompt ({} tokens after {} cached) does not fit the context window of {}",
                                      j.prompt.size(), slot->s->n_pos(), n_ctx_),
                     "invalid_request_error", "messages", "context_length_exceeded");
    slot->sampler = std::make_unique<Sampler>(j.req.sampling);
    slot->text = TextStream(model_.tokenizer(), j.req.stop);
  } catch (const ApiError& e) {
    j.push({"", true, "", e.what(), e.status});
    return;
  } catch (const std::exception& e) {
    j.push({"", true, "", e.what(), 500});
    return;
  }
  slots_.push_back(std::move(slot));
  active_ = static_cast<int>(slots_.size());
}

void Engine::finish(Slot& s, const std::string& reason) {
  GenJob& j = *s.job;
  if (s.decoding) j.decode_s = since(s.t_decode);
  j.completion_tokens = static_cast<int64_t>(s.out.size());
  GenJob::Event e;
  e.text = s.text.flush(s.out);
  e.done = true;
  e.finish_reason = reason;
  if (j.req.update_cache && reason != "cancelled" && j.base) {
    // The turn stays: a new context derived from the slot's own copy (the original is untouched).
    try {
      auto ready = std::make_shared<ReadyContext>();
      ready->meta = j.base->meta;
      ready->meta.n_pos = s.s->n_pos();
      ready->cache = std::move(s.s->cache());
      nlohmann::json info = nlohmann::json::parse(j.base->meta.info, nullptr, false);
      if (!info.is_object()) info = nlohmann::json::object();
      info["parent"] = j.base_id;
      info["turns"] = info.value("turns", 0) + 1;
      info["kv_bytes"] = ready->cache.bytes_used();
      info["n_pos"] = ready->meta.n_pos;
      info["created"] = static_cast<int64_t>(std::time(nullptr));
      auto entry = contexts_.create(info);
      contexts_.publish(entry, ready, info);
      j.new_context_id = entry->id;
    } catch (const std::exception& ex) {
      e.error = std::string("the answer was generated but the continued context could not be stored: ") + ex.what();
      e.error_status = 500;
    }
  }
  j.push(std::move(e));
}

void Engine::fail_slot(Slot& s, const std::string& error, int status) {
  s.job->push({"", true, "", error, status});
}

void Engine::serve_slots() {
  {  // new requests take free slots, in arrival order
    std::unique_lock lk(mu_);
    while (!waiting_.empty() && static_cast<int>(slots_.size()) < opt_.parallel) {
      auto j = waiting_.front();
      waiting_.pop_front();
      lk.unlock();
      if (!j->cancelled()) admit(std::move(j));
      lk.lock();
    }
  }
  // Leave the slots whose client went away.
  for (auto& s : slots_)
    if (s->job->cancelled()) {
      finish(*s, "cancelled");
      s.reset();
    }
  std::erase(slots_, nullptr);

  // One prefill chunk, for the earliest admitted slot still prefilling.
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.decoding) continue;
    const auto& prompt = s.job->prompt;
    const int64_t n = std::min<int64_t>(opt_.prefill_chunk, static_cast<int64_t>(prompt.size()) - s.prefilled);
    const bool last = s.prefilled + n == static_cast<int64_t>(prompt.size());
    const auto t0 = clock_type::now();
    try {
      s.s->forward(std::span<const int32_t>(prompt).subspan(s.prefilled, n), last ? LogitsMode::Last : LogitsMode::None,
                   last ? &s.logits : nullptr, n);
    } catch (const std::exception& e) {
      fail_slot(s, e.what(), 400);
      sp.reset();
      break;
    }
    metrics_.prefill_us += us_since(t0);
    metrics_.prompt_tokens += n;
    s.prefilled += n;
    s.job->prefill_s += since(t0);
    if (last) {
      s.decoding = true;
      s.t_decode = clock_type::now();
      s.job->prompt_tokens = static_cast<int64_t>(prompt.size());
    }
    break;
  }
  std::erase(slots_, nullptr);

  // One decode step for every decoding slot: sample its next token, then feed the tokens of
  // all slots that go on in one batched forward pass.
  std::vector<Session*> batch;
  std::vector<int32_t> toks;
  std::vector<Slot*> rows;
  const Tokenizer& tok = model_.tokenizer();
  const int n_vocab = model_.hp().n_vocab;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (!s.decoding) continue;
    if (s.job->req.ignore_eos)
      for (int32_t e : tok.vocab().eog_ids)
        if (e >= 0 && e < n_vocab) s.logits[e] = -INFINITY;
    const int32_t id = s.sampler->sample(s.logits.data(), n_vocab);
    metrics_.generated_tokens += 1;
    if (tok.is_eog(id)) {  // never fed back (kvzip-spec §9.11), never shown
      finish(s, "stop");
      sp.reset();
      continue;
    }
    s.out.push_back(id);
    std::string piece;
    const bool stopped = s.text.push(s.out, piece);
    if (!piece.empty()) s.job->push({piece, false, "", "", 0});
    if (stopped) {
      finish(s, "stop");
      sp.reset();
      continue;
    }
    if (static_cast<int>(s.out.size()) >= s.job->req.max_tokens || s.s->n_pos() + 1 > n_ctx_) {
      finish(s, "length");
      sp.reset();
      continue;
    }
    batch.push_back(s.s.get());
    toks.push_back(id);
    rows.push_back(&s);
  }
  std::erase(slots_, nullptr);
  if (!batch.empty()) {
    const auto t0 = clock_type::now();
    try {
      if (batch.size() == 1) {  // the same path as a lone generate()
        batch[0]->forward(std::span<const int32_t>(toks), LogitsMode::Last, &rows[0]->logits);
      } else {
        step_logits_.resize(batch.size() * static_cast<size_t>(n_vocab));
        Session::forward_step(batch, toks, step_logits_.data(), step_scratch_);
        for (size_t i = 0; i < rows.size(); ++i)
          rows[i]->logits.assign(step_logits_.begin() + i * n_vocab, step_logits_.begin() + (i + 1) * n_vocab);
      }
    } catch (const std::exception& e) {
      for (Slot* r : rows) fail_slot(*r, e.what(), 500);
      for (auto& sp : slots_)
        if (std::find(rows.begin(), rows.end(), sp.get()) != rows.end()) sp.reset();
      std::erase(slots_, nullptr);
    }
    metrics_.decode_us += us_since(t0);
    metrics_.decode_steps += 1;
    metrics_.decode_rows += static_cast<int64_t>(batch.size());
  }
  active_ = static_cast<int>(slots_.size());
}

void Engine::run_compress(CompressJob& job) {
  auto& e = job.entry;
  int64_t served_us = 0;  // decode work done inside the upload, counted by serve_slots itself
  // Between two prefill batches or scoring chunks: serve the slots, and give up on a forced stop.
  auto between = [&](CtxState st, int64_t d, int64_t total) {
    // A re-prune keeps the entry ready: queries go on from the current compression.
    if (!job.recompress) contexts_.set_state(e, st, total > 0 ? static_cast<double>(d) / total : 0.0);
    {
      std::lock_guard lk(mu_);
      if (stopping_ && !drain_) fail("the server stopped before this upload was compressed");
    }
    {
      std::lock_guard el(e->mu);
      if (e->deleted) fail("the context was deleted");
      if (!e->abandon.empty()) fail("{}", e->abandon);
    }
    const auto t = clock_type::now();
    serve_slots();
    served_us += us_since(t);
  };
  try {
    std::shared_ptr<KvzipContext> ctx;
    Compressed c;
    const ContextRequest& r = job.req;
    if (!job.recompress) {
      ContextOptions co;
      co.n_ctx_max = n_ctx_;
      co.kv_type = parse_kv_type(r.kv_type);
      co.retain_full = r.retain_full;
      co.n_batch = opt_.prefill_chunk;
      ctx = std::make_shared<KvzipContext>(model_, pool_, co);
      // KVzap's streaming eviction: the pruner watches the prefill and evicts after each batch.
      std::unique_ptr<KvzapPruner> pruner;
      if (r.threshold) {
        KVZ_ASSERT(job.surrogate != nullptr, "a threshold upload without its surrogate");
        pruner = std::make_unique<KvzapPruner>(ctx->session(), *job.surrogate,
                                               KvzapOptions{static_cast<float>(*r.threshold), r.window});
        pruner->protect_prefix(ctx->n_sys());
      }
      contexts_.set_state(e, CtxState::Prefilling, 0);
      const auto t0 = clock_type::now();
      ctx->prefill_ids(job.ids, [&](int64_t d, int64_t t) {
        if (pruner) pruner->prune();
        between(CtxState::Prefilling, d, t);
      });
      c.prefill_s = since(t0) - served_us * 1e-6;
      metrics_.prefill_us += us_since(t0) - served_us;
      served_us = 0;
      metrics_.context_tokens += ctx->n_ctx() + ctx->n_sys();
      if (pruner) {
        // The pairs went while prefilling: "before" is every position in every head, as
        // `kvzip compress --threshold` reports it.
        const HParams& hp = model_.hp();
        c.pr.ratio_true = pruner->stats().kept_fraction();
        c.pr.kv_bytes_before = static_cast<size_t>(ctx->n_sys() + ctx->n_ctx()) * hp.n_layer * hp.n_head_kv * 2 *
                               ctx->session().cache().row_bytes();
        c.pr.kv_bytes_after = ctx->kv_bytes();
        pruner.reset();  // detaches it from the session
        ctx->note_pruned();
        c.method = "kvzap";
        c.level = "threshold";
        publish(job, ctx, c);
        return;
      }
    } else {
      std::lock_guard el(e->mu);
      ctx = e->full;
      if (!ctx) fail("the full cache of this context was not kept (upload it with retain_full)");
    }
    c.method = job.recompress ? job.re.method : r.method;
    c.ratio = job.recompress ? job.re.ratio : r.ratio.value_or(0.3);
    const std::string level_s = job.recompress ? job.re.level : r.level;
    std::map<std::string, std::string> params;
    if (!job.recompress)
      for (const auto& [k, v] : r.params) params[k] = v;
    const MethodInfo& mi = method_info(c.method);
    std::unique_ptr<Press> press = make_press(c.method, params);
    SelectOptions so;
    so.ratio = *c.ratio;
    so.level = level_s.empty() ? mi.level : parse_prune_level(level_s);
    c.level = prune_level_name(so.level);
    if (!job.recompress) contexts_.set_state(e, CtxState::Scoring, 0);
    const auto t1 = clock_type::now();
    c.pr = ctx->compress(*press, so, "", [&](int64_t d, int64_t t) { between(CtxState::Scoring, d, t); });
    c.score_s = since(t1) - served_us * 1e-6;
    publish(job, ctx, c);
  } catch (const std::exception& ex) {
    log_(fmt::format("{}: failed: {}", e->id, ex.what()));
    if (job.recompress) {
      // The previous compression stays ready; only this re-prune failed.
      contexts_.end_recompress(e, ex.what());
    } else {
      contexts_.set_failed(e, ex.what());
    }
  }
}

void Engine::publish(CompressJob& job, const std::shared_ptr<KvzipContext>& ctx, const Compressed& c) {
  auto& e = job.entry;
  nlohmann::json info;
  {
    std::lock_guard el(e->mu);
    info = e->info;
  }
  auto ready = std::make_shared<ReadyContext>();
  ready->meta = ctx->stored();
  ready->cache = ctx->session().cache().clone();
  const HParams& hp = model_.hp();
  std::vector<double> layer_kept(hp.n_layer, 0.0);
  const int64_t n_full = ctx->n_sys() + ctx->n_ctx();
  for (int il = 0; il < hp.n_layer; ++il) {
    int64_t rows = 0;
    for (int ih = 0; ih < hp.n_head_kv; ++ih) rows += ready->cache.seg(il, ih).len;
    layer_kept[il] = hp.is_swa(il) ? 1.0
                                   : static_cast<double>(rows - int64_t{hp.n_head_kv} * ctx->n_sys()) /
                                         (static_cast<double>(hp.n_head_kv) * std::max<int64_t>(1, ctx->n_ctx()));
  }
  info["method"] = c.method;
  if (c.ratio) info["ratio"] = *c.ratio;
  info["level"] = c.level;
  info["kv_type"] = kv_type_name(ready->cache.type());
  info["n_ctx"] = ctx->n_ctx();
  info["n_sys"] = ctx->n_sys();
  info["n_pos"] = n_full;
  info["kv_bytes_full"] = c.pr.kv_bytes_before;
  info["kv_bytes"] = c.pr.kv_bytes_after;
  info["ratio_true"] = c.pr.ratio_true;
  info["layer_kept"] = layer_kept;
  if (c.prefill_s > 0) info["prefill_s"] = c.prefill_s;
  info["score_s"] = c.score_s;
  info["model"] = model_.identity().name.empty() ? model_.identity().arch : model_.identity().name;
  info["model_fingerprint"] = fmt::format("{:016x}", model_.identity().fingerprint);
  if (!info.contains("created")) info["created"] = static_cast<int64_t>(std::time(nullptr));
  if (!job.recompress && job.req.retain_full) {
    std::lock_guard el(e->mu);
    e->full = ctx;
  }
  contexts_.publish(e, std::move(ready), info);
  metrics_.contexts_compressed += 1;
  const std::string rule = c.ratio ? fmt::format("ratio {}", *c.ratio)
                                   : fmt::format("threshold {} (window {})", info.value("threshold", 0.0),
                                                 info.value("window", int64_t{0}));
  log_(fmt::format("{}: ready: {} tokens, {} at {} kept {:.1f}% ({} -> {} KV bytes), prefill {:.2f} s, "
                   "scoring {:.2f} s", e->id, ctx->n_ctx(), c.method, rule, 100 * c.pr.ratio_true, c.pr.kv_bytes_before,
                   c.pr.kv_bytes_after, c.prefill_s, c.score_s));
}

}  // namespace kvz::server

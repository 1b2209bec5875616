#include "server/service.h"

#include <algorithm>
#include <ctime>

#include "kv/compose.h"
#include "kv/kvzip_context.h"
#include "kv/policy.h"
#include "kv/press.h"
#include "server/api_error.h"

namespace kvz::server {

using nlohmann::json;

namespace {

// The method, its parameters and the level of an upload or a re-prune, each a 400 naming
// its field, before anything is queued.
void check_method(const std::string& method, const std::map<std::string, std::string>& params,
                  const std::string& level) {
  try {
    method_info(method);
  } catch (const Error& e) {
    bad_param("method", e.what());
  }
  try {
    make_press(method, params);
  } catch (const Error& e) {
    bad_param("params", e.what());
  }
  if (level.empty()) return;
  try {
    parse_prune_level(level);
  } catch (const Error& e) {
    bad_param("level", e.what());
  }
}

}  // namespace

Service::Service(const Model& model, ServiceOptions opt)
    : model_(model), opt_(std::move(opt)), created_(static_cast<int64_t>(std::time(nullptr))) {
  if (!opt_.log) opt_.log = [](const std::string&) {};
  contexts_ = std::make_unique<ContextRegistry>(model.identity(), open_context_store(opt_.store, opt_.log),
                                                opt_.mem_budget, opt_.log);
  contexts_->scan();
  engine_ = std::make_unique<Engine>(model, opt_.engine, *contexts_, metrics_, opt_.log);
  if (!opt_.kvzap_dir.empty()) surrogate(opt_.kvzap_dir, "--kvzap");  // a folder that does not load stops the start
  tmpl_ = model_kvzip_template(model);
  n_sys_ = static_cast<int64_t>(model.tokenizer().encode(tmpl_.prefix, false, true).size());
}

Service::~Service() { engine_->stop(false); }

json Service::models() const {
  return {{"object", "list"},
          {"data", json::array({{{"id", opt_.model_name},
                                 {"object", "model"},
                                 {"created", created_},
                                 {"owned_by", "kvzip"},
                                 {"arch", model_.identity().arch},
                                 {"n_ctx", engine_->n_ctx()}}})}};
}

json Service::health() const {
  return {{"status", "ok"},
          {"model", opt_.model_name},
          {"slots", engine_->parallel()},
          {"slots_busy", engine_->active_slots()},
          {"queue", engine_->queue_depth()},
          {"store", contexts_->store_name()}};
}

std::string Service::metrics_text() const {
  std::string o;
  auto line = [&](const char* name, const char* help, const char* type, const std::string& value) {
    o += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
  };
  o += "# HELP kvzip_requests_total HTTP requests by endpoint and status\n# TYPE kvzip_requests_total counter\n";
  for (const auto& [k, n] : metrics_.requests_snapshot())
    o += fmt::format("kvzip_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  const double pre_s = metrics_.prefill_us.load() * 1e-6, dec_s = metrics_.decode_us.load() * 1e-6;
  line("kvzip_prompt_tokens_total", "prompt and context tokens prefilled", "counter",
       std::to_string(metrics_.prompt_tokens.load() + metrics_.context_tokens.load()));
  line("kvzip_generated_tokens_total", "tokens generated", "counter", std::to_string(metrics_.generated_tokens.load()));
  line("kvzip_prefill_seconds_total", "engine time in prefill", "counter", fmt::format("{:.6f}", pre_s));
  line("kvzip_decode_seconds_total", "engine time in decode steps", "counter", fmt::format("{:.6f}", dec_s));
  line("kvzip_prefill_tokens_per_second", "prefilled tokens / prefill time, since start", "gauge",
       fmt::format("{:.3f}", pre_s > 0 ? (metrics_.prompt_tokens.load() + metrics_.context_tokens.load()) / pre_s : 0.0));
  line("kvzip_decode_tokens_per_second", "rows decoded / decode time, since start (all slots together)", "gauge",
       fmt::format("{:.3f}", dec_s > 0 ? metrics_.decode_rows.load() / dec_s : 0.0));
  line("kvzip_decode_batch_mean", "mean slots per decode step", "gauge",
       fmt::format("{:.3f}", metrics_.decode_steps.load() > 0
                                 ? static_cast<double>(metrics_.decode_rows.load()) / metrics_.decode_steps.load()
                                 : 0.0));
  line("kvzip_queue_depth", "requests and uploads waiting", "gauge", std::to_string(engine_->queue_depth()));
  line("kvzip_slots_busy", "slots generating", "gauge", std::to_string(engine_->active_slots()));
  std::map<std::string, int> by_state;
  size_t full_bytes = 0;
  for (const auto& e : contexts_->list()) {
    std::lock_guard el(e->mu);
    ++by_state[ctx_state_name(e->state)];
    if (e->ready) full_bytes += e->info.value("kv_bytes_full", size_t{0});
  }
  o += "# HELP kvzip_contexts stored contexts by state\n# TYPE kvzip_contexts gauge\n";
  for (const char* st : {"queued", "prefilling", "scoring", "ready", "failed"})
    o += fmt::format("kvzip_contexts{{state=\"{}\"}} {}\n", st, by_state[st]);
  line("kvzip_contexts_in_memory", "ready contexts held in memory", "gauge", std::to_string(contexts_->n_held()));
  o += "# HELP kvzip_kv_bytes_held KV bytes of the contexts in memory: compressed (held) and before compression\n"
       "# TYPE kvzip_kv_bytes_held gauge\n";
  o += fmt::format("kvzip_kv_bytes_held{{kind=\"compressed\"}} {}\n", contexts_->bytes_held());
  o += fmt::format("kvzip_kv_bytes_held{{kind=\"full\"}} {}\n", full_bytes);
  return o;
}

std::shared_ptr<const KvzapModel> Service::surrogate(const std::string& dir, const std::string& param) {
  std::lock_guard lk(surrogates_mu_);
  auto& slot = surrogates_[dir];
  if (!slot) {
    try {
      slot = std::make_shared<const KvzapModel>(KvzapModel::load(dir, model_));
    } catch (const Error& e) {
      surrogates_.erase(dir);
      bad_param(param, fmt::format("KVzap surrogate {}: {}", dir, e.what()));
    }
  }
  return slot;
}

json Service::create_context(const json& body) {
  ContextRequest r = parse_context_request(body);
  auto job = std::make_shared<CompressJob>();
  if (r.method == "kvzap") {
    // KVzap scores with a surrogate folder: the request's params.dir, else the server's own.
    const auto it = std::find_if(r.params.begin(), r.params.end(), [](const auto& kv) { return kv.first == "dir"; });
    const bool given = it != r.params.end();
    const std::string dir = given ? it->second : opt_.kvzap_dir;
    if (!given) {
      if (opt_.kvzap_dir.empty())
        throw ApiError(400,
                       "method 'kvzap' needs a KVzap surrogate for this model and the server has none: train one "
                       "with `kvzip train-kvzap` and start the server with --kvzap DIR (or give params.dir)",
                       "invalid_request_error", "method", "kvzap_surrogate_missing");
      r.params.emplace_back("dir", opt_.kvzap_dir);
    }
    job->surrogate = surrogate(dir, given ? "params.dir" : "method");
  }
  // Everything is checked here, before the upload is accepted.
  check_method(r.method, std::map<std::string, std::string>(r.params.begin(), r.params.end()), r.level);
  job->ids = model_.tokenizer().encode(r.text, false, /*parse_special=*/false);
  if (job->ids.empty()) bad_param("text", "the context text has no tokens");
  const int64_t n_sys = n_sys_;
  const int64_t n = static_cast<int64_t>(job->ids.size());
  // The context-length rule (compress_positions_needed): room for what this method's
  // scoring runs after the context, KVzip's repeat chunk shrinking near the window.
  const std::unique_ptr<Press> press = make_press(r.method, std::map<std::string, std::string>(r.params.begin(), r.params.end()));
  const int64_t need = compress_positions_needed(n_sys, n, *press, kvzip_repeat_prompt(model_, tmpl_));
  if (need > engine_->n_ctx())
    throw ApiError(400,
                   fmt::format("the context has {} tokens (+{} system prompt); with {} scoring it needs {} positions, "
                               "the window is {}",
                               n, n_sys, r.method, need, engine_->n_ctx()),
                   "invalid_request_error", "text", "context_length_exceeded");
  const HParams& hp = model_.hp();
  const size_t full_bytes = static_cast<size_t>(n_sys + n) * hp.n_layer * hp.n_head_kv * 2 *
                            kv_row_bytes(parse_kv_type(r.kv_type), hp.d_head);
  const size_t peak = full_bytes * (r.retain_full ? 2 : 1);
  if (opt_.mem_budget > 0 && peak > opt_.mem_budget)
    throw ApiError(400,
                   fmt::format("compressing this context needs {} bytes of KV cache ({} tokens{}), more than the "
                               "server's memory budget of {} bytes",
                               peak, n_sys + n, r.retain_full ? ", full copy retained" : "", opt_.mem_budget),
                   "invalid_request_error", "text", "context_too_large");
  json info = {{"created", static_cast<int64_t>(std::time(nullptr))},
               {"method", r.method},
               {"kv_type", r.kv_type},
               {"n_ctx", n},
               {"retain_full_requested", r.retain_full}};
  if (r.ratio) info["ratio"] = *r.ratio;
  if (r.threshold) {
    info["threshold"] = *r.threshold;
    info["window"] = r.window;
  }
  if (!r.level.empty()) info["level"] = r.level;
  job->entry = contexts_->create(info);
  job->req = std::move(r);
  try {
    engine_->submit(job);
  } catch (const std::exception& e) {
    contexts_->set_failed(job->entry, e.what());
    throw;
  }
  return ContextRegistry::describe(*job->entry);
}

json Service::get_context(const std::string& id) const {
  auto e = contexts_->find(id);
  if (!e) context_not_found(id, "id");
  return ContextRegistry::describe(*e);
}

json Service::list_contexts() const {
  json data = json::array();
  for (const auto& e : contexts_->list()) data.push_back(ContextRegistry::describe(*e));
  return {{"object", "list"}, {"data", data}};
}

json Service::delete_context(const std::string& id) {
  if (!contexts_->remove(id)) context_not_found(id, "id");
  return {{"id", id}, {"object", "context.deleted"}, {"deleted", true}};
}

json Service::recompress(const std::string& id, const json& body) {
  RecompressRequest r = parse_recompress_request(body);
  auto e = contexts_->find(id);
  if (!e) context_not_found(id, "id");
  check_method(r.method, {}, r.level);
  {
    std::lock_guard el(e->mu);
    if (e->state != CtxState::Ready)
      throw ApiError(409, fmt::format("context '{}' is {}; only a ready context can be re-pruned", id,
                                      ctx_state_name(e->state)),
                     "invalid_request_error", "id", "context_not_ready");
    if (!e->full)
      throw ApiError(409,
                     "the full cache of context '" + id +
                         "' was not kept, so it cannot be re-pruned; upload it again with \"retain_full\": true",
                     "invalid_request_error", "id", "full_cache_not_retained");
  }
  contexts_->claim_for_recompress(e);  // one re-prune at a time, across replicas
  auto job = std::make_shared<CompressJob>();
  job->entry = e;
  job->recompress = true;
  job->re = r;
  try {
    engine_->submit(job);
  } catch (...) {
    contexts_->end_recompress(e, "");
    throw;
  }
  return ContextRegistry::describe(*e);
}

std::vector<int32_t> Service::question_prompt(const GenRequest& r) const {
  // The context sits inside the user turn KVzip's template opened; a question continues it.
  if (r.messages.size() != 1 || r.messages[0].role != "user")
    bad_param("messages",
              "with 'context_id' or 'context_ids', send exactly one user message (the question); continue a "
              "conversation with \"update_cache\": true and the context_id the answer returns");
  return kvzip_question_ids(model_, tmpl_, r.messages[0].content);
}

std::shared_ptr<const ReadyContext> Service::compose(const std::vector<std::string>& ids) {
  std::vector<std::shared_ptr<const ReadyContext>> held;  // kept alive while composing
  std::vector<ComposePart> parts;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string param = fmt::format("context_ids[{}]", i);
    if (!valid_context_id(ids[i])) context_not_found(ids[i], param);
    try {
      held.push_back(contexts_->acquire(ids[i]));
    } catch (ApiError& e) {
      e.param = param;  // which of the ids
      throw;
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) parts.push_back({&held[i]->meta, &held[i]->cache, "context '" + ids[i] + "'"});
  auto out = std::make_shared<ReadyContext>();
  try {
    ComposedContext c = compose_contexts(model_, parts, held[0]->cache.type());
    out->meta = std::move(c.meta);
    out->cache = std::move(c.cache);
  } catch (const Error& e) {
    bad_param("context_ids", e.what());
  }
  return out;
}

std::shared_ptr<GenJob> Service::start_generation(const json& body, bool chat) {
  auto job = std::make_shared<GenJob>();
  job->req = parse_gen_request(body, chat, opt_.limits);
  GenRequest& r = job->req;
  const Tokenizer& tok = model_.tokenizer();
  if (r.context_ids.size() == 1) r.context_id = r.context_ids[0];  // one: the plain case
  if (r.context_ids.size() > 1) {
    job->base = compose(r.context_ids);
    job->prompt = chat ? question_prompt(r) : tok.encode(r.prompt, false, /*parse_special=*/true);
  } else if (!r.context_id.empty()) {
    if (!valid_context_id(r.context_id)) context_not_found(r.context_id, "context_id");
    job->base = contexts_->acquire(r.context_id);
    job->base_id = r.context_id;
    if (r.full_cache) {  // the retained unpruned cache: the answer the compression is judged against
      std::shared_ptr<ContextEntry> e = contexts_->find(r.context_id);
      if (e) {
        std::lock_guard el(e->mu);
        job->full = e->full;
      }
      if (!job->full)
        throw ApiError(409,
                       "the full cache of context '" + r.context_id +
                           "' was not kept; upload it with \"retain_full\": true to answer from it",
                       "invalid_request_error", "full_cache", "full_cache_not_retained");
    }
    if (chat) {
      job->prompt = question_prompt(r);
    } else {
      job->prompt = tok.encode(r.prompt, false, /*parse_special=*/true);
    }
  } else if (chat) {
    const ChatFormat fmt = detect_chat_format(tok.vocab().chat_template);
    if (fmt.family == ChatFamily::Unknown)
      bad_param("messages", "this model has no chat template kvzip recognises; use /v1/completions");
    std::string text;
    try {
      text = render_chat(fmt, r.messages, true);
    } catch (const Error& e) {
      bad_param("messages", e.what());
    }
    job->prompt = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  } else {
    job->prompt = tok.encode(r.prompt, /*add_special=*/true, /*parse_special=*/true);
  }
  if (job->prompt.empty()) bad_param(chat ? "messages" : "prompt", "the prompt has no tokens");
  const int64_t cached = job->base ? job->base->meta.n_pos : 0;
  if (cached + static_cast<int64_t>(job->prompt.size()) + 1 > engine_->n_ctx())
    throw ApiError(400,
                   fmt::format("the prompt has {} tokens after {} cached; the context window is {}",
                               job->prompt.size(), cached, engine_->n_ctx()),
                   "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded");
  engine_->submit(job);
  return job;
}

// llama-server's name for the same figures: the request's own prefill and decode times.
static json timings(const GenJob& job) {
  return {{"prefill_ms", job.prefill_s * 1e3},
          {"decode_ms", job.decode_s * 1e3},
          {"decode_tokens_per_second", job.decode_s > 0 ? (job.completion_tokens - 1) / job.decode_s : 0.0}};
}

json Service::completion_body(const GenJob& job, const std::string& id, const std::string& text,
                              const std::string& finish_reason) const {
  const bool chat = job.req.chat;
  json choice = {{"index", 0}, {"finish_reason", finish_reason}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  json out = {{"id", id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", static_cast<int64_t>(std::time(nullptr))},
              {"model", opt_.model_name},
              {"choices", json::array({choice})},
              {"usage",
               {{"prompt_tokens", job.prompt_tokens},
                {"completion_tokens", job.completion_tokens},
                {"total_tokens", job.prompt_tokens + job.completion_tokens}}},
              {"timings", timings(job)}};
  if (!job.base_id.empty()) out["context_id"] = job.new_context_id.empty() ? job.base_id : job.new_context_id;
  if (job.req.context_ids.size() > 1) out["context_ids"] = job.req.context_ids;
  return out;
}

json Service::chunk_body(const GenJob& job, const std::string& id, const std::string& piece, bool first,
                         const std::string* finish_reason) const {
  const bool chat = job.req.chat;
  json choice = {{"index", 0}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!piece.empty() || (first && !finish_reason)) delta["content"] = piece;
    choice["delta"] = delta;
  } else {
    choice["text"] = piece;
    choice["logprobs"] = nullptr;
  }
  json out = {{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", static_cast<int64_t>(std::time(nullptr))},
              {"model", opt_.model_name},
              {"choices", json::array({choice})}};
  if (finish_reason && !job.base_id.empty())
    out["context_id"] = job.new_context_id.empty() ? job.base_id : job.new_context_id;
  if (finish_reason && job.req.context_ids.size() > 1) out["context_ids"] = job.req.context_ids;
  return out;
}

json Service::usage_chunk(const GenJob& job, const std::string& id) const {
  return {{"id", id},
          {"object", job.req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", static_cast<int64_t>(std::time(nullptr))},
          {"model", opt_.model_name},
          {"choices", json::array()},
          {"usage",
           {{"prompt_tokens", job.prompt_tokens},
            {"completion_tokens", job.completion_tokens},
            {"total_tokens", job.prompt_tokens + job.completion_tokens}}},
          {"timings", timings(job)}};
}

}  // namespace kvz::server

// The server's operations as functions from request JSON to response JSON: the OpenAI
// endpoints and the contexts API over one model, one context registry and one engine.
// http.cpp maps routes onto these; nothing here knows HTTP beyond the status codes of
// ApiError. Every request is validated (types, ranges, lengths, memory budget) before any
// work is queued.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "kv/kvzap_model.h"
#include "kv/kvzip_template.h"
#include "model/model.h"
#include "server/contexts.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "server/request.h"

namespace kvz::server {

struct ServiceOptions {
  std::string model_name;     // the id /v1/models reports
  std::string store;          // "dir:PATH" or "redis://HOST:PORT/DB" (store.h)
  size_t mem_budget = 0;      // bytes of KV held in memory; 0: unlimited
  // The KVzap surrogate folder of this model (`kvzip train-kvzap`) that method "kvzap" uploads
  // use when they name none in params.dir; "" = none (such an upload is a 400).
  std::string kvzap_dir;
  EngineOptions engine;
  Limits limits;
  std::function<void(const std::string&)> log;
};

class Service {
 public:
  Service(const Model& model, ServiceOptions opt);
  ~Service();

  nlohmann::json models() const;
  nlohmann::json health() const;
  std::string metrics_text() const;

  // 202 body: the new context's description (state queued).
  nlohmann::json create_context(const nlohmann::json& body);
  nlohmann::json get_context(const std::string& id) const;
  nlohmann::json list_contexts() const;
  nlohmann::json delete_context(const std::string& id);
  nlohmann::json recompress(const std::string& id, const nlohmann::json& body);
  // service_views.cpp: GET /v1/contexts/{id}/kept (what the context's cache rows hold; 404
  // unknown, 409 not ready) and GET /v1/methods (what an upload may name).
  nlohmann::json kept(const std::string& id, bool heads);
  nlohmann::json methods() const;

  // A validated, tokenized generation, submitted to the engine.
  std::shared_ptr<GenJob> start_generation(const nlohmann::json& body, bool chat);
  // Response objects (OpenAI shapes) from a finished job.
  nlohmann::json completion_body(const GenJob& job, const std::string& id, const std::string& text,
                                 const std::string& finish_reason) const;
  nlohmann::json chunk_body(const GenJob& job, const std::string& id, const std::string& piece, bool first,
                            const std::string* finish_reason) const;
  nlohmann::json usage_chunk(const GenJob& job, const std::string& id) const;

  void stop(bool drain) { engine_->stop(drain); }
  Metrics& metrics() { return metrics_; }
  const std::string& model_name() const { return opt_.model_name; }
  std::string store_name() const { return contexts_->store_name(); }

 private:
  // The ids of a question after a stored context (chat: exactly one user message).
  std::vector<int32_t> question_prompt(const GenRequest& r) const;
  // context_ids: the stored contexts composed in order into one (not stored, not shared:
  // the request's own; kv/compose.h). Errors name the id's index.
  std::shared_ptr<const ReadyContext> compose(const std::vector<std::string>& ids);
  // A KVzap surrogate folder, loaded and checked against the model once and then shared; a
  // folder that does not load is a 400 naming `param`.
  std::shared_ptr<const KvzapModel> surrogate(const std::string& dir, const std::string& param);

  const Model& model_;
  ServiceOptions opt_;
  Metrics metrics_;
  std::unique_ptr<ContextRegistry> contexts_;
  std::unique_ptr<Engine> engine_;
  KvzipTemplate tmpl_;
  int64_t n_sys_ = 0;  // tokens of KVzip's system prompt (tmpl_.prefix)
  int64_t created_;
  std::mutex surrogates_mu_;
  std::map<std::string, std::shared_ptr<const KvzapModel>> surrogates_;
};

}  // namespace kvz::server

// The Service operations behind the web page's views: GET /v1/contexts/{id}/kept and
// GET /v1/methods (declared in service.h; kept apart from the generation paths).
#include "kv/policy.h"
#include "kv/press.h"
#include "server/api_error.h"
#include "server/service.h"
#include "server/views.h"

namespace kvz::server {

using nlohmann::json;

json Service::kept(const std::string& id, bool heads) {
  std::shared_ptr<ContextEntry> e = valid_context_id(id) ? contexts_->find(id) : nullptr;
  if (!e) context_not_found(id, "id");
  {
    std::lock_guard el(e->mu);
    if (e->state == CtxState::Failed)
      throw ApiError(409, "context '" + id + "' failed: " + e->error, "invalid_request_error", "id", "context_failed");
    if (e->state != CtxState::Ready)
      throw ApiError(409,
                     fmt::format("context '{}' is not ready yet ({}, {:.0f}%); its kept tokens exist once it is",
                                 id, ctx_state_name(e->state), 100 * e->progress),
                     "invalid_request_error", "id", "context_not_ready");
  }
  // The rows themselves, loaded from disk when the context is not in memory.
  const std::shared_ptr<const ReadyContext> r = contexts_->acquire(id);
  json out = kept_json(r->cache, r->meta, model_.tokenizer(), model_.hp(), heads);
  out["id"] = id;
  return out;
}

json Service::methods() const {
  json data = json::array();
  for (const MethodInfo& mi : press_registry()) {
    json params = json::array();
    for (const PressParam& p : mi.params) {
      json jp = {{"name", p.name}, {"help", p.help}};
      if (p.kind == PressParam::Text) {
        jp["type"] = "text";
        jp["default"] = p.text_def;
      } else {
        jp["type"] = p.kind == PressParam::Int ? "int" : "real";
        jp["default"] = p.def;
        jp["min"] = p.min;
        jp["max"] = p.max;
      }
      params.push_back(jp);
    }
    data.push_back({{"name", mi.name},
                    {"description", mi.description},
                    {"level", prune_level_name(mi.level)},
                    {"params", params}});
  }
  return {{"object", "list"}, {"data", data}};
}

}  // namespace kvz::server

#include "server/request.h"

#include <cmath>
#include <random>

#include "io/json_file.h"
#include "server/api_error.h"

namespace kvz::server {

namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "invalid";
    default: return "a number";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const char* want, const json& got) {
  bad_param(param, "'" + param + "' must be " + want + ", got " + type_name(got), "invalid_type");
}

// The one typed accessor: a field present and not null is of the expected type, or a 400
// naming it. Absent and null fields keep the default.
struct Fields {
  const json& obj;
  std::string prefix;  // "messages[2]." etc.

  const json* get(const char* key) const {
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  std::string name(const char* key) const { return prefix + key; }
  bool str(const char* key, std::string& out) const {
    const json* v = get(key);
    if (!v) return false;
    if (!v->is_string()) wrong_type(name(key), "a string", *v);
    out = v->get_ref<const std::string&>();
    return true;
  }
  bool boolean(const char* key, bool& out) const {
    const json* v = get(key);
    if (!v) return false;
    if (!v->is_boolean()) wrong_type(name(key), "a boolean", *v);
    out = v->get<bool>();
    return true;
  }
  bool number(const char* key, double& out, double lo, double hi) const {
    const json* v = get(key);
    if (!v) return false;
    if (!v->is_number()) wrong_type(name(key), "a number", *v);
    out = v->get<double>();
    if (!std::isfinite(out) || out < lo || out > hi)
      bad_param(name(key), fmt::format("'{}' is {}, outside [{}, {}]", name(key), v->dump(), lo, hi));
    return true;
  }
  bool integer(const char* key, int64_t& out, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) return false;
    if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()))
      wrong_type(name(key), "an integer", *v);
    // A whole double counts (OpenAI clients send 5.0); one past what an int64 holds is out of
    // range like an integer past hi.
    const std::optional<int64_t> x = exact_int64(*v, true);
    if (!x || *x < lo || *x > hi)
      bad_param(name(key), fmt::format("'{}' is {}, outside [{}, {}]", name(key), v->dump(), lo, hi));
    out = *x;
    return true;
  }
};

// A message's content: a string, or OpenAI's array of parts of which the text parts count.
std::string content_text(const json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) wrong_type(param, "a string or an array of content parts", v);
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string pp = fmt::format("{}[{}]", param, i);
    if (!v[i].is_object()) wrong_type(pp, "an object", v[i]);
    Fields f{v[i], pp + "."};
    std::string type = "text", text;
    f.str("type", type);
    if (type != "text") bad_param(pp + ".type", "only text content parts are supported, got '" + type + "'");
    if (!f.str("text", text)) bad_param(pp + ".text", "a text content part needs 'text'", "missing");
    out += text;
  }
  return out;
}

std::vector<ChatMessage> read_messages(const json& body) {
  const auto it = body.find("messages");
  if (it == body.end() || it->is_null()) bad_param("messages", "'messages' is required", "missing");
  if (!it->is_array()) wrong_type("messages", "an array", *it);
  if (it->empty()) bad_param("messages", "'messages' is empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string pp = fmt::format("messages[{}]", i);
    if (!m.is_object()) wrong_type(pp, "an object", m);
    Fields f{m, pp + "."};
    ChatMessage cm;
    if (!f.str("role", cm.role)) bad_param(pp + ".role", "each message needs a 'role'", "missing");
    if (cm.role == "developer") cm.role = "system";
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
      bad_param(pp + ".role", "role '" + cm.role + "' is not one of system, user, assistant");
    const json* c = f.get("content");
    if (!c) bad_param(pp + ".content", "each message needs 'content'", "missing");
    cm.content = content_text(*c, pp + ".content");
    out.push_back(std::move(cm));
  }
  return out;
}

}  // namespace

json parse_body(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON", "invalid_request_error", "", "invalid_json");
  if (!j.is_object()) throw ApiError(400, std::string("the request body must be a JSON object, got ") + type_name(j));
  return j;
}

GenRequest parse_gen_request(const json& body, bool chat, const Limits& limits) {
  GenRequest r;
  r.chat = chat;
  Fields f{body, ""};
  f.str("model", r.model);
  if (chat) {
    r.messages = read_messages(body);
  } else {
    const json* p = f.get("prompt");
    if (!p) bad_param("prompt", "'prompt' is required", "missing");
    if (p->is_array()) {  // OpenAI allows a list of prompts; one completion per request here
      if (p->size() != 1 || !(*p)[0].is_string())
        bad_param("prompt", "'prompt' must be a string (or a list of exactly one string)");
      r.prompt = (*p)[0].get<std::string>();
    } else if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else {
      wrong_type("prompt", "a string", *p);
    }
  }
  int64_t n = 1;
  if (f.integer("n", n, 1, 1 << 20) && n != 1) bad_param("n", "only n = 1 is supported");
  int64_t mt = limits.default_max_tokens;
  if (!f.integer("max_completion_tokens", mt, 1, limits.max_tokens)) f.integer("max_tokens", mt, 1, limits.max_tokens);
  r.max_tokens = static_cast<int>(mt);
  double temperature = 1.0, top_p = 1.0;
  f.number("temperature", temperature, 0.0, 2.0);
  f.number("top_p", top_p, 0.0, 1.0);
  if (top_p == 0.0) bad_param("top_p", "'top_p' must be greater than 0");
  int64_t top_k = 0;
  f.integer("top_k", top_k, 0, 1 << 30);
  r.sampling.temperature = static_cast<float>(temperature);
  r.sampling.top_p = static_cast<float>(top_p);
  r.sampling.top_k = static_cast<int>(top_k);
  int64_t seed = 0;
  if (f.integer("seed", seed, INT64_MIN, INT64_MAX))
    r.sampling.seed = static_cast<uint64_t>(seed);
  else
    r.sampling.seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  if (const json* s = f.get("stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > 16) bad_param("stop", "at most 16 stop strings");
      for (size_t i = 0; i < s->size(); ++i) {
        if (!(*s)[i].is_string()) wrong_type(fmt::format("stop[{}]", i), "a string", (*s)[i]);
        r.stop.push_back((*s)[i].get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *s);
    }
    for (const auto& st : r.stop)
      if (st.empty()) bad_param("stop", "stop strings must not be empty");
  }
  f.boolean("stream", r.stream);
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    Fields{*so, "stream_options."}.boolean("include_usage", r.include_usage);
  }
  f.str("context_id", r.context_id);
  if (const json* ids = f.get("context_ids")) {
    if (!ids->is_array()) wrong_type("context_ids", "an array of context ids", *ids);
    if (ids->empty() || ids->size() > kMaxComposed)
      bad_param("context_ids", fmt::format("give 1 to {} context ids to compose", kMaxComposed));
    for (size_t i = 0; i < ids->size(); ++i) {
      if (!(*ids)[i].is_string()) wrong_type(fmt::format("context_ids[{}]", i), "a string", (*ids)[i]);
      r.context_ids.push_back((*ids)[i].get<std::string>());
    }
    if (!r.context_id.empty()) bad_param("context_ids", "give 'context_id' or 'context_ids', not both");
  }
  f.boolean("update_cache", r.update_cache);
  f.boolean("ignore_eos", r.ignore_eos);
  f.boolean("full_cache", r.full_cache);
  if (!r.context_ids.empty() && r.update_cache)
    bad_param("update_cache", "a composition of several contexts is not kept; continue a conversation on one 'context_id'");
  if (!r.context_ids.empty() && r.full_cache)
    bad_param("full_cache", "'full_cache' answers from one stored context's full cache; use 'context_id'");
  if (r.update_cache && r.context_id.empty())
    bad_param("update_cache", "'update_cache' needs a 'context_id' to continue from");
  if (r.full_cache && r.context_id.empty())
    bad_param("full_cache", "'full_cache' answers from a stored context's full cache: it needs a 'context_id'");
  if (r.full_cache && r.update_cache)
    bad_param("full_cache", "'full_cache' answers are never kept: drop 'update_cache'");
  return r;
}

ContextRequest parse_context_request(const json& body) {
  ContextRequest r;
  Fields f{body, ""};
  const bool has_text = f.str("text", r.text);
  if (f.get("messages")) {
    if (has_text) bad_param("messages", "give 'text' or 'messages', not both");
    for (const ChatMessage& m : read_messages(body)) r.text += (r.text.empty() ? "" : "\n\n") + m.content;
  } else if (!has_text) {
    bad_param("text", "a context needs 'text' (or 'messages')", "missing");
  }
  if (r.text.find_first_not_of(" \t\r\n") == std::string::npos) bad_param("text", "the context text is empty");
  const bool has_method = f.str("method", r.method);
  double ratio = 0;
  if (f.number("ratio", ratio, 0.0, 1.0)) {
    if (ratio <= 0.0) bad_param("ratio", "'ratio' (the kept fraction) must be in (0, 1]");
    r.ratio = ratio;
  }
  double tau = 0;
  if (f.number("threshold", tau, -1e6, 1e6)) {
    if (!has_method) r.method = "kvzap";
    if (r.method != "kvzap")
      bad_param("threshold", "'threshold' is KVzap's streaming eviction: give \"method\": \"kvzap\" (or no method)");
    if (r.ratio) bad_param("ratio", "give 'ratio' or 'threshold', not both");
    r.threshold = tau;
  }
  if (f.integer("window", r.window, 0, int64_t{1} << 24) && !r.threshold)
    bad_param("window", "'window' (positions never evicted) belongs to a 'threshold' upload");
  f.str("level", r.level);
  if (r.threshold && !r.level.empty())
    bad_param("level", "a 'threshold' upload keeps each pair on its own score: there is no budget level");
  f.str("kv_type", r.kv_type);
  if (r.kv_type != "f16" && r.kv_type != "q8_0") bad_param("kv_type", "'kv_type' must be 'f16' or 'q8_0'");
  f.boolean("retain_full", r.retain_full);
  if (r.threshold && r.retain_full)
    bad_param("retain_full", "a 'threshold' upload evicts while prefilling, so there is no full cache to keep");
  if (const json* p = f.get("params")) {
    if (!p->is_object()) wrong_type("params", "an object of press parameters", *p);
    for (const auto& [k, v] : p->items()) {
      if (v.is_number()) r.params.emplace_back(k, v.dump());
      else if (v.is_string()) r.params.emplace_back(k, v.get<std::string>());
      else wrong_type("params." + k, "a number or a string", v);
    }
  }
  return r;
}

RecompressRequest parse_recompress_request(const json& body) {
  RecompressRequest r;
  Fields f{body, ""};
  f.str("method", r.method);
  if (!f.number("ratio", r.ratio, 0.0, 1.0)) bad_param("ratio", "'ratio' is required", "missing");
  if (r.ratio <= 0.0) bad_param("ratio", "'ratio' (the kept fraction) must be in (0, 1]");
  f.str("level", r.level);
  return r;
}

}  // namespace kvz::server

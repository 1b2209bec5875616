// The server's requests, read from JSON into typed values and validated before any work is
// queued. Every field is read through one typed accessor (request.cpp) that names the
// parameter and the expected type in its 400 error; unknown fields are ignored, as OpenAI
// clients expect. Pure functions of the JSON: no model, no HTTP (the fuzz target calls them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/sampler.h"
#include "tokenizer/chat_template.h"

namespace kvz::server {

struct Limits {
  int max_tokens = 4096;      // upper bound of a request's max_tokens
  int default_max_tokens = 256;
};

// The most contexts one request composes (context_ids).
inline constexpr size_t kMaxComposed = 16;

// POST /v1/chat/completions and /v1/completions.
struct GenRequest {
  bool chat = true;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  int max_tokens = 256;
  SamplerParams sampling;             // temperature 0 = greedy
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  std::string context_id;             // answer from this stored context
  std::vector<std::string> context_ids;  // or from these, composed in order (kv/compose.h)
  bool update_cache = false;          // keep the turn: a derived context is returned
  bool full_cache = false;            // answer from the context's retained full cache (retain_full)
  bool ignore_eos = false;            // llama-server's extension: end of generation never sampled
  std::string model;                  // echoed back
};

// POST /v1/contexts.
struct ContextRequest {
  std::string text;                   // or messages, joined by blank lines
  std::string method = "kvzip";       // "kvzap" when only a threshold is given
  std::optional<double> ratio;        // kept fraction in (0, 1]
  // KVzap's streaming eviction (kv/kvzap_pruner.h) instead of a ratio: pairs whose predicted
  // log-score is below it go while the context is prefilled; the `window` most recent
  // positions are never evicted.
  std::optional<double> threshold;
  int64_t window = 128;
  std::string level;                  // "" = the method's default
  std::string kv_type = "f16";
  bool retain_full = false;
  std::vector<std::pair<std::string, std::string>> params;  // press parameters
};

// POST /v1/contexts/{id}/compress.
struct RecompressRequest {
  std::string method = "kvzip";
  double ratio = 0.3;
  std::string level;
};

GenRequest parse_gen_request(const nlohmann::json& body, bool chat, const Limits& limits);
ContextRequest parse_context_request(const nlohmann::json& body);
RecompressRequest parse_recompress_request(const nlohmann::json& body);
// Parses a request body, answering 400 for invalid JSON or a body that is not an object.
nlohmann::json parse_body(const std::string& body);

}  // namespace kvz::server

// The server's request parsing (src/server/request.cpp): the input is an HTTP body. It is
// parsed as the chat/completions, completions, contexts and recompress endpoints parse
// theirs; each may refuse it with an ApiError (a kvz::Error: a 400 naming the parameter).
#include <cstdlib>
#include <string>

#include "common.h"
#include "json_mutator.h"
#include "server/request.h"
#include "targets.h"

namespace kvz::fuzz {

std::string request(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  if (std::string e = refused([&] { j = server::parse_body(body); }); !e.empty()) return e;
  const server::Limits limits;
  // A body suits one endpoint at most: "" when one of them accepts it, else the last error.
  std::string last;
  bool accepted = false;
  auto endpoint = [&](auto&& parse) {
    const std::string r = refused(parse);
    accepted = accepted || r.empty();
    if (!r.empty()) last = r;
  };
  for (const bool chat : {true, false})
    endpoint([&] {
      const server::GenRequest g = server::parse_gen_request(j, chat, limits);
      if (g.max_tokens < 1 || g.max_tokens > limits.max_tokens) std::abort();  // the limits hold
      for (const ChatMessage& m : g.messages) touch(m.content.data(), m.content.size());
    });
  endpoint([&] { server::parse_context_request(j); });
  endpoint([&] { server::parse_recompress_request(j); });
  return accepted ? "" : last;
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(request)
KVZ_FUZZ_JSON_MUTATOR()

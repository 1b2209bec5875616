// The HTTP front of the server (cpp-httplib): routes onto Service, OpenAI-shaped JSON
// errors for everything that goes wrong (bad JSON, wrong types, unknown ids, a body over
// the limit, an unknown route, an exception anywhere), server-sent events for streams, an
// optional Bearer key, and a graceful stop. Binds loopback by default.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "server/service.h"

namespace kvz::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;             // 0: any free port (the log line names it)
  std::string api_key;         // non-empty: every /v1 route needs "Authorization: Bearer <key>"
  size_t max_body = 64 << 20;  // bytes
  int http_threads = 0;        // 0: 2 x parallel + 8
};

// Serves until *stop_flag becomes non-zero (a signal handler sets it), then stops taking
// requests, finishes those in flight (a second signal, *stop_flag >= 2, cancels them) and
// returns 0. `on_listen(port)` is called once the socket is bound. Throws kvz::Error when the
// address cannot be bound.
int serve_http(Service& svc, const HttpOptions& opt, const std::atomic<int>& stop_flag,
               const std::function<void(int port)>& on_listen, const std::function<void(const std::string&)>& log);

}  // namespace kvz::server

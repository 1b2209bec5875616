#include "server/http.h"

#include <httplib.h>

#include <chrono>
#include <random>
#include <thread>

#include "server/api_error.h"
#include "server/views.h"

namespace kvz::server {

namespace {

using nlohmann::json;

json error_json(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = "", const std::string& code = "") {
  send_json(res, status, error_json(message, type, param, code));
}

const char* type_for(int status) {
  if (status == 401) return "authentication_error";
  if (status == 404) return "not_found_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

// Runs a route body, turning every exception into an OpenAI-shaped error: ApiError keeps
// its status; kvz::Error is bad input (400); anything else is the server's fault (500).
template <typename F>
void guarded(Metrics& m, const std::string& endpoint, httplib::Response& res, F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    send_error(res, e.status, e.what(), e.type, e.param, e.code);
  } catch (const Error& e) {
    send_error(res, 400, e.what(), "invalid_request_error");
  } catch (const std::bad_alloc&) {
    send_error(res, 507, "out of memory while serving this request", "server_error");
  } catch (const std::exception& e) {
    send_error(res, 500, std::string("internal error: ") + e.what(), "server_error");
  } catch (...) {
    send_error(res, 500, "internal error", "server_error");
  }
  m.count_request(endpoint, res.status);
}

std::string new_id(const char* prefix) {
  std::random_device rd;
  return fmt::format("{}-{:08x}{:08x}", prefix, rd(), rd());
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

}  // namespace

int serve_http(Service& svc, const HttpOptions& opt, const std::atomic<int>& stop_flag,
               const std::function<void(int)>& on_listen, const std::function<void(const std::string&)>& log) {
  httplib::Server http;
  Metrics& m = svc.metrics();
  const int n_threads = opt.http_threads > 0 ? opt.http_threads : 2 * svc.health().value("slots", 4) + 8;
  http.new_task_queue = [n_threads] { return new httplib::ThreadPool(static_cast<size_t>(n_threads)); };
  http.set_payload_max_length(opt.max_body);
  http.set_read_timeout(30, 0);
  http.set_write_timeout(30, 0);

  if (!opt.api_key.empty()) {
    http.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
      if (req.path.rfind("/v1/", 0) != 0 && req.path != "/metrics") return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + opt.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "missing or wrong API key (send \"Authorization: Bearer <key>\")", "authentication_error",
                 "", "invalid_api_key");
      m.count_request(req.path, 401);
      return httplib::Server::HandlerResponse::Handled;
    });
  }
  // Unknown routes and transport-level refusals (a body over the limit: 413) get JSON too.
  http.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = fmt::format("{} {}: no such route", req.method, req.path);
    if (res.status == 413) msg = fmt::format("the request body is larger than the limit of {} bytes", opt.max_body);
    else if (res.status == 400) msg = "malformed HTTP request";
    send_error(res, res.status, msg, type_for(res.status), "", res.status == 413 ? "body_too_large" : "");
  });
  http.set_exception_handler([&](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, what, "server_error");
  });

  http.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/health", res, [&] { send_json(res, 200, svc.health()); });
  });
  http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/metrics", res, [&] { res.set_content(svc.metrics_text(), "text/plain; version=0.0.4"); });
  });
  http.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/v1/models", res, [&] { send_json(res, 200, svc.models()); });
  });

  auto generate = [&](const httplib::Request& req, httplib::Response& res, bool chat) {
    const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
    guarded(m, endpoint, res, [&] {
      std::shared_ptr<GenJob> job = svc.start_generation(parse_body(req.body), chat);
      const std::string id = new_id(chat ? "chatcmpl" : "cmpl");
      if (!job->req.stream) {
        std::string text, reason, error;
        int status = 200;
        for (bool done = false; !done;)
          for (auto& e : job->wait(200)) {
            text += e.text;
            if (e.done) {
              done = true;
              reason = e.finish_reason;
              error = e.error;
              status = e.error_status;
            }
          }
        if (!error.empty()) throw ApiError(status, error, type_for(status));
        send_json(res, 200, svc.completion_body(*job, id, text, reason));
        return;
      }
      res.status = 200;
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");  // nginx: pass events through unbuffered
      auto first = std::make_shared<bool>(true);
      res.set_chunked_content_provider(
          "text/event-stream",
          [&svc, job, id, first](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            if (!sink.is_writable()) {
              job->cancel();
              return false;
            }
            for (auto& e : job->wait(100)) {
              if (!e.error.empty()) {
                const json err = error_json(e.error, type_for(e.error_status), "", "");
                write(sse(err));
                write("data: [DONE]\n\n");
                sink.done();
                return true;
              }
              if (!e.text.empty() || *first) {
                if (!write(sse(svc.chunk_body(*job, id, e.text, *first, nullptr)))) {
                  job->cancel();
                  return false;
                }
                *first = false;
              }
              if (e.done) {
                write(sse(svc.chunk_body(*job, id, "", false, &e.finish_reason)));
                if (job->req.include_usage) write(sse(svc.usage_chunk(*job, id)));
                write("data: [DONE]\n\n");
                sink.done();
                return true;
              }
            }
            return true;
          },
          [job](bool success) {
            if (!success) job->cancel();  // the client went away: its slot is freed at the next step
          });
    });
  };
  http.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
  http.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });

  http.Post("/v1/contexts", [&](const httplib::Request& req, httplib::Response& res) {
    guarded(m, "/v1/contexts", res, [&] { send_json(res, 202, svc.create_context(parse_body(req.body))); });
  });
  http.Get("/v1/contexts", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/v1/contexts", res, [&] { send_json(res, 200, svc.list_contexts()); });
  });
  http.Get(R"(/v1/contexts/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    guarded(m, "/v1/contexts/{id}", res, [&] { send_json(res, 200, svc.get_context(req.matches[1])); });
  });
  http.Delete(R"(/v1/contexts/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    guarded(m, "/v1/contexts/{id}", res, [&] { send_json(res, 200, svc.delete_context(req.matches[1])); });
  });
  http.Post(R"(/v1/contexts/([^/]+)/compress)", [&](const httplib::Request& req, httplib::Response& res) {
    guarded(m, "/v1/contexts/{id}/compress", res,
            [&] { send_json(res, 202, svc.recompress(req.matches[1], parse_body(req.body))); });
  });

  // The web page (no key needed to load it: the page sends the key it is given) and its views.
  http.Get("/", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/", res, [&] { res.set_content(std::string(web_page()), "text/html; charset=utf-8"); });
  });
  http.Get("/v1/methods", [&](const httplib::Request&, httplib::Response& res) {
    guarded(m, "/v1/methods", res, [&] { send_json(res, 200, svc.methods()); });
  });
  http.Get(R"(/v1/contexts/([^/]+)/kept)", [&](const httplib::Request& req, httplib::Response& res) {
    guarded(m, "/v1/contexts/{id}/kept", res, [&] {
      const std::string h = req.get_param_value("heads");
      if (!(h.empty() || h == "0" || h == "1" || h == "true" || h == "false"))
        throw ApiError(400, "'heads' is \"" + h + "\"; expected 1 (per-head kept tokens) or 0", "invalid_request_error",
                       "heads", "invalid_value");
      const json j = svc.kept(req.matches[1], h == "1" || h == "true");
      res.status = 200;
      res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    });
  });

  const int port = opt.port == 0 ? http.bind_to_any_port(opt.host) : (http.bind_to_port(opt.host, opt.port) ? opt.port : -1);
  if (port < 0) fail("cannot listen on {}:{} (in use, or not an address of this machine)", opt.host, opt.port);
  if (on_listen) on_listen(port);
  std::thread listener([&] { http.listen_after_bind(); });
  while (stop_flag.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  log("stopping: no new requests; finishing the ones in flight (signal again to cancel them)");
  std::thread drainer([&] { svc.stop(/*drain=*/true); });
  while (true) {  // a second signal turns the drain into a cancel
    if (stop_flag.load() >= 2) {
      svc.stop(/*drain=*/false);
      break;
    }
    if (svc.health().value("slots_busy", 0) == 0 && svc.health().value("queue", size_t{0}) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  drainer.join();
  http.stop();
  listener.join();
  log("stopped");
  return 0;
}

}  // namespace kvz::server

// `kvzip serve`: the OpenAI-compatible server over one model (src/server/). This file only
// reads the command line, loads the model and turns SIGINT/SIGTERM into a graceful stop.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/error.h"
#include "kvzap_cli.h"
#include "model/model.h"
#include "server/http.h"
#include "server/service.h"
#include "serve.h"

namespace kvz::cli {

namespace {

// The one process-wide value: signal handlers can reach nothing else. 1 = stop gracefully,
// 2 = a second signal, cancel what is in flight.
std::atomic<int> g_stop{0};
extern "C" void on_signal(int) { g_stop.fetch_add(1); }


// "4096", "512K", "2M", "1.5G" -> bytes.
size_t parse_bytes(const std::string& s, const char* flag) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  double mul = 1;
  const std::string suf = end ? std::string(end) : "";
  if (suf == "" || suf == "B") mul = 1;
  else if (suf == "K" || suf == "KiB" || suf == "k") mul = 1024.0;
  else if (suf == "M" || suf == "MiB") mul = 1024.0 * 1024;
  else if (suf == "G" || suf == "GiB") mul = 1024.0 * 1024 * 1024;
  else fail("{} '{}': expected bytes, with an optional K, M or G suffix (e.g. 2G)", flag, s);
  if (s.empty() || end == s.c_str() || !(v >= 0) || v * mul > 1e18)
    fail("{} '{}': expected a non-negative number of bytes (e.g. 2G)", flag, s);
  return static_cast<size_t>(v * mul);
}

void log_line(const std::string& msg) {
  char ts[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "%s kvzip serve: %s\n", ts, msg.c_str());
  std::fflush(stderr);
}

}  // namespace

void add_serve_command(CLI::App& app, ServeCli& c, const std::string& default_model) {
  c.model = default_model;
  auto* s = app.add_subcommand(
      "serve",
      "OpenAI-compatible HTTP server with stored compressed contexts: POST /v1/contexts uploads a document once "
      "(prefill + KVzip scoring + eviction in the background), chat/completions with \"context_id\" answer from "
      "its compressed cache; contexts persist under --context-dir or in a shared --store (docs/server.md, "
      "docs/scale-out.md)");
  s->add_option("-m,--model", c.model, "GGUF model file or Hugging Face folder")->capture_default_str();
  s->add_option("--host", c.host, "address to bind (loopback by default; 0.0.0.0 exposes the server)")->capture_default_str();
  s->add_option("--port", c.port, "TCP port (0: any free port, printed at start)")->capture_default_str()->check(CLI::Range(0, 65535));
  s->add_option("--parallel", c.parallel, "decode slots: requests generating at once, batched into one forward "
                                              "pass per step; more wait in arrival order")
      ->capture_default_str()->check(CLI::Range(1, 64));
  auto* dir = s->add_option("--context-dir", c.context_dir,
                            "where contexts are stored (default ~/.cache/kvzip/contexts/<model>); the same as "
                            "--store dir:DIR");
  s->add_option("--store", c.store,
                "the context store: dir:PATH (one server), or redis://HOST:PORT/DB shared by several replicas "
                "(docs/scale-out.md; optional ?chunk=BYTES&claim_ms=MS)")
      ->excludes(dir);
  s->add_option("--mem-budget", c.mem_budget, "bytes of KV cache held in memory (e.g. 2G; 0: no limit); least recently "
                                              "used contexts leave memory beyond it (they stay on disk), and an upload "
                                              "that could not fit is refused")->capture_default_str();
  s->add_option("--api-key", c.api_key, "require \"Authorization: Bearer KEY\" on /v1 routes and /metrics");
  s->add_option("--max-body", c.max_body, "largest request body (e.g. 64M)")->capture_default_str();
  s->add_option("-t,--threads", c.threads, "compute threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));
  s->add_option("-c,--ctx-size", c.n_ctx, "context window in tokens (0: the model's)")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  s->add_option("--max-tokens", c.max_tokens, "largest max_tokens a request may ask for")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  s->add_option("--prefill-chunk", c.prefill_chunk, "prompt tokens prefilled between two decode steps (smaller: "
                                                    "steadier decoding while others prefill)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  s->add_option("--kvzap", c.kvzap,
                "KVzap surrogate folder for uploads with \"method\": \"kvzap\" (a \"threshold\" or a \"ratio\"); "
                "default ~/.cache/kvzip/kvzap/<model>-mlp, else -linear, when `kvzip train-kvzap` made one");
}

int run_serve_command(const ServeCli& c, const LoadOptions& lopt) {
  server::ServiceOptions so;
  so.mem_budget = parse_bytes(c.mem_budget, "--mem-budget");
  server::HttpOptions ho;
  ho.host = c.host;
  ho.port = c.port;
  ho.api_key = c.api_key;
  ho.max_body = parse_bytes(c.max_body, "--max-body");
  const std::string stem = std::filesystem::path(c.model).filename().replace_extension().string();
  so.store = !c.store.empty()        ? c.store
             : c.context_dir.empty() ? "dir:" + kvzip_cache_root() + "/contexts/" + stem
                                     : "dir:" + c.context_dir;
  so.model_name = stem;
  so.engine.threads = c.threads;
  so.engine.parallel = c.parallel;
  so.engine.n_ctx = c.n_ctx;
  so.engine.prefill_chunk = c.prefill_chunk;
  so.limits.max_tokens = c.max_tokens;
  so.limits.default_max_tokens = std::min(256, c.max_tokens);
  so.log = log_line;

#if defined(__GLIBC__)
  // A server allocates and frees cache-sized buffers for as long as it runs (an upload's full
  // cache and scoring buffers, a loaded context's file image, each request's rows). From 1 MiB
  // up they are mapped and go back to the OS when freed, instead of staying in glibc's heap
  // until the engine's idle trim. Measured with the same setting through glibc's environment
  // variable (MALLOC_MMAP_THRESHOLD_=1048576; 2026-12-03, Zen 5, bench/server_load.py
  // --memory-only): after a restart with 4 SmolLM2 contexts loaded, 248.6 MiB instead of 265.0.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  log_line("loading " + c.model);
  auto model = Model::load(c.model, {}, lopt);
  if (!c.kvzap.empty()) {
    so.kvzap_dir = kvzap_default_dir(c.kvzap, c.model, kvzip_cache_root());  // the Service loads it, or exits
  } else {
    // The default folder is optional: without one (or with one that does not fit this model)
    // the server runs and refuses KVzap uploads with a 400 that says how to get a surrogate.
    try {
      so.kvzap_dir = kvzap_default_dir("", c.model, kvzip_cache_root());
      (void)KvzapModel::load(so.kvzap_dir, *model);
    } catch (const Error& e) {
      if (!so.kvzap_dir.empty()) log_line(fmt::format("KVzap surrogate not used: {}", e.what()));
      so.kvzap_dir.clear();
    }
  }
  log_line(so.kvzap_dir.empty() ? std::string("no KVzap surrogate: uploads with method kvzap are refused")
                                : "KVzap surrogate: " + so.kvzap_dir);
  server::Service svc(*model, so);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  return server::serve_http(
      svc, ho, g_stop,
      [&](int port) {
        log_line(fmt::format("model {} ({} layers, window {}), {} slot(s), contexts in {}", so.model_name,
                             model->hp().n_layer, model->hp().n_ctx_train, c.parallel, svc.store_name()));
        log_line(fmt::format("listening on http://{}:{}", c.host, port));
      },
      log_line);
}

}  // namespace kvz::cli

// `kvzip ask` (tools/cli/ask.cpp) and `kvzip demo` (tools/cli/demo.cpp), registered by main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "compress.h"
#include "model/generate.h"

namespace kvz::cli {

struct AskOpts {
  CompressOpts c;
  std::vector<std::string> questions;
  std::string load_path;                // one --load
  std::vector<std::string> load_paths;  // every --load; several: composed (ask_compose.cpp)
  bool compare_full = false;
  int n_predict = 64;
};

CLI::App* add_ask_command(CLI::App& app, AskOpts& o);
int run_ask_command(const CLI::App& cmd, const AskOpts& o);
// Questions over several saved contexts composed into one cache (a.load_paths).
int ask_composed(const CLI::App& cmd, const AskOpts& a);

// One answer from ctx, each piece printed to `out` as it is generated (newlines as spaces,
// so an answer stays on its line); returns the result, whose answer is the printed text.
QueryResult stream_answer(KvzipContext& ctx, const std::string& question, const GenerateParams& gp, const Out& out);
// As stream_answer, from ids the caller made; update_cache keeps the turn in the cache.
QueryResult stream_answer_ids(KvzipContext& ctx, const std::vector<int32_t>& ids, const GenerateParams& gp,
                              const Out& out, bool update_cache);
double ms_per_token(const QueryResult& r);  // decode time per fed-back token
// Compress `text` (a.c), then answer a.questions; `expected`: facts the answers should hold.
int ask_from_text(const CLI::App& cmd, const AskOpts& a, const std::string& text,
                  const std::vector<std::string>& expected);

struct DemoOpts {
  AskOpts a;
  int records = 16;
};
CLI::App* add_demo_command(CLI::App& app, DemoOpts& o);
int run_demo_command(const CLI::App& cmd, const DemoOpts& o);

}  // namespace kvz::cli

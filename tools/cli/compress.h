// Compressing a context: the options `compress`, `ask` and `demo` share, the pipeline
// (length check, prefill, score, prune, save) and what a saved file records about how it was
// made (the info block of the context file, JSON with the server's keys).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "kv/kvzip_context.h"
#include "kvzap_cli.h"

namespace kvz::cli {

struct CompressOpts {
  std::string model;
  std::string context_file;
  std::string save_path;  // compress -o, ask --save
  double ratio = 0.3;
  std::string level;  // "": the method's own default level
  std::string method = "kvzip";
  std::string params;  // "key=value,..." for the method
  bool query_aware = false;
  std::string compress_for;  // score once with this question, reuse the cache for every question
  double ada_alpha = 0.2;
  bool strict = false;
  std::string head_scores;  // --level head: file from `kvzip score-heads`
  std::string kv_type = "f16";
  KvzapCli kvzap;  // --method kvzap --threshold TAU: streaming eviction in prefill
  bool retain_full = false;
  bool json = false;
  int threads = 0;
  int64_t n_ctx = 0;  // -c/--ctx: 0 = the model's training context
  LoadOptions load;
  bool kvzap_stream() const { return method == "kvzap" && !kvzap.threshold.empty(); }
};

// The context-length rule, as --help and README state it.
extern const char* const kLengthRule;

// Registers the options of a compression (method, ratio, level, parameters, KVzap threshold,
// KV type, threads, window) on `cmd`. with_ratio_default: whether --ratio shows its default.
void add_compression_options(CLI::App* cmd, CompressOpts& o);
// The rules of check_flags for a compression from text: what --threshold excludes, what
// only applies to one level or method.
std::vector<FlagRule> compression_rules(const CompressOpts& o);
// Method, parameters and level are valid (before anything slow runs).
void check_method_options(const CompressOpts& o);
// The press of o.method with o.params (method kvzap: its default surrogate folder).
std::unique_ptr<Press> make_method_press(const CompressOpts& o);

struct CompressResult {
  PruneReport pr;
  size_t bytes_full = 0;  // KV bytes of the full context, before pruning
  double prefill_s = 0, score_s = 0, save_s = 0;
  uint64_t file_bytes = 0;
  std::string level_name;  // "pair", ..., or "threshold" for KVzap's streaming eviction
};

ContextOptions context_options(const CompressOpts& o);
// Tokenizes `text` and refuses, before any prefill, a context the rule says does not fit:
// scoring needs compress_positions_needed positions; answering needs the context plus
// `answer_room` (the longest question and the answer length). Returns the context ids.
std::vector<int32_t> check_context_length(const KvzipContext& ctx, const CompressOpts& o, const std::string& text,
                                          int64_t answer_room);
// Prefills `ids`, scores and prunes (or, with --threshold, evicts while prefilling) and,
// when o.save_path is set, saves. before_prune runs on the full cache after prefill (ask
// --compare-full answers there). Prints progress and one line per step to out.
CompressResult compress_context(const Model& m, KvzipContext& ctx, const CompressOpts& o,
                                const std::vector<int32_t>& ids, const Out& out,
                                const std::function<void()>& before_prune = {});
// Prints the result lines (kept ratio, KV bytes before/after, times).
void print_compress_result(const Out& out, const KvzipContext& ctx, const CompressOpts& o, const CompressResult& r);
nlohmann::json compress_record(const KvzipContext& ctx, const CompressOpts& o, const CompressResult& r);

// What the CLI records in a saved file's info block (and reads back).
struct SavedInfo {
  std::string method;  // "" when the file does not say (written by other tools)
  std::string params, level, kv_type;
  double ratio = 0;  // 0: not recorded
  bool strict = false;
  double ada_alpha = 0.2;
  bool full_cache = false;  // the file holds the unpruned cache, pruned to `ratio` at load
};
std::string saved_info_json(const CompressOpts& o, const std::string& level_name, bool full_cache);
SavedInfo read_saved_info(const std::string& path);

// `kvzip compress`.
CLI::App* add_compress_command(CLI::App& app, CompressOpts& o);
int run_compress_command(const CLI::App& cmd, const CompressOpts& o);

}  // namespace kvz::cli

// `kvzip compress` and the compression pipeline `ask` and `demo` share.
#include "compress.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/progress.h"
#include "io/head_scores_file.h"
#include "io/json_file.h"
#include "kv/kvzap_pruner.h"

namespace kvz::cli {

const char* const kLengthRule =
    "Context length: the context must fit the window (-c/--ctx, default the model's training context) together "
    "with what the method's scoring runs after it and then rolls back: KVzip (and KVzip+, DuoAttention without a "
    "head-scores file) appends a repeat prompt of about 40 tokens and one chunk of the context (--param chunk, "
    "default 2000), and near the window the chunk shrinks to what fits, down to 128 tokens; the other methods "
    "need nothing after the context. Answering needs room for the longest question and -n answer tokens.";

namespace {

PruneLevel effective_level(const CompressOpts& o) {
  return o.level.empty() ? method_info(o.method).level : parse_prune_level(o.level);
}

std::map<std::string, std::string> press_params(const CompressOpts& o) {
  std::map<std::string, std::string> pp = parse_press_params(o.params);
  if (o.method == "kvzap" && !pp.count("dir")) pp["dir"] = kvzap_default_dir(o.kvzap.dir, o.model, kvzip_cache_root());
  return pp;
}

// A threshold in JSON records: the number, or "-inf" (keep everything), which JSON has no number for.
nlohmann::json threshold_json(const std::string& text) {
  const float tau = parse_threshold(text);
  return std::isinf(tau) ? nlohmann::json("-inf") : nlohmann::json(tau);
}

}  // namespace

void add_compression_options(CLI::App* cmd, CompressOpts& o) {
  cmd->add_option("-m,--model", o.model, "GGUF model file, Hugging Face folder or pull name (scripts/models.tsv)")
      ->capture_default_str();
  cmd->add_option("--ratio", o.ratio, "fraction of context KV pairs to KEEP, in (0, 1]")->capture_default_str();
  cmd->add_option("--method", o.method, "compression method (`kvzip methods` lists them)")->capture_default_str();
  add_kvzap_options(cmd, o.kvzap);
  cmd->add_option("--param", o.params, "method parameters, key=value[,key=value...]");
  cmd->add_option("--compress-for", o.compress_for,
                  "score once with this question present and reuse the cache for every question (methods that "
                  "look at a question)");
  cmd->add_option("--level", o.level,
                  "budget: pair (global), pair-uniform (same per head), head, adakv (default: the method's own)");
  cmd->add_option("--ada-alpha", o.ada_alpha, "adakv safeguard: each head keeps at least this share of an even split")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--head-scores", o.head_scores, "with --level head: head scores saved by `kvzip score-heads`");
  cmd->add_flag("--strict-threshold", o.strict, "pair level: reference-compatible strict threshold instead of exact top-k");
  cmd->add_option("--kv-type", o.kv_type,
                  "KV cache storage: f16 (as llama.cpp) or q8_0 (about half the memory and decode traffic)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0"}));
  cmd->add_flag("--retain-full", o.retain_full,
                "save the full cache with the scores instead of the pruned cache: `ask --load` then prunes it to "
                "the saved ratio, and can prune to a higher ratio or compare with the full cache (the file is "
                "as large as the full cache)");
  cmd->add_flag("--json", o.json, "write one JSON record to stdout (the readable lines go to stderr)");
  cmd->add_option("-t,--threads", o.threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));
  cmd->add_option("-c,--ctx", o.n_ctx, "window in tokens (0: the model's training context)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
}

std::vector<FlagRule> compression_rules(const CompressOpts& o) {
  const bool stream = o.kvzap_stream();
  const std::string no_ratio =
      "with --threshold, KVzap keeps the pairs scored above it while prefilling; there is no ratio or budget level";
  std::vector<FlagRule> r = {
      {"--ratio", stream, no_ratio},
      {"--level", stream, no_ratio},
      {"--param", stream, "KVzap's streaming eviction takes --threshold, --window and --kvzap, not method parameters"},
      {"--compress-for", stream, "KVzap's streaming eviction does not look at a question"},
      {"--retain-full", stream, "KVzap evicts while prefilling, so no full cache exists to keep"},
      {"--threshold", o.method != "kvzap", "--threshold is KVzap's streaming eviction; give --method kvzap"},
      {"--kvzap", o.method != "kvzap", "the surrogate folder belongs to --method kvzap"},
      {"--window", !stream, "the protected window belongs to KVzap's --threshold eviction"},
  };
  if (stream) {
    r.push_back({"--ada-alpha", true, no_ratio});
    r.push_back({"--head-scores", true, no_ratio});
    r.push_back({"--strict-threshold", true, no_ratio});
    return r;
  }
  const PruneLevel lv = effective_level(o);
  const std::string lname = prune_level_name(lv);
  r.push_back({"--ada-alpha", lv != PruneLevel::AdaKV, "it is adakv's safeguard; the level here is " + lname});
  r.push_back({"--head-scores", lv != PruneLevel::Head, "head scores select whole heads (--level head); the level here is " + lname});
  r.push_back({"--strict-threshold", lv != PruneLevel::Pair, "the strict threshold is a pair-level selection; the level here is " + lname});
  const bool asks = make_method_press(o)->uses_question();
  r.push_back({"--compress-for", !asks, o.method + " scores do not depend on a question (`kvzip methods`)"});
  return r;
}

std::unique_ptr<Press> make_method_press(const CompressOpts& o) { return make_press(o.method, press_params(o)); }

void check_method_options(const CompressOpts& o) {
  if (!(o.ratio > 0 && o.ratio <= 1)) fail("--ratio {} is outside (0, 1]", o.ratio);
  if (o.kvzap_stream()) {
    kvzap_options(o.kvzap);  // the threshold parses
    return;
  }
  method_info(o.method);
  make_method_press(o);
  if (!o.level.empty()) parse_prune_level(o.level);
}

ContextOptions context_options(const CompressOpts& o) {
  ContextOptions co;
  co.n_ctx_max = o.n_ctx;
  co.kv_type = parse_kv_type(o.kv_type);
  co.retain_full = o.retain_full;
  co.n_batch = o.kvzap.n_batch;
  return co;
}

std::vector<int32_t> check_context_length(const KvzipContext& ctx, const CompressOpts& o, const std::string& text,
                                          int64_t answer_room) {
  const std::vector<int32_t> ids = ctx.model().tokenizer().encode(text, false, /*parse_special=*/false);
  const int64_t n = static_cast<int64_t>(ids.size()), n_sys = ctx.n_sys(), limit = ctx.n_ctx_max();
  std::vector<int64_t> passes;  // KVzap's streaming eviction scores during the prefill: no pass
  if (!o.kvzap_stream() && n > 0) passes.push_back(ctx.positions_needed(n, make_method_press(o).get()));
  const WindowFit f = check_window(n_sys, n, limit, passes, answer_room);
  const std::string window =
      fmt::format("the window of {} tokens ({})", limit, o.n_ctx > 0 ? "-c/--ctx" : "the model's training context");
  switch (f.fails) {
    case WindowFit::Fails::nothing:
      break;
    case WindowFit::Fails::no_tokens:
      fail("{}: the context has no tokens", o.context_file);
    case WindowFit::Fails::context:
      fail("{}: the context has {} tokens (+{} system prompt), more than {}", o.context_file, n, n_sys, window);
    case WindowFit::Fails::scoring:
      fail("{}: the context has {} tokens (+{} system prompt); {} scoring needs {} positions with its repeat pass "
           "(its prompt and a chunk of at least {} tokens after the context), more than {}",
           o.context_file, n, n_sys, o.method, f.need, std::min<int64_t>(n, kKvzipMinChunk), window);
    case WindowFit::Fails::answers:
      fail("{}: the context has {} tokens (+{} system prompt); answering needs {} more positions (the longest "
           "question and -n answer tokens), more than {}",
           o.context_file, n, n_sys, answer_room, window);
  }
  return ids;
}

CompressResult compress_context(const Model& m, KvzipContext& ctx, const CompressOpts& o,
                                const std::vector<int32_t>& ids, const Out& out,
                                const std::function<void()>& before_prune) {
  CompressResult r;
  const ProgressMode pm = long_work_progress();
  std::unique_ptr<KvzapModel> sur;
  std::unique_ptr<KvzapPruner> pruner;
  if (o.kvzap_stream()) {
    const std::string dir = kvzap_default_dir(o.kvzap.dir, o.model, kvzip_cache_root());
    sur = std::make_unique<KvzapModel>(KvzapModel::load(dir, m));
    pruner = std::make_unique<KvzapPruner>(ctx.session(), *sur, kvzap_options(o.kvzap));
    pruner->protect_prefix(ctx.n_sys());
  }
  auto t0 = Clock::now();
  {
    ProgressBar bar("prefill", "tok", pm);
    if (pruner)
      ctx.prefill_ids(ids, [&](int64_t d, int64_t t) {
        pruner->prune();
        bar.update(static_cast<double>(d), static_cast<double>(t));
      });
    else
      ctx.prefill_ids(ids, bar.callback());
  }
  r.prefill_s = seconds_since(t0);
  out.print("context: {} tokens (+{} system prompt tokens); prefill {:.2f} s ({:.0f} tok/s)\n", ctx.n_ctx(), ctx.n_sys(),
            r.prefill_s, (ctx.n_ctx() + ctx.n_sys()) / std::max(r.prefill_s, 1e-9));
  if (pruner) {
    // The pairs went while prefilling: "before" is what the full cache would hold, every
    // context row in every head (for sliding-window layers more than they ever hold).
    const HParams& hp = m.hp();
    r.bytes_full = static_cast<size_t>(ctx.n_sys() + ctx.n_ctx()) * hp.n_layer * hp.n_head_kv * 2 *
                   ctx.session().cache().row_bytes();
    ctx.note_pruned();
    r.pr.ratio_requested = 0;
    r.pr.ratio_true = pruner->stats().kept_fraction();
    r.pr.kv_bytes_before = r.bytes_full;
    r.pr.kv_bytes_after = ctx.kv_bytes();
    r.level_name = "threshold";
  } else {
    r.bytes_full = ctx.kv_bytes();
    if (before_prune) before_prune();
    SelectOptions so;
    so.ratio = o.ratio;
    so.level = effective_level(o);
    so.strict_threshold = o.strict;
    so.ada_alpha = o.ada_alpha;
    r.level_name = prune_level_name(so.level);
    if (o.query_aware) return r;  // ask --query-aware scores and prunes per question
    t0 = Clock::now();
    if (so.level == PruneLevel::Head && !o.head_scores.empty()) {
      const HeadScoreFile hs = load_head_scores(o.head_scores, m.identity());  // context-independent scores
      out.print("head scores from {} ({})\n", o.head_scores, hs.source);
      r.pr = ctx.prune_heads(hs.scores, o.ratio);
    } else {
      const std::unique_ptr<Press> press = make_method_press(o);
      ProgressBar bar(o.method + " scoring", "tok", pm);
      r.pr = ctx.compress(*press, so, o.compress_for, bar.callback());  // --level head without a file: max over tokens
    }
    r.score_s = seconds_since(t0);
  }
  if (!o.save_path.empty()) {
    t0 = Clock::now();
    ctx.save(o.save_path, saved_info_json(o, r.level_name, o.retain_full), o.retain_full);
    r.save_s = seconds_since(t0);
    std::error_code ec;
    r.file_bytes = std::filesystem::file_size(o.save_path, ec);
  }
  return r;
}

void print_compress_result(const Out& out, const KvzipContext& ctx, const CompressOpts& o, const CompressResult& r) {
  if (r.level_name == "threshold")
    out.print("kvzap threshold {} (window {}): kept {:.1f}% of context pairs while prefilling\n", o.kvzap.threshold,
              o.kvzap.window, 100.0 * r.pr.ratio_true);
  else
    out.print("{} scoring {:.2f} s ({:.2f}x prefill); pruned to ratio {} ({} level): kept {:.1f}% of context pairs\n",
              o.method, r.score_s, r.score_s / std::max(r.prefill_s, 1e-9), o.ratio, r.level_name,
              100.0 * r.pr.ratio_true);
  out.print("KV cache: {} before, {} after ({:.1f}% of the bytes)\n", human_bytes(static_cast<double>(r.bytes_full)),
            human_bytes(static_cast<double>(r.pr.kv_bytes_after)),
            r.bytes_full ? 100.0 * static_cast<double>(r.pr.kv_bytes_after) / static_cast<double>(r.bytes_full) : 0.0);
  if (!o.save_path.empty())
    out.print("saved {}: {} on disk ({}), {:.2f} s\n", o.save_path, human_bytes(static_cast<double>(r.file_bytes)),
              o.retain_full ? "the full cache and the scores; `ask --load` prunes it" : "the compressed cache",
              r.save_s);
}

nlohmann::json compress_record(const KvzipContext& ctx, const CompressOpts& o, const CompressResult& r) {
  nlohmann::json j = {{"n_ctx", ctx.n_ctx()},
                      {"n_sys", ctx.n_sys()},
                      {"method", o.method},
                      {"level", r.level_name},
                      {"ratio_true", r.pr.ratio_true},
                      {"kv_type", o.kv_type},
                      {"kv_bytes_before", r.bytes_full},
                      {"kv_bytes_after", r.pr.kv_bytes_after},
                      {"seconds", {{"prefill", r.prefill_s}, {"score", r.score_s}, {"save", r.save_s}}}};
  if (r.level_name == "threshold")
    j["threshold"] = threshold_json(o.kvzap.threshold);
  else
    j["ratio"] = o.ratio;
  if (!o.save_path.empty()) {
    j["file"] = o.save_path;
    j["file_bytes"] = r.file_bytes;
    j["retain_full"] = o.retain_full;
  }
  return j;
}

std::string saved_info_json(const CompressOpts& o, const std::string& level_name, bool full_cache) {
  nlohmann::json j = {{"created", static_cast<int64_t>(std::time(nullptr))},
                      {"method", o.method},
                      {"kv_type", o.kv_type},
                      {"level", level_name},
                      {"full_cache", full_cache}};
  if (!o.params.empty()) j["params"] = o.params;
  if (level_name == "threshold") {
    j["threshold"] = threshold_json(o.kvzap.threshold);
  } else {
    j["ratio"] = o.ratio;
    j["strict_threshold"] = o.strict;
    j["ada_alpha"] = o.ada_alpha;
  }
  if (!o.compress_for.empty()) j["compress_for"] = o.compress_for;
  if (!o.context_file.empty()) j["source"] = std::filesystem::path(o.context_file).filename().string();
  return j.dump();
}

SavedInfo read_saved_info(const std::string& path) {
  SavedInfo s;
  const ContextFileHeader h = peek_context_file(path);
  if (h.info.empty() || h.info[0] != '{') return s;  // older files and other writers: nothing recorded
  const JsonReader j = JsonReader::parse(h.info, path + " (info block)");
  j.object();
  s.method = j.get_str("method", "");
  s.params = j.get_str("params", "");
  s.level = j.get_str("level", "");
  s.kv_type = j.get_str("kv_type", "");
  s.ratio = j.get_number("ratio", 0.0);
  s.strict = j.get_bool("strict_threshold", false);
  s.ada_alpha = j.get_number("ada_alpha", 0.2);
  s.full_cache = j.get_bool("full_cache", false);
  return s;
}

CLI::App* add_compress_command(CLI::App& app, CompressOpts& o) {
  auto* c = app.add_subcommand("compress",
                               "prefill a context, score it, prune it and save it for `ask --load` (no questions); "
                               "prints the kept ratio, KV bytes before and after, and the time of each step");
  c->footer(std::string(kLengthRule));
  add_compression_options(c, o);
  c->add_option("--context", o.context_file, "text file holding the context")->required();
  c->add_option("-o,--out", o.save_path, "the context file to write")->required();
  return c;
}

int run_compress_command(const CLI::App& cmd, const CompressOpts& o) {
  check_flags(cmd, "`kvzip compress`", compression_rules(o));
  check_method_options(o);
  const Out out{o.json};
  const std::string text = read_text_file(o.context_file);
  const auto t0 = Clock::now();
  auto m = load_model(o.model, o.load);
  const double load_s = seconds_since(t0);
  ThreadPool pool(o.threads);
  KvzipContext ctx(*m, pool, context_options(o));
  const std::vector<int32_t> ids = check_context_length(ctx, o, text, 0);
  const CompressResult r = compress_context(*m, ctx, o, ids, out);
  print_compress_result(out, ctx, o, r);
  if (o.json) {
    nlohmann::json j = compress_record(ctx, o, r);
    j["command"] = "compress";
    j["model"] = o.model;
    j["context_file"] = o.context_file;
    j["threads"] = pool.size();
    j["seconds"]["load"] = load_s;
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

}  // namespace kvz::cli

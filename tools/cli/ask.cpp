// `kvzip ask`: answers questions from a compressed context, made here from text (--context)
// or loaded from a file `kvzip compress` or `ask --save` wrote (--load). Answers stream as
// they are generated; --compare-full adds the full cache's answers; --json writes one record.
#include "ask.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "tokenizer/text_stream.h"

namespace kvz::cli {

QueryResult stream_answer(KvzipContext& ctx, const std::string& question, const GenerateParams& gp, const Out& out) {
  return stream_answer_ids(ctx, ctx.question_ids(question), gp, out, false);
}

QueryResult stream_answer_ids(KvzipContext& ctx, const std::vector<int32_t>& ids_in, const GenerateParams& gp,
                              const Out& out, bool update_cache) {
  const Tokenizer& tok = ctx.model().tokenizer();
  TextStream text(tok, {});
  std::vector<int32_t> ids;  // generated so far, without an end-of-turn token
  std::string piece;
  std::FILE* f = out.text();
  QueryResult r = ctx.query_ids(ids_in, gp, update_cache, [&](int32_t id) {
    if (tok.is_eog(id)) return true;
    ids.push_back(id);
    text.push(ids, piece);
    std::fputs(one_line(piece).c_str(), f);
    std::fflush(f);
    return true;
  });
  std::fputs(one_line(text.flush(ids)).c_str(), f);
  return r;
}

double ms_per_token(const QueryResult& r) {
  return r.stats.n_generated > 1 ? 1e3 * r.stats.decode_s / static_cast<double>(r.stats.n_generated - 1) : 0.0;
}

namespace {

nlohmann::json answer_record(const std::string& q, const QueryResult& r) {
  return {{"question", q},
          {"answer", r.answer},
          {"n_tokens", r.stats.n_generated},
          {"ms_per_token", ms_per_token(r)},
          {"stopped_at_eog", r.stats.stopped_at_eog}};
}

// Question i answered from the cache as it is now, printed as it comes after `label`;
// with `compare`, marked same/differs against that answer.
QueryResult answer_one(KvzipContext& ctx, size_t i, const std::string& q, const GenerateParams& gp, const Out& out,
                       const std::string& label, const QueryResult* compare) {
  out.print("Q{}: {}\n  {}", i + 1, q, label);
  QueryResult r = stream_answer(ctx, q, gp, out);
  if (compare) out.print("   [{}]", compare->answer == r.answer ? "same" : "differs");
  out.print("   ({:.2f} ms/token)\n", ms_per_token(r));
  return r;
}

std::vector<QueryResult> answer_all(KvzipContext& ctx, const std::vector<std::string>& qs, const GenerateParams& gp,
                                    const Out& out, const std::string& label,
                                    const std::vector<QueryResult>* compare = nullptr) {
  std::vector<QueryResult> rs;
  for (size_t i = 0; i < qs.size(); ++i)
    rs.push_back(answer_one(ctx, i, qs[i], gp, out, label, compare ? &(*compare)[i] : nullptr));
  return rs;
}

double mean_ms(const std::vector<QueryResult>& rs) {
  double s = 0;
  int64_t n = 0;
  for (const auto& r : rs) {
    s += r.stats.decode_s;
    n += std::max<int64_t>(0, r.stats.n_generated - 1);
  }
  return n ? 1e3 * s / static_cast<double>(n) : 0.0;
}

int64_t longest_question(const KvzipContext& ctx, const std::vector<std::string>& qs) {
  int64_t n = 0;
  for (const auto& q : qs) n = std::max<int64_t>(n, static_cast<int64_t>(ctx.question_ids(q).size()));
  return n;
}

}  // namespace

// ask --context (and the demo): compress `text` here, then answer. expected: the facts the
// answers should contain (the demo's), counted beside the exact matches.
int ask_from_text(const CLI::App& cmd, const AskOpts& a, const std::string& text,
                  const std::vector<std::string>& expected) {
  const CompressOpts& o = a.c;
  const bool no_q = a.questions.empty();
  const std::string mode = cmd.get_name() == "demo" ? "`kvzip demo`"
                           : no_q                   ? "`ask` without questions"
                                                    : "`ask --context`";
  std::vector<FlagRule> rules = compression_rules(o);
  const bool asks = !o.kvzap_stream() && make_method_press(o)->uses_question();
  rules.push_back({"--query-aware", o.kvzap_stream() || !asks,
                   o.method + " scores do not depend on a question, so query-aware scoring changes nothing"});
  rules.push_back({"--query-aware", !o.save_path.empty(),
                   "a saved file serves every later question, and query-aware scoring is done per question"});
  rules.push_back({"--query-aware", !o.compress_for.empty(), "--compress-for scores once for one question instead"});
  rules.push_back({"--retain-full", o.save_path.empty(), "only a saved file keeps the full cache; give --save FILE"});
  rules.push_back({"-n", no_q, "it sets the answer length, and no questions (-q) were given"});
  rules.push_back({"--compare-full", no_q, "it compares answers, and no questions (-q) were given"});
  check_flags(cmd, mode, rules);
  if (no_q && o.save_path.empty())
    fail("ask without questions (-q) only compresses: give --save FILE (or run `kvzip compress --context FILE -o FILE`)");
  check_method_options(o);
  const Out out{o.json};
  auto t0 = Clock::now();
  auto m = load_model(o.model, o.load);
  const double load_s = seconds_since(t0);
  ThreadPool pool(o.threads);
  ContextOptions co = context_options(o);
  co.retain_full = o.retain_full || o.query_aware;  // query-aware: every question rebuilds from the full cache
  GenerateParams gp;
  gp.n_predict = a.n_predict;

  std::vector<QueryResult> full;
  std::vector<int32_t> ids;
  if (a.compare_full && o.kvzap_stream()) {
    // KVzap evicts while prefilling: the full cache's answers come from a context of their own.
    KvzipContext f(*m, pool, context_options(o));
    ids = check_context_length(f, o, text, no_q ? 0 : longest_question(f, a.questions) + a.n_predict);
    {
      ProgressBar bar("prefill (full cache)", "tok", long_work_progress());
      f.prefill_ids(ids, bar.callback());
    }
    full = answer_all(f, a.questions, gp, out, "full cache:        ");
  }
  KvzipContext ctx(*m, pool, co);
  if (ids.empty()) ids = check_context_length(ctx, o, text, no_q ? 0 : longest_question(ctx, a.questions) + a.n_predict);
  const CompressResult r = compress_context(*m, ctx, o, ids, out, [&] {
    if (a.compare_full) full = answer_all(ctx, a.questions, gp, out, "full cache:        ");
  });
  if (!o.query_aware) print_compress_result(out, ctx, o, r);

  std::vector<QueryResult> comp;
  const std::string label = o.kvzap_stream() ? fmt::format("kvzap ({:.0f}% kept): ", 100 * r.pr.ratio_true)
                                             : fmt::format("compressed ({:.0f}%): ", 100 * o.ratio);
  if (o.query_aware) {
    out.print("{} query-aware: the cache is scored and pruned again for every question ({} level, ratio {})\n",
              o.method, r.level_name, o.ratio);
    const std::unique_ptr<Press> press = make_method_press(o);
    SelectOptions so;
    so.ratio = o.ratio;
    so.level = parse_prune_level(r.level_name);
    so.strict_threshold = o.strict;
    so.ada_alpha = o.ada_alpha;
    for (size_t i = 0; i < a.questions.size(); ++i) {
      const auto tq = Clock::now();
      ProgressBar bar(fmt::format("{} scoring for Q{}", o.method, i + 1), "tok", long_work_progress());
      const PruneReport pr = ctx.compress(*press, so, a.questions[i], bar.callback());
      bar.finish();
      out.print("[{} for Q{}: kept {:.1f}% of context pairs, {:.2f} s]\n", o.method, i + 1, 100.0 * pr.ratio_true,
                seconds_since(tq));
      comp.push_back(answer_one(ctx, i, a.questions[i], gp, out, label, full.empty() ? nullptr : &full[i]));
    }
  } else {
    for (size_t i = 0; i < a.questions.size(); ++i) {
      comp.push_back(answer_one(ctx, i, a.questions[i], gp, out, label, full.empty() ? nullptr : &full[i]));
      if (i < expected.size())
        out.print("  expected fact:     {}   [compressed: {}{}]\n", expected[i],
                  comp[i].answer.find(expected[i]) != std::string::npos ? "yes" : "no",
                  i < full.size() ? fmt::format(", full cache: {}",
                                                full[i].answer.find(expected[i]) != std::string::npos ? "yes" : "no")
                                  : "");
    }
  }
  int same = 0, full_ok = 0, comp_ok = 0;
  for (size_t i = 0; i < full.size() && i < comp.size(); ++i) same += full[i].answer == comp[i].answer;
  for (size_t i = 0; i < expected.size() && i < comp.size(); ++i) {
    comp_ok += comp[i].answer.find(expected[i]) != std::string::npos;
    if (i < full.size()) full_ok += full[i].answer.find(expected[i]) != std::string::npos;
  }
  // The headline: right answers first (a correct answer worded differently is still right),
  // then the exact matches with the full cache.
  if (!expected.empty())
    out.print("answers containing the expected fact: compressed {}/{}{}; identical to the full cache: {}/{}\n",
              comp_ok, expected.size(),
              full.empty() ? "" : fmt::format(", full cache {}/{}", full_ok, expected.size()), same, comp.size());
  else if (!full.empty())
    out.print("answers identical to the full cache: {}/{}\n", same, comp.size());
  if (!no_q)
    out.print("decode: {:.2f} ms/token from the compressed cache{} ({} threads)\n", mean_ms(comp),
              full.empty() ? "" : fmt::format(", {:.2f} ms/token from the full cache", mean_ms(full)), pool.size());
  if (o.json) {
    nlohmann::json j = compress_record(ctx, o, r);
    j["command"] = "ask";
    j["mode"] = "context";
    j["model"] = o.model;
    j["context_file"] = o.context_file;
    j["threads"] = pool.size();
    j["seconds"]["load"] = load_s;
    if (o.query_aware) j["query_aware"] = true;
    nlohmann::json ans = nlohmann::json::array();
    for (size_t i = 0; i < comp.size(); ++i) {
      nlohmann::json e = answer_record(a.questions[i], comp[i]);
      if (i < full.size()) {
        e["full_answer"] = full[i].answer;
        e["same_as_full"] = full[i].answer == comp[i].answer;
      }
      if (i < expected.size()) {
        e["expected"] = expected[i];
        e["contains_expected"] = comp[i].answer.find(expected[i]) != std::string::npos;
      }
      ans.push_back(e);
    }
    j["answers"] = ans;
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

namespace {

// ask --load: answer from a saved context; re-prune, convert or compare as asked.
int ask_from_file(const CLI::App& cmd, const AskOpts& a) {
  const CompressOpts& o = a.c;
  const std::string mode = "`ask --load`";
  const SavedInfo info = read_saved_info(a.load_path);  // header only: cheap, before the model loads
  const bool ratio_given = given(cmd, "--ratio");
  const bool no_q = a.questions.empty();
  const std::string no_text = "a saved file holds the cache and scores, not the context text";
  const std::string prunes_only = "it shapes a pruning, and without --ratio (or a file saved with --retain-full) "
                                  "nothing is pruned here";
  check_flags(cmd, mode,
              {{"--context", true, "--load answers from the saved context; compress new text with `kvzip compress`"},
               {"--query-aware", true, "query-aware scoring needs the context text; " + no_text},
               {"--compress-for", true, "scoring for a question needs the context text; " + no_text},
               {"--param", true, "method parameters act while scoring, and the saved file holds its scores already"},
               {"--head-scores", true, "head scores act while compressing; " + no_text},
               {"--threshold", true, "KVzap's --threshold evicts while prefilling, and --load does not prefill"},
               {"--window", true, "KVzap's window acts while prefilling, and --load does not prefill"},
               {"--kvzap", true, "the KVzap surrogate acts while prefilling, and --load does not prefill"},
               {"--batch", true, "it is the prefill batch, and --load does not prefill"},
               {"--retain-full", true, "the file keeps what it was saved with (`kvzip compress --retain-full`)"},
               {"--level", !ratio_given && !info.full_cache, prunes_only},
               {"--strict-threshold", !ratio_given && !info.full_cache, prunes_only},
               {"--ada-alpha", !ratio_given && !info.full_cache, prunes_only},
               {"-n", no_q, "it sets the answer length, and no questions (-q) were given"},
               {"--compare-full", no_q, "it compares answers, and no questions (-q) were given"}});
  if (no_q && o.save_path.empty())
    fail("ask --load: give questions (-q), or --save FILE to write the re-pruned or converted context");
  if (given(cmd, "--method")) {
    if (info.method.empty())
      fail("--method {}: {} does not record the method it was compressed with; scoring with {} needs the context "
           "text: `kvzip compress --context FILE --method {} -o FILE`",
           o.method, a.load_path, o.method, o.method);
    if (o.method != info.method)
      fail("--method {}: {} was compressed with {}; another method scores the context again, which needs the context "
           "text: `kvzip compress --context FILE --method {} -o FILE`",
           o.method, a.load_path, info.method, o.method);
  }
  if (ratio_given && !(o.ratio > 0 && o.ratio <= 1)) fail("--ratio {} is outside (0, 1]", o.ratio);
  const Out out{o.json};
  auto t0 = Clock::now();
  auto m = load_model(o.model, o.load);
  const double model_s = seconds_since(t0);
  ThreadPool pool(o.threads);
  ContextOptions co;
  co.n_ctx_max = o.n_ctx;
  co.retain_full = a.compare_full;
  KvzipContext ctx(*m, pool, co);
  t0 = Clock::now();
  ctx.load(a.load_path);
  const double load_s = seconds_since(t0);
  const bool holds_full = !ctx.pruned();
  const std::string what = holds_full ? "full cache" : fmt::format("compressed: {:.1f}% of context pairs kept",
                                                                   100.0 * ctx.ratio_kept());
  out.print("loaded {}: {} context tokens, KV cache {} ({}{}) in {:.2f} s\n", a.load_path, ctx.n_ctx(),
            human_bytes(static_cast<double>(ctx.kv_bytes())), what,
            info.method.empty() ? "" : fmt::format(", {} {}", info.method, info.level), load_s);
  if (a.compare_full && !holds_full)
    fail("--compare-full needs the full cache, and {} holds only the compressed one (save it with `kvzip compress "
         "--retain-full`)",
         a.load_path);
  if (ctx.session().cache().type() != parse_kv_type(o.kv_type) && given(cmd, "--kv-type")) {
    const size_t before = ctx.kv_bytes();
    ctx.convert_kv(parse_kv_type(o.kv_type));
    out.print("converted the KV cache to {}: {} -> {} (approximate: the file's rows were computed in {})\n", o.kv_type,
              human_bytes(static_cast<double>(before)), human_bytes(static_cast<double>(ctx.kv_bytes())),
              info.kv_type.empty() ? "another type" : info.kv_type);
  }
  if (!holds_full && !ctx.has_scores() && ratio_given)
    fail("--ratio {}: {} holds no scores (it was pruned while prefilling, or by head scores), so it cannot be pruned "
         "again; compress the context again",
         o.ratio, a.load_path);

  GenerateParams gp;
  gp.n_predict = a.n_predict;
  const int64_t room = no_q ? 0 : longest_question(ctx, a.questions) + a.n_predict;
  if (room > 0 && ctx.session().n_pos() + room > ctx.n_ctx_max())
    fail("{}: the context spans {} positions; answering needs {} more (the longest question and -n answer tokens), "
         "more than the window of {} tokens",
         a.load_path, ctx.session().n_pos(), room, ctx.n_ctx_max());
  // The pruning this run asks for: --ratio, else the ratio a --retain-full file was saved for.
  const double target = ratio_given ? o.ratio : (holds_full && info.full_cache ? info.ratio : 0.0);
  if (a.compare_full && target <= 0)
    fail("--compare-full: {} holds the full cache and records no ratio; give --ratio to compare with a compressed "
         "cache",
         a.load_path);
  std::vector<QueryResult> full;
  if (a.compare_full) full = answer_all(ctx, a.questions, gp, out, "full cache:        ");

  const std::string method = info.method.empty() ? "kvzip" : info.method;
  SelectOptions so;
  so.ratio = target;
  so.level = given(cmd, "--level")            ? parse_prune_level(o.level)
             : !info.level.empty() && info.level != "threshold" ? parse_prune_level(info.level)
                                                                 : method_info(method).level;
  so.strict_threshold = given(cmd, "--strict-threshold") ? o.strict : info.strict;
  so.ada_alpha = given(cmd, "--ada-alpha") ? o.ada_alpha : info.ada_alpha;
  PruneReport pr;
  pr.ratio_true = ctx.ratio_kept();
  pr.kv_bytes_before = pr.kv_bytes_after = ctx.kv_bytes();
  const double saved = holds_full ? 1.0 : (info.ratio > 0 ? info.ratio : ctx.ratio_kept());
  const bool reshape = given(cmd, "--level") || given(cmd, "--strict-threshold") || given(cmd, "--ada-alpha");
  if (target > 0 && (std::abs(target - saved) > 1e-9 || reshape)) {
    if (target > saved)
      fail("--ratio {}: {} holds only the compressed cache ({:.1f}% of the context pairs kept); a higher ratio needs "
           "the full cache: save it with `kvzip compress --retain-full`, or compress the context again",
           target, a.load_path, 100.0 * ctx.ratio_kept());
    const std::unique_ptr<Press> press =
        info.method.empty() || info.level == "threshold" ? nullptr : make_press(method, parse_press_params(info.params));
    t0 = Clock::now();
    pr = ctx.reprune(so, press.get());
    out.print("pruned to ratio {} ({} level) from the saved scores: kept {:.1f}% of context pairs, KV cache {} -> {} "
              "in {:.2f} s\n",
              target, prune_level_name(so.level), 100.0 * pr.ratio_true,
              human_bytes(static_cast<double>(pr.kv_bytes_before)), human_bytes(static_cast<double>(pr.kv_bytes_after)),
              seconds_since(t0));
  }
  if (!o.save_path.empty()) {
    CompressOpts s = o;
    s.method = method;
    s.params = info.params;
    s.ratio = target > 0 ? target : info.ratio;
    s.strict = so.strict_threshold;
    s.ada_alpha = so.ada_alpha;
    s.kv_type = kv_type_name(ctx.session().cache().type());
    ctx.save(o.save_path, saved_info_json(s, info.level == "threshold" ? "threshold" : prune_level_name(so.level), false));
    out.print("saved {}\n", o.save_path);
  }
  const std::string label = full.empty() ? "answer: " : fmt::format("compressed ({:.0f}%): ", 100 * target);
  const std::vector<QueryResult> comp = answer_all(ctx, a.questions, gp, out, label, full.empty() ? nullptr : &full);
  if (!full.empty()) {
    int same = 0;
    for (size_t i = 0; i < comp.size(); ++i) same += full[i].answer == comp[i].answer;
    out.print("answers identical to the full cache: {}/{}\n", same, comp.size());
  }
  if (o.json) {
    nlohmann::json j = {{"command", "ask"},
                        {"mode", "load"},
                        {"model", o.model},
                        {"file", a.load_path},
                        {"n_ctx", ctx.n_ctx()},
                        {"method", info.method},
                        {"ratio_true", ctx.ratio_kept()},
                        {"kv_type", kv_type_name(ctx.session().cache().type())},
                        {"kv_bytes", ctx.kv_bytes()},
                        {"threads", pool.size()},
                        {"seconds", {{"load_model", model_s}, {"load_context", load_s}}}};
    nlohmann::json ans = nlohmann::json::array();
    for (size_t i = 0; i < comp.size(); ++i) {
      nlohmann::json e = answer_record(a.questions[i], comp[i]);
      if (i < full.size()) {
        e["full_answer"] = full[i].answer;
        e["same_as_full"] = full[i].answer == comp[i].answer;
      }
      ans.push_back(e);
    }
    j["answers"] = ans;
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

}  // namespace

CLI::App* add_ask_command(CLI::App& app, AskOpts& a) {
  auto* ask = app.add_subcommand(
      "ask", "answer questions from a compressed context: --context FILE compresses the text here (KVzip by "
             "default), --load FILE reuses a file from `kvzip compress` or --save; answers stream as they are "
             "generated, --compare-full adds the full cache's answers");
  ask->footer(std::string(kLengthRule));
  add_compression_options(ask, a.c);
  ask->add_option("--context", a.c.context_file, "text file holding the context");
  ask->add_option("--save", a.c.save_path, "save the compressed context to this file (reuse it with --load)");
  ask->add_option("--load", a.load_paths,
                  "answer from a saved context (no prefill, no scoring); --ratio below the saved one prunes further "
                  "from the saved scores, --kv-type converts the rows. Repeat it to ask over several documents at "
                  "once: their caches are composed in the order given, each moved to where it now sits "
                  "(docs/composition.md)");
  ask->add_option("-q,--question", a.questions, "a question (repeat for several); none: compress and --save only");
  ask->add_flag("--query-aware", a.c.query_aware, "score with each question present (cache rebuilt per question)");
  ask->add_flag("--compare-full", a.compare_full,
                "also answer from the full cache and mark each compressed answer same/differs (with --load the file "
                "must hold the full cache: `kvzip compress --retain-full`)");
  ask->add_option("-n,--n-predict", a.n_predict, "max answer tokens")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  return ask;
}

int run_ask_command(const CLI::App& cmd, const AskOpts& opts) {
  AskOpts a = opts;
  if (a.load_paths.size() > 1) return ask_composed(cmd, a);
  if (a.load_paths.size() == 1) a.load_path = a.load_paths[0];
  if (!a.load_path.empty()) return ask_from_file(cmd, a);
  if (a.c.context_file.empty()) fail("ask: give --context FILE (or --load FILE)");
  return ask_from_text(cmd, a, read_text_file(a.c.context_file), {});
}

}  // namespace kvz::cli

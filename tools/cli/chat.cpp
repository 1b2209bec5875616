// `kvzip chat --load ctx.kvz` (or `--context FILE`, compressed first): questions from stdin,
// one per line, each answer streamed to stdout. Turns stay in the cache (the reference's
// update_cache=True: each question is fed as KVzip feeds one after its context, following the
// previous answer and its end-of-turn token), so a later question can refer to an earlier
// answer; --no-history answers every line from the compressed context alone. A ready
// compressed context is never changed: the session works on its own copy, and /reset goes
// back to it.
#include "chat.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "ask.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace kvz::cli {

namespace {

constexpr const char* kCommands =
    "commands:\n"
    "  /stats        kept ratio, KV cache size, positions used of the window, turns kept\n"
    "  /reset        back to the compressed context (drops the turns)\n"
    "  /save PATH    save the cache as it is now, turns included (`kvzip ask --load PATH` reads it)\n"
    "  /help         this list\n"
    "  /quit         end the session (so does end of input)\n";

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

}  // namespace

CLI::App* add_chat_command(CLI::App& app, ChatOpts& o) {
  auto* c = app.add_subcommand(
      "chat",
      "a conversation over a compressed context: --load FILE (from `kvzip compress`), or --context FILE compressed "
      "here first (--method, --ratio, ... as in compress). Reads one question per line from stdin (a terminal or a "
      "pipe) and streams each answer; turns are kept in the cache unless --no-history. Lines starting with / are "
      "commands: /stats /reset /save PATH /help /quit");
  c->footer(std::string(
      "Example session:\n"
      "  $ kvzip compress --context report.txt -o report.kvz --ratio 0.3\n"
      "  $ kvzip chat --load report.kvz\n"
      "  > Who signed the report?\n"
      "  The report was signed by ...\n"
      "  > When did they sign it?          (the turn above is in the cache)\n"
      "  > /stats\n"
      "  > /save report-turns.kvz\n"
      "  > /quit\n"
      "Piped: printf 'Q1\\nQ2\\n' | kvzip chat --load report.kvz\n\n") +
      kCommands);
  add_compression_options(c, o.c);
  c->add_option("--load", o.load_path, "a saved context (`kvzip compress`, `ask --save`)");
  c->add_option("--context", o.c.context_file, "text file: compressed here first (KVzip by default)");
  c->add_option("-n,--n-predict", o.n_predict, "max tokens per answer")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  c->add_flag("--no-history", o.no_history,
              "answer every question from the compressed context alone (update_cache=false): nothing is kept");
  return c;
}

int run_chat_command(const CLI::App& cmd, const ChatOpts& o) {
  const CompressOpts& co = o.c;
  const bool load = !o.load_path.empty();
  if (load == !co.context_file.empty())
    fail("chat: give --load FILE (a compressed context) or --context FILE (compressed here first), one of them");
  const std::string prepare = "it shapes a compression, and --load answers from one made already (prepare the file "
                              "with `kvzip compress` or `kvzip ask --load F --ratio R --save G`)";
  std::vector<FlagRule> rules = {{"--json", true, "chat prints its turns as text"},
                                 {"--compress-for", true, "a chat's questions are not known in advance"},
                                 {"--query-aware", true, "a chat's questions are not known in advance"}};
  if (load) {
    for (const char* f : {"--ratio", "--method", "--level", "--param", "--threshold", "--window", "--kvzap",
                          "--head-scores", "--strict-threshold", "--ada-alpha", "--retain-full", "--batch"})
      rules.push_back({f, true, prepare});
  } else {
    for (const FlagRule& r : compression_rules(co)) rules.push_back(r);
  }
  check_flags(cmd, load ? "`chat --load`" : "`chat --context`", rules);
  if (!load) check_method_options(co);
  const Out out{false};
  auto m = load_model(co.model, co.load);
  ThreadPool pool(co.threads);
  KvzipContext ctx(*m, pool, context_options(co));
  std::string source;
  if (load) {
    ctx.load(o.load_path);
    if (given(cmd, "--kv-type") && ctx.session().cache().type() != parse_kv_type(co.kv_type))
      ctx.convert_kv(parse_kv_type(co.kv_type));
    source = o.load_path;
  } else {
    const std::string text = read_text_file(co.context_file);
    const std::vector<int32_t> ids = check_context_length(ctx, co, text, o.n_predict + 64);
    const CompressResult r = compress_context(*m, ctx, co, ids, out);
    print_compress_result(out, ctx, co, r);
    source = co.context_file;
  }
  // The compressed context the session starts from and /reset returns to.
  const StoredContext base_meta = ctx.stored();
  const KvCache base_cache = ctx.session().cache().clone();
  auto describe = [&] {
    return fmt::format("{} context tokens, {:.1f}% of context pairs kept, KV cache {}", ctx.n_ctx(),
                       100.0 * ctx.ratio_kept(), human_bytes(static_cast<double>(ctx.kv_bytes())));
  };
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  fmt::print(stderr, "chat over {}: {}; {}. /help lists the commands.\n", source, describe(),
             o.no_history ? "every question answered from the compressed context alone (--no-history)"
                          : "turns are kept in the cache");
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  int turns = 0;
  int32_t last_end = -1;  // the previous kept answer's end-of-turn token, fed before the next question
  std::string line;
  while (true) {
    if (tty) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    const std::string q = trim(line);
    if (q.empty()) continue;
    try {
      if (q[0] == '/') {
        const std::string name = q.substr(0, q.find_first_of(" \t"));
        const std::string arg = trim(q.substr(name.size()));
        if (name == "/quit" || name == "/exit") break;
        if (name == "/help") {
          std::fputs(kCommands, stdout);
        } else if (name == "/stats") {
          fmt::print("{}; positions {} of {}; {} turn{} kept\n", describe(), ctx.session().n_pos(), ctx.n_ctx_max(),
                     turns, turns == 1 ? "" : "s");
        } else if (name == "/reset") {
          StoredContext meta = base_meta;
          ctx.assign(std::move(meta), base_cache.clone(), "the compressed context");
          turns = 0;
          last_end = -1;
          fmt::print("reset: back to the compressed context ({} positions)\n", ctx.session().n_pos());
        } else if (name == "/save") {
          if (arg.empty()) fail("/save needs a file name: /save PATH");
          ctx.save(arg);
          fmt::print("saved {} ({} turn{} kept, {} positions)\n", arg, turns, turns == 1 ? "" : "s",
                     ctx.session().n_pos());
        } else {
          fail("unknown command '{}' (/help lists them)", name);
        }
        std::fflush(stdout);
        continue;
      }
      std::vector<int32_t> ids;
      if (!o.no_history && last_end >= 0) ids.push_back(last_end);
      const std::vector<int32_t> qi = ctx.question_ids(q);
      ids.insert(ids.end(), qi.begin(), qi.end());
      const int64_t need = static_cast<int64_t>(ids.size()) + o.n_predict;
      if (ctx.session().n_pos() + need > ctx.n_ctx_max()) {
        fmt::print(stderr,
                   "kvzip: error: the window is full: {} of {} positions used, and this question with its answer "
                   "needs {} more; /reset drops the {} kept turn{} (or lower -n)\n",
                   ctx.session().n_pos(), ctx.n_ctx_max(), need, turns, turns == 1 ? "" : "s");
        continue;
      }
      const QueryResult r = stream_answer_ids(ctx, ids, gp, out, !o.no_history);
      std::fputs("\n", stdout);
      std::fflush(stdout);
      fmt::print(stderr, "  ({} tokens, {:.1f} ms to first token, {:.2f} ms/token)\n", r.stats.n_generated,
                 1e3 * r.stats.prefill_s, ms_per_token(r));
      if (!o.no_history) {
        ++turns;
        last_end = r.end_id;
      }
    } catch (const Error& e) {
      std::fflush(stdout);
      fmt::print(stderr, "kvzip: error: {}\n", e.what());
    }
  }
  return 0;
}

}  // namespace kvz::cli

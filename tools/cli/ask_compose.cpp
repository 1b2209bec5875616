// `kvzip ask --load a.kvz --load b.kvz -q ...`: one question over several saved contexts,
// composed into one cache (kv/compose.h): the system prompt once, then each document's kept
// rows moved to where it now sits, keys re-rotated. No prefill of the documents, no scoring.
#include <nlohmann/json.hpp>

#include "ask.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kv/compose.h"

namespace kvz::cli {

int ask_composed(const CLI::App& cmd, const AskOpts& a) {
  const CompressOpts& o = a.c;
  const std::string mode = "ask over several --load files";
  const std::string per_file = "it acts on one context; prepare each file first (`kvzip ask --load F --ratio R --save "
                               "G`, `kvzip compress`), then compose them";
  check_flags(cmd, mode,
              {{"--context", true, "composition answers from saved contexts; compress new text with `kvzip compress`"},
               {"--ratio", true, per_file},
               {"--method", true, per_file},
               {"--level", true, per_file},
               {"--param", true, per_file},
               {"--threshold", true, per_file},
               {"--window", true, per_file},
               {"--kvzap", true, per_file},
               {"--head-scores", true, per_file},
               {"--strict-threshold", true, per_file},
               {"--ada-alpha", true, per_file},
               {"--retain-full", true, per_file},
               {"--batch", true, "it is the prefill batch, and --load does not prefill"},
               {"--query-aware", true, "query-aware scoring needs the context text"},
               {"--compress-for", true, "scoring for a question needs the context text"},
               {"--compare-full", true, "the composed cache has no full counterpart here; answer each file alone"},
               {"-n", a.questions.empty(), "it sets the answer length, and no questions (-q) were given"}});
  if (a.questions.empty() && o.save_path.empty())
    fail("ask --load ... --load ...: give questions (-q), or --save FILE to write the composed context");
  const Out out{o.json};
  auto t0 = Clock::now();
  auto m = load_model(o.model, o.load);
  ThreadPool pool(o.threads);
  ContextOptions co;
  co.n_ctx_max = o.n_ctx;
  KvzipContext ctx(*m, pool, co);

  t0 = Clock::now();
  std::vector<StoredContext> metas(a.load_paths.size());
  std::vector<KvCache> caches;
  std::vector<ComposePart> parts;
  caches.reserve(a.load_paths.size());
  for (size_t i = 0; i < a.load_paths.size(); ++i)
    caches.push_back(load_context(a.load_paths[i], m->identity(), metas[i]));
  for (size_t i = 0; i < a.load_paths.size(); ++i) parts.push_back({&metas[i], &caches[i], a.load_paths[i]});
  const KvType type = given(cmd, "--kv-type") ? parse_kv_type(o.kv_type) : caches[0].type();
  const double load_s = seconds_since(t0);
  t0 = Clock::now();
  ComposedContext c = compose_contexts(*m, parts, type);
  const double compose_s = seconds_since(t0);
  for (size_t i = 0; i < parts.size(); ++i) {
    KvzipContext one(*m, pool, co);  // the file alone: its kept ratio as the kept mask says
    one.assign(std::move(metas[i]), std::move(caches[i]), a.load_paths[i]);
    out.print("  {}: {} context tokens from position {}, {} ({:.1f}% of context pairs kept)\n", a.load_paths[i],
              one.n_ctx(), c.meta.n_sys + c.starts[i], human_bytes(static_cast<double>(one.kv_bytes())),
              100.0 * one.ratio_kept());
  }
  ctx.assign(std::move(c.meta), std::move(c.cache), "the composed context");
  out.print("composed {} contexts: {} context tokens over {} positions, KV cache {} ({}, {:.1f}% of context pairs "
            "kept); read in {:.2f} s, composed in {:.3f} s\n",
            parts.size(), ctx.n_ctx(), ctx.session().n_pos(), human_bytes(static_cast<double>(ctx.kv_bytes())),
            kv_type_name(type), 100.0 * ctx.ratio_kept(), load_s, compose_s);
  if (!o.save_path.empty()) {
    ctx.save(o.save_path, "");
    out.print("saved {}\n", o.save_path);
  }

  GenerateParams gp;
  gp.n_predict = a.n_predict;
  nlohmann::json answers = nlohmann::json::array();
  for (size_t i = 0; i < a.questions.size(); ++i) {
    const int64_t room = static_cast<int64_t>(ctx.question_ids(a.questions[i]).size()) + a.n_predict;
    if (ctx.session().n_pos() + room > ctx.n_ctx_max())
      fail("the composed context spans {} positions; question {} and its answer need {} more, past the window of {}",
           ctx.session().n_pos(), i + 1, room, ctx.n_ctx_max());
    out.print("Q{}: {}\n  answer: ", i + 1, a.questions[i]);
    const QueryResult r = stream_answer(ctx, a.questions[i], gp, out);
    out.print("   ({:.1f} ms to first token, {:.2f} ms/token)\n", 1e3 * r.stats.prefill_s, ms_per_token(r));
    answers.push_back({{"question", a.questions[i]}, {"answer", r.answer}, {"n_tokens", r.stats.n_generated},
                       {"ms_first_token", 1e3 * r.stats.prefill_s}, {"ms_per_token", ms_per_token(r)}});
  }
  if (o.json) {
    nlohmann::json j = {{"command", "ask"},      {"mode", "compose"},        {"model", o.model},
                        {"files", a.load_paths}, {"n_ctx", ctx.n_ctx()},     {"n_pos", ctx.session().n_pos()},
                        {"ratio_true", ctx.ratio_kept()}, {"kv_bytes", ctx.kv_bytes()}, {"compose_s", compose_s},
                        {"answers", answers}};
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

}  // namespace kvz::cli

#include "eval_compose.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <unistd.h>
#include <fstream>

#include "common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "eval/compose_eval.h"
#include "io/context_store.h"
#include "kernels/types.h"
#include "kv/compose.h"
#include "kv/kvzip_context.h"

namespace kvz::cli {

CLI::App* add_eval_compose_command(CLI::App& app, EvalComposeCli& c, const std::string& default_model) {
  c.model = default_model;
  auto* s = app.add_subcommand(
      "eval-compose",
      "measure what composing separately prefilled and separately compressed documents costs: a generated "
      "multi-document task (people spread over several register volumes; questions needing one volume or two) "
      "answered from (a) all documents prefilled together, (b) each prefilled alone and the full caches composed, "
      "(c) each compressed alone by KVzip at each --ratios value and composed. Prints a markdown report: scores per "
      "question type, teacher-forced KL of the joint answers against (a), cache sizes, times (docs/composition.md).\n"
      "Example: kvzip eval-compose -m qwen2.5-coder-0.5b --docs 4,6,8 -o report.md");
  s->add_option("-m,--model", c.model, "GGUF file, Hugging Face folder or pull name")->capture_default_str();
  s->add_option("-t,--threads", c.threads, "worker threads (0: all cores)")->capture_default_str();
  s->add_option("--docs", c.docs, "documents per sample, one sample per value (each >= 2)")
      ->delimiter(',')
      ->capture_default_str();
  s->add_option("--min-tokens", c.min_tokens, "shortest document, tokens")->capture_default_str();
  s->add_option("--max-tokens", c.max_tokens, "longest document, tokens")->capture_default_str();
  s->add_option("--ratios", c.ratios, "KVzip ratios of the compressed documents (pair level), in (0, 1]")
      ->delimiter(',')
      ->capture_default_str();
  s->add_option("-n,--n-predict", c.n_predict, "answer length, tokens (greedy)")->capture_default_str();
  s->add_option("--seed", c.seed, "seed of the generated task")->capture_default_str();
  s->add_option("-o,--out", c.out, "write the markdown report here (default: stdout)");
  s->add_option("--json", c.json, "also write every question, reference and answer per cache here");
  return s;
}

int run_eval_compose_command(const EvalComposeCli& c, const LoadOptions& lopt) {
  for (int d : c.docs)
    if (d < 2) fail("--docs: a sample needs at least 2 documents, not {}", d);
  if (c.n_predict < 1) fail("-n: at least 1 token, not {}", c.n_predict);
  auto model = load_model(c.model, lopt);
  ThreadPool pool(c.threads);
  ComposeEvalOptions o;
  o.n_docs = c.docs;
  o.doc_tokens_min = c.min_tokens;
  o.doc_tokens_max = c.max_tokens;
  o.ratios = c.ratios;
  o.max_new_tokens = c.n_predict;
  o.seed = c.seed;
  const auto t0 = Clock::now();
  o.log = [&](const std::string& line) { fmt::print(stderr, "[eval-compose {:6.1f} s] {}\n", seconds_since(t0), line); };
  const ComposeEvalResult r = run_compose_eval(*model, pool, o);
  const std::time_t now = std::time(nullptr);
  const std::string name = model->identity().name.empty() ? c.model : model->identity().name;
  const std::string header = fmt::format(
      "## {}\n\n{:%Y-%m-%d} (UTC), {}, {} kernels, {} threads; `kvzip eval-compose --docs {} --min-tokens {} "
      "--max-tokens {} --ratios {} -n {} --seed {}`, {:.0f} s in all.\n",
      name, fmt::gmtime(now), cpu_model_name(), kernel_isa(), pool.size(), fmt::join(c.docs, ","), c.min_tokens,
      c.max_tokens, fmt::join(c.ratios, ","), c.n_predict, c.seed, seconds_since(t0));
  const std::string md = compose_eval_markdown(r, header);
  if (c.out.empty()) {
    fmt::print("{}", md);
  } else {
    std::ofstream f(c.out);
    if (!(f << md)) fail("cannot write {}", c.out);
    fmt::print(stderr, "wrote {}\n", c.out);
  }
  if (!c.json.empty()) {
    nlohmann::json j = {{"model", name}, {"questions", r.questions}, {"references", r.references}};
    nlohmann::json cs = nlohmann::json::array();
    for (size_t i = 0; i < r.configs.size(); ++i)
      cs.push_back({{"cache", r.configs[i].name}, {"scores", r.configs[i].scores}, {"answers", r.answers[i]}});
    j["caches"] = cs;
    std::ofstream f(c.json);
    if (!(f << j.dump(1) << "\n")) fail("cannot write {}", c.json);
  }
  return 0;
}

CLI::App* add_bench_compose_command(CLI::App& app, BenchComposeCli& c, const std::string& default_model) {
  c.model = default_model;
  auto* s = app.add_subcommand(
      "bench-compose",
      "time to first token of a question over --docs stored documents, each KVzip-compressed to --ratio and saved "
      "once (not timed): read the files, compose, prefill the question (what kvzip ask --load a --load b ... and "
      "the server's context_ids do), against prefilling all the documents with the question in one go (what RAG "
      "pays without stored caches); same model, threads and text. Medians of --reps runs. Run on an idle machine.\n"
      "Example: kvzip bench-compose -m qwen2.5-coder-0.5b --docs 4 --tokens 1000 -t 2");
  s->add_option("-m,--model", c.model, "GGUF file, Hugging Face folder or pull name")->capture_default_str();
  s->add_option("-t,--threads", c.threads, "worker threads (0: all cores)")->capture_default_str();
  s->add_option("--docs", c.docs, "documents (>= 2)")->capture_default_str();
  s->add_option("--tokens", c.tokens, "tokens per document (about)")->capture_default_str();
  s->add_option("--ratio", c.ratio, "KVzip ratio of the stored documents, in (0, 1]")->capture_default_str();
  s->add_option("--reps", c.reps, "timed runs of each way (the median is printed)")->capture_default_str();
  s->add_option("--seed", c.seed, "seed of the generated documents")->capture_default_str();
  s->add_option("--dir", c.dir, "keep the stored documents here (default: a temporary folder, removed)");
  return s;
}

int run_bench_compose_command(const BenchComposeCli& c, const LoadOptions& lopt) {
  if (c.docs < 2) fail("--docs: at least 2, not {}", c.docs);
  if (!(c.ratio > 0 && c.ratio <= 1)) fail("--ratio {} is not in (0, 1]", c.ratio);
  if (c.reps < 1) fail("--reps: at least 1, not {}", c.reps);
  if (c.tokens < 100) fail("--tokens: at least 100, not {}", c.tokens);
  auto model = load_model(c.model, lopt);
  const Model& m = *model;
  ThreadPool pool(c.threads);
  const Tokenizer& tok = m.tokenizer();
  auto count = [&](const std::string& s) { return static_cast<int64_t>(tok.encode(s, false).size()); };
  const MultiDocSample smp = make_multidoc_sample(c.seed, c.docs, c.tokens, c.tokens, count);
  const std::string question = smp.questions.back().text;  // a two-document question
  namespace fs = std::filesystem;
  const bool temp_dir = c.dir.empty();
  const fs::path dir = temp_dir ? fs::temp_directory_path() / fmt::format("kvz_bench_compose_{}", ::getpid()) : fs::path(c.dir);
  fs::create_directories(dir);
  struct Cleanup {
    fs::path p;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(p, ec);
    }
  } cleanup{dir, temp_dir};

  // Stored once: each document prefilled, scored and pruned alone, saved.
  std::vector<int32_t> all;
  std::vector<std::string> files;
  int64_t stored_bytes = 0;
  for (int d = 0; d < c.docs; ++d) {
    const std::vector<int32_t> ids = tok.encode(smp.docs[d], false);
    all.insert(all.end(), ids.begin(), ids.end());
    KvzipContext ctx(m, pool);
    ctx.prefill_ids(ids);
    ctx.score();
    SelectOptions so;
    so.ratio = c.ratio;
    ctx.prune(so);
    files.push_back((dir / fmt::format("doc{}.kvz", d + 1)).string());
    ctx.save(files.back());
    stored_bytes += static_cast<int64_t>(ctx.kv_bytes());
    fmt::print(stderr, "stored document {} of {}: {} tokens, {:.1f}% kept\n", d + 1, c.docs, ids.size(),
               100.0 * ctx.ratio_kept());
  }
  GenerateParams gp;
  gp.n_predict = 1;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<double> t_rag, t_comp, t_read, t_compose, t_q;
  std::string a_rag, a_comp;
  for (int rep = 0; rep < c.reps + 1; ++rep) {  // the first of each is a warm-up, not counted
    {
      const auto t0 = Clock::now();
      KvzipContext ctx(m, pool);
      ctx.prefill_ids(all);
      const QueryResult r = ctx.query(question, gp, false);
      if (rep > 0) t_rag.push_back(seconds_since(t0));
      a_rag = r.answer;
    }
    {
      const auto t0 = Clock::now();
      std::vector<StoredContext> metas(files.size());
      std::vector<KvCache> caches;
      for (size_t i = 0; i < files.size(); ++i) caches.push_back(load_context(files[i], m.identity(), metas[i]));
      const double read_s = seconds_since(t0);
      std::vector<ComposePart> ps;
      for (size_t i = 0; i < files.size(); ++i) ps.push_back({&metas[i], &caches[i], files[i]});
      const auto t1 = Clock::now();
      ComposedContext cc = compose_contexts(m, ps, caches[0].type());
      KvzipContext ctx(m, pool);
      ctx.assign(std::move(cc.meta), std::move(cc.cache), "the composed documents");
      const double compose_s = seconds_since(t1);
      const QueryResult r = ctx.query(question, gp, false);
      if (rep > 0) {
        t_comp.push_back(seconds_since(t0));
        t_read.push_back(read_s);
        t_compose.push_back(compose_s);
        t_q.push_back(r.stats.prefill_s);
      }
      a_comp = r.answer;
    }
    fmt::print(stderr, "run {} of {}{}\n", rep + 1, c.reps + 1, rep == 0 ? " (warm-up)" : "");
  }
  const std::time_t now = std::time(nullptr);
  const double rag = median(t_rag), comp = median(t_comp);
  fmt::print(
      "{:%Y-%m-%d} (UTC), {}, {} kernels, {} threads, {}: {} documents of {} tokens ({} in all), stored at ratio {:g} "
      "({:.1f} MiB of KV)\n"
      "  prefill the documents + question (RAG today): {:.1f} ms to first token (median of {})\n"
      "  stored documents, composed:                   {:.1f} ms to first token = read {:.1f} + compose {:.1f} + "
      "question {:.1f} ms (medians)\n"
      "  speed-up {:.1f}x; first token: '{}' vs '{}'\n",
      fmt::gmtime(now), cpu_model_name(), kernel_isa(), pool.size(),
      m.identity().name.empty() ? c.model : m.identity().name, c.docs, c.tokens, all.size(), c.ratio,
      static_cast<double>(stored_bytes) / (1 << 20), 1e3 * rag, c.reps, 1e3 * comp, 1e3 * median(t_read),
      1e3 * median(t_compose), 1e3 * median(t_q), rag / comp, one_line(a_rag), one_line(a_comp));
  return 0;
}

}  // namespace kvz::cli

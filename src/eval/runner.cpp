#include "eval/runner.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "eval/fidelity.h"
#include "eval/metrics.h"
#include "kv/kvzip_context.h"

namespace kvz {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double secs_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// One question's full-cache reference: the answer, the ids it teacher-forces and their
// log-probabilities under the full cache.
struct FullAnswer {
  std::string text;
  std::vector<int32_t> targets;  // answer ids + the end token when generation stopped there
  std::vector<float> logprobs;   // [targets][n_vocab]
};

json fidelity_json(const Fidelity& f) {
  return {{"n_tokens", f.n_tokens},      {"sum_abs_dp", f.sum_abs_dp},   {"mean_abs_dp", f.mean_abs_dp()},
          {"max_abs_dp", f.max_abs_dp},  {"flips", f.flips},             {"flip_rate", f.flip_rate()},
          {"sum_kl", f.sum_kl},          {"mean_kl", f.mean_kl()},       {"max_kl", f.max_kl}};
}

// Appends one line and flushes, so a killed run loses at most the record being written.
class JsonlAppender {
 public:
  explicit JsonlAppender(const std::string& path) {
    bool needs_newline = false;
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      if (std::fseek(f, -1, SEEK_END) == 0) needs_newline = std::fgetc(f) != '\n';
      std::fclose(f);
    }
    f_ = std::fopen(path.c_str(), "ab");
    if (!f_) fail("{}: cannot open for appending", path);
    if (needs_newline) std::fputc('\n', f_);  // end a line cut off by an interrupted run
  }
  ~JsonlAppender() {
    if (f_) std::fclose(f_);
  }
  void write(const json& j) {
    // A generated answer cut at the token limit can end inside a UTF-8 sequence: replace
    // invalid bytes instead of failing the record.
    const std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    if (std::fwrite(s.data(), 1, s.size(), f_) != s.size() || std::fflush(f_) != 0) fail("write error on the results file");
  }

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace

std::string record_key(const std::string& model, const std::string& task, int sample, uint64_t seed,
                       int64_t ctx_target, const std::string& method, double ratio) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{:.4f}", model, task, sample, seed, ctx_target, method, ratio);
}

std::set<std::string> done_record_keys(const std::string& path, int* n_bad) {
  std::set<std::string> keys;
  if (n_bad) *n_bad = 0;
  std::ifstream in(path);
  if (!in) return keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      keys.insert(record_key(j.at("model"), j.at("task"), j.at("sample"), j.at("seed"), j.at("ctx_target"),
                             j.at("method"), j.at("ratio")));
    } catch (const json::exception&) {
      if (n_bad) ++*n_bad;
    }
  }
  return keys;
}

EvalRunStats run_eval(const Model& model, ThreadPool& pool, const std::vector<EvalSample>& samples,
                      const EvalOptions& o) {
  if (o.methods.empty()) fail("eval: no methods");
  if (o.ratios.empty()) fail("eval: no ratios");
  for (double r : o.ratios)
    if (!(r > 0 && r <= 1)) fail("eval: ratio {} is outside (0, 1]", r);
  std::vector<EvalMethod> methods;
  for (const auto& n : o.methods) methods.push_back(resolve_method(n, o.method_env));

  const std::set<std::string> done = done_record_keys(o.out_path);
  JsonlAppender out(o.out_path);
  const int n_vocab = model.hp().n_vocab;

  // Progress in answers generated (the dominant cost), prefill and scoring included as one
  // answer's worth each so the ETA moves during them.
  auto pending_of = [&](const EvalSample& s) {
    std::vector<std::pair<size_t, double>> p;
    for (size_t im = 0; im < methods.size(); ++im)
      for (double r : o.ratios)
        if (!done.count(record_key(o.model_name, s.task, s.index, s.seed, s.ctx_target, methods[im].name, r)))
          p.emplace_back(im, r);
    return p;
  };
  double total_units = 0;
  for (const auto& s : samples) {
    const auto p = pending_of(s);
    if (p.empty()) continue;
    double compressed = 0;
    for (const auto& [im, r] : p) compressed += r < 1.0;
    total_units += 2 + static_cast<double>(s.questions.size()) * (1 + compressed);
  }
  ProgressBar bar("eval", "ans", o.progress_bar);
  double units = 0;
  bar.update(0, total_units);

  EvalRunStats st;
  for (const EvalSample& s : samples) {
    const auto pending = pending_of(s);
    st.records_skipped += static_cast<int64_t>(methods.size() * o.ratios.size() - pending.size());
    if (pending.empty()) continue;
    ++st.samples_run;
    ContextOptions co;
    co.task = s.prompt == "gsm" ? "gsm" : "qa";
    co.retain_full = true;
    if (o.score_chunk > 0) co.scoring.chunk = o.score_chunk;
    KvzipContext ctx(model, pool, co);
    auto t0 = clock_type::now();
    ctx.prefill(s.context);
    const double prefill_s = secs_since(t0);
    const size_t kv_full = ctx.kv_bytes();
    bar.update(units += 1, total_units);

    GenerateParams gp;
    gp.n_predict = s.max_new_tokens;
    t0 = clock_type::now();
    std::vector<FullAnswer> full(s.questions.size());
    for (size_t q = 0; q < s.questions.size(); ++q) {
      const QueryResult r = ctx.query(query_text(s, q), gp, false);
      full[q].text = r.answer;
      full[q].targets = r.answer_ids;
      if (r.end_id >= 0) full[q].targets.push_back(r.end_id);
      if (o.fidelity) full[q].logprobs = ctx.answer_logprobs(query_text(s, q), full[q].targets);
      bar.update(units += 1, total_units);
    }
    const double full_s = secs_since(t0);
    std::vector<std::optional<double>> full_scores(s.questions.size());
    std::vector<std::string> needles;  // repoqa: every asked function of the sample
    for (size_t q = 0; q < s.questions.size(); ++q)
      if (s.metrics[q] == "repoqa") needles.push_back(s.answers[q]);
    for (size_t q = 0; q < s.questions.size(); ++q)
      full_scores[q] = score_answer(s.metrics[q], full[q].text, s.answers[q], needles);

    // One scoring pass per scorer that a pending compressed ratio needs.
    std::map<std::string, HeadScores> scores;
    std::map<std::string, double> score_s;
    for (const auto& [im, r] : pending) {
      const EvalMethod& m = methods[im];
      if (r >= 1.0 || scores.count(m.scorer)) continue;
      t0 = clock_type::now();
      scores[m.scorer] = m.score(ctx, {});
      score_s[m.scorer] = secs_since(t0);
    }
    bar.update(units += 1, total_units);

    for (const auto& [im, ratio] : pending) {
      const EvalMethod& m = methods[im];
      json rec = {{"model", o.model_name},  {"task", s.task},         {"sample", s.index},
                  {"seed", s.seed},         {"ctx_target", s.ctx_target}, {"info", s.info},
                  {"n_ctx", ctx.n_ctx()},   {"n_sys", ctx.n_sys()},   {"method", m.name},
                  {"ratio", ratio},         {"kv_bytes_full", kv_full}};
      t0 = clock_type::now();
      std::vector<std::optional<double>> qs(s.questions.size());
      Fidelity fid;
      json questions = json::array();
      if (ratio >= 1.0) {  // the reference fills ratio 1.0 from the full-cache answers
        rec["r_true"] = 1.0;
        rec["kv_bytes"] = kv_full;
        for (size_t q = 0; q < s.questions.size(); ++q) {
          qs[q] = full_scores[q];
          fid.n_tokens += static_cast<int64_t>(full[q].targets.size());
          questions.push_back({{"q", s.questions[q]}, {"ref", s.answers[q]}, {"metric", s.metrics[q]},
                               {"pred", full[q].text}, {"full", full[q].text},
                               {"score", qs[q] ? json(*qs[q]) : json(nullptr)}, {"same_as_full", true}});
        }
      } else {
        const PruneReport pr = m.prune(ctx, scores.at(m.scorer), ratio);
        rec["r_true"] = pr.ratio_true;
        rec["kv_bytes"] = pr.kv_bytes_after;
        for (size_t q = 0; q < s.questions.size(); ++q) {
          const QueryResult r = ctx.query(query_text(s, q), gp, false);
          qs[q] = score_answer(s.metrics[q], r.answer, s.answers[q], needles);
          json jq = {{"q", s.questions[q]}, {"ref", s.answers[q]}, {"metric", s.metrics[q]},
                     {"pred", r.answer},    {"full", full[q].text},
                     {"score", qs[q] ? json(*qs[q]) : json(nullptr)}, {"same_as_full", r.answer == full[q].text}};
          if (o.fidelity && !full[q].targets.empty()) {
            const Fidelity f = compare_logprobs(full[q].logprobs, ctx.answer_logprobs(query_text(s, q), full[q].targets),
                                                full[q].targets, n_vocab);
            fid.add(f);
            jq["fidelity"] = fidelity_json(f);
          }
          questions.push_back(std::move(jq));
          bar.update(units += 1, total_units);
        }
      }
      rec["score"] = 100.0 * mean_present(qs);
      rec["fidelity"] = fidelity_json(fid);
      rec["questions"] = std::move(questions);
      rec["time_s"] = {{"prefill", prefill_s},
                       {"full_answers", full_s},
                       {"scoring", score_s.count(m.scorer) ? score_s[m.scorer] : 0.0},
                       {"answers", secs_since(t0)}};
      out.write(rec);
      ++st.records_written;
      if (o.log_records) {
        bar.clear();
        fmt::print(stderr, "[eval] {}#{} ({} tok) {}@{:.2f}: kept {:.3f}, score {:5.1f}, KL {:.4f}, flips {:.3f}\n",
                   s.task, s.index, ctx.n_ctx(), m.name, ratio, rec["r_true"].get<double>(), rec["score"].get<double>(),
                   fid.mean_kl(), fid.flip_rate());
      }
    }
  }
  bar.finish();
  return st;
}

}  // namespace kvz

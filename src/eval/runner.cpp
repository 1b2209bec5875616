#include "eval/runner.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "io/json_file.h"
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

// Adds each (layer, KV head)'s kept fraction of the context pairs to sum ([n_layer * n_head_kv],
// sized on first use), from the rows the cache holds.
void add_head_kept(const KvzipContext& ctx, std::vector<double>& sum) {
  const std::vector<uint8_t> km = ctx.kept_mask();
  const int64_t n = ctx.n_ctx();
  if (n == 0) return;
  const size_t heads = km.size() / static_cast<size_t>(n);
  sum.resize(heads, 0.0);
  for (size_t h = 0; h < heads; ++h) {
    int64_t k = 0;
    for (int64_t t = 0; t < n; ++t) k += km[h * n + t];
    sum[h] += static_cast<double>(k) / static_cast<double>(n);
  }
}

struct Variant {
  EvalMethod m;
  EvalMode mode;
  std::string label;
};

// Why sample s (its context tokenized as ids) cannot run in ctx's window, or "" when it fits:
// the context itself, each pending variant's scoring pass (KVzip's repeat pass at its smallest
// chunk), and the longest question with the sample's answer length after the context. The
// same rule as the CLI's check before a prefill, so nothing is prefilled only to fail later.
std::string sample_too_long(const KvzipContext& ctx, const EvalSample& s, const std::vector<int32_t>& ids,
                            const std::vector<Variant>& variants,
                            const std::vector<std::pair<size_t, double>>& pending) {
  const int64_t n = static_cast<int64_t>(ids.size()), n_sys = ctx.n_sys(), limit = ctx.n_ctx_max();
  std::vector<int64_t> passes;  // one per scorer the pending variants run
  std::vector<std::string> names;
  std::set<std::string> checked;
  for (const auto& [iv, r] : pending) {
    const Variant& v = variants[iv];
    if (n == 0 || r >= 1.0 || !v.m.positions || !checked.insert(v.m.scorer).second) continue;
    passes.push_back(v.m.positions(ctx, n));
    names.push_back(v.m.name);
  }
  int64_t answer = 0;
  for (size_t q = 0; q < s.questions.size(); ++q)
    answer = std::max<int64_t>(answer, static_cast<int64_t>(ctx.question_ids(query_text(s, q)).size()));
  answer += s.max_new_tokens;
  const WindowFit f = check_window(n_sys, n, limit, passes, answer);
  const std::string head = fmt::format("its context has {} tokens (+{} system prompt)", n, n_sys);
  switch (f.fails) {
    case WindowFit::Fails::nothing:
      return "";
    case WindowFit::Fails::no_tokens:
      return "the context has no tokens";
    case WindowFit::Fails::context:
      return fmt::format("{}, more than the window of {} tokens", head, limit);
    case WindowFit::Fails::scoring:
      return fmt::format("{}; {} scoring needs {} positions, more than the window of {} tokens", head, names[f.pass],
                         f.need, limit);
    case WindowFit::Fails::answers:
      break;
  }
  return fmt::format("{}; answering needs {} more positions (the longest question and {} answer tokens), more than "
                     "the window of {} tokens",
                     head, answer, s.max_new_tokens, limit);
}

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
      const JsonReader j = JsonReader::parse(line, path);
      keys.insert(record_key(j.object().get_str("model"), j.get_str("task"),
                             static_cast<int>(j.get_int("sample", 0, std::numeric_limits<int>::max())),
                             j.at("seed").u64(), j.get_int("ctx_target", 0, std::numeric_limits<int64_t>::max()),
                             j.get_str("method"), j.get_number("ratio")));
    } catch (const Error&) {
      if (n_bad) ++*n_bad;
    }
  }
  return keys;
}

const char* eval_mode_name(EvalMode m) {
  switch (m) {
    case EvalMode::Agnostic: return "agnostic";
    case EvalMode::Aware: return "aware";
    case EvalMode::Reuse: return "reuse";
  }
  return "?";
}

EvalMode parse_eval_mode(const std::string& s) {
  for (EvalMode m : {EvalMode::Agnostic, EvalMode::Aware, EvalMode::Reuse})
    if (s == eval_mode_name(m)) return m;
  fail("unknown eval mode '{}' (known: agnostic, aware, reuse)", s);
}

std::string eval_method_label(const EvalMethod& m, EvalMode mode) {
  if (mode == EvalMode::Agnostic || !m.uses_question) return m.name;
  return m.name + "/" + eval_mode_name(mode);
}

EvalRunStats run_eval(const Model& model, ThreadPool& pool, const std::vector<EvalSample>& samples,
                      const EvalOptions& o) {
  if (o.methods.empty()) fail("eval: no methods");
  if (o.ratios.empty()) fail("eval: no ratios");
  if (o.modes.empty()) fail("eval: no modes");
  for (double r : o.ratios)
    if (!(r > 0 && r <= 1)) fail("eval: ratio {} is outside (0, 1]", r);
  // Every method in every mode, under its label; a method that ignores the question is
  // the same in every mode and appears once, agnostic.
  std::vector<Variant> variants;
  for (const auto& n : o.methods) {
    const EvalMethod m = resolve_method(n, o.method_env);
    for (EvalMode mode : o.modes) {
      const EvalMode eff = m.uses_question ? mode : EvalMode::Agnostic;
      const std::string label = eval_method_label(m, eff);
      bool seen = false;
      for (const auto& v : variants) seen = seen || v.label == label;
      if (!seen) variants.push_back({m, eff, label});
    }
  }

  const std::set<std::string> done = done_record_keys(o.out_path);
  JsonlAppender out(o.out_path);
  const int n_vocab = model.hp().n_vocab;

  // The ratios a variant runs at: all of the sweep's, except that a ratio-free method
  // (a threshold rule) runs once, under the sweep's first compressed ratio as its nominal
  // ratio (its record's r_true says what it kept), plus 1.0 (the full reference) if asked.
  std::vector<std::vector<double>> variant_ratios(variants.size());
  size_t n_slots = 0;  // (variant, ratio) records per sample
  for (size_t iv = 0; iv < variants.size(); ++iv) {
    bool compressed_taken = false;
    for (double r : o.ratios) {
      if (variants[iv].m.ratio_free && r < 1.0) {
        if (compressed_taken) continue;
        compressed_taken = true;
      }
      variant_ratios[iv].push_back(r);
    }
    n_slots += variant_ratios[iv].size();
  }
  // Pending (variant, ratio) pairs of a sample, variant-major.
  auto pending_of = [&](const EvalSample& s) {
    std::vector<std::pair<size_t, double>> p;
    for (size_t iv = 0; iv < variants.size(); ++iv)
      for (double r : variant_ratios[iv])
        if (!done.count(record_key(o.model_name, s.task, s.index, s.seed, s.ctx_target, variants[iv].label, r)))
          p.emplace_back(iv, r);
    return p;
  };
  // Progress in answers generated (the dominant cost), prefill and scoring included as one
  // answer's worth each so the ETA moves during them.
  double total_units = 0;
  for (const auto& s : samples) {
    const auto p = pending_of(s);
    if (p.empty()) continue;
    double compressed = 0;
    for (const auto& [iv, r] : p) compressed += r < 1.0;
    total_units += 2 + static_cast<double>(s.questions.size()) * (1 + compressed);
  }
  ProgressBar bar("eval", "ans", o.progress);
  double units = 0;
  bar.update(0, total_units);

  EvalRunStats st;
  for (const EvalSample& s : samples) {
    const auto pending = pending_of(s);
    st.records_skipped += static_cast<int64_t>(n_slots - pending.size());
    if (pending.empty()) continue;
    ContextOptions co;
    co.task = s.prompt == "gsm" ? "gsm" : "qa";
    co.retain_full = true;
    if (o.score_chunk > 0) co.scoring.chunk = o.score_chunk;
    KvzipContext ctx(model, pool, co);
    const std::vector<int32_t> ids = model.tokenizer().encode(s.context, false, /*parse_special=*/false);
    if (const std::string why = sample_too_long(ctx, s, ids, variants, pending); !why.empty()) {
      fmt::print(stderr, "[eval] {}#{} skipped: {}\n", s.task, s.index, why);
      ++st.samples_too_long;
      double compressed = 0;
      for (const auto& [iv, r] : pending) compressed += r < 1.0;
      bar.update(units += 2 + static_cast<double>(s.questions.size()) * (1 + compressed), total_units);
      continue;
    }
    ++st.samples_run;
    auto t0 = clock_type::now();
    ctx.prefill_ids(ids);
    const double prefill_s = secs_since(t0);
    const size_t kv_full = ctx.kv_bytes();
    bar.update(units += 1, total_units);

    const size_t n_q = s.questions.size();
    GenerateParams gp;
    gp.n_predict = s.max_new_tokens;
    t0 = clock_type::now();
    std::vector<FullAnswer> full(n_q);
    for (size_t q = 0; q < n_q; ++q) {
      const QueryResult r = ctx.query(query_text(s, q), gp, false);
      full[q].text = r.answer;
      full[q].targets = r.answer_ids;
      if (r.end_id >= 0) full[q].targets.push_back(r.end_id);
      if (o.fidelity) full[q].logprobs = ctx.answer_logprobs(query_text(s, q), full[q].targets);
      bar.update(units += 1, total_units);
    }
    const double full_s = secs_since(t0);
    std::vector<std::optional<double>> full_scores(n_q);
    std::vector<std::string> needles;  // repoqa: every asked function of the sample
    for (size_t q = 0; q < n_q; ++q)
      if (s.metrics[q] == "repoqa") needles.push_back(s.answers[q]);
    for (size_t q = 0; q < n_q; ++q) full_scores[q] = score_answer(s.metrics[q], full[q].text, s.answers[q], needles);

    // Scores per (scorer, question seen while scoring; -1: none), computed once per sample
    // and shared by the methods with the same scorer (the three KVzip levels).
    std::map<std::pair<std::string, int>, HeadScores> scores;
    std::map<std::pair<std::string, int>, double> score_s;
    auto scores_for = [&](const EvalMethod& m, int q_seen) -> const HeadScores& {
      const auto key = std::make_pair(m.scorer, q_seen);
      if (!scores.count(key)) {
        const auto ts = clock_type::now();
        scores[key] = m.score(ctx, q_seen < 0 ? std::string() : query_text(s, static_cast<size_t>(q_seen)), {});
        score_s[key] = secs_since(ts);
      }
      return scores.at(key);
    };

    // One record per pending (variant, ratio); a variant's compressed ratios are filled
    // together because in aware mode each question brings its own scores.
    struct Acc {
      std::vector<std::optional<double>> qs;
      std::vector<json> questions;
      std::vector<Fidelity> fid;
      double r_true_sum = 0, kv_bytes_sum = 0, scoring_s = 0, answers_s = 0;
      int n_prunes = 0;
      std::vector<double> head_kept;  // [n_layer * n_head_kv]: kept fraction, summed over prunes
    };
    for (size_t ip = 0; ip < pending.size();) {
      const size_t iv = pending[ip].first;
      const Variant& v = variants[iv];
      std::vector<double> ratios;
      for (; ip < pending.size() && pending[ip].first == iv; ++ip) ratios.push_back(pending[ip].second);
      std::map<double, Acc> acc;
      for (double r : ratios) {
        acc[r].qs.resize(n_q);
        acc[r].questions.resize(n_q);
        acc[r].fid.resize(n_q);
      }
      // Groups of (question seen while scoring, questions answered from that cache).
      std::vector<std::pair<int, std::vector<size_t>>> groups;
      std::vector<size_t> all(n_q);
      for (size_t q = 0; q < n_q; ++q) all[q] = q;
      if (v.mode == EvalMode::Agnostic) groups.push_back({-1, all});
      if (v.mode == EvalMode::Reuse) groups.push_back({0, all});
      if (v.mode == EvalMode::Aware)
        for (size_t q = 0; q < n_q; ++q) groups.push_back({static_cast<int>(q), {q}});

      for (double ratio : ratios) {
        if (ratio < 1.0) continue;
        Acc& a = acc[ratio];  // the reference fills ratio 1.0 from the full-cache answers
        a.r_true_sum = 1.0;
        a.kv_bytes_sum = static_cast<double>(kv_full);
        a.n_prunes = 1;
        for (size_t q = 0; q < n_q; ++q) {
          a.qs[q] = full_scores[q];
          a.fid[q].n_tokens = static_cast<int64_t>(full[q].targets.size());
          a.questions[q] = {{"q", s.questions[q]}, {"ref", s.answers[q]}, {"metric", s.metrics[q]},
                            {"pred", full[q].text}, {"full", full[q].text},
                            {"score", a.qs[q] ? json(*a.qs[q]) : json(nullptr)}, {"same_as_full", true}};
        }
      }
      for (const auto& [q_seen, answered] : groups) {
        bool any_compressed = false;
        for (double r : ratios) any_compressed = any_compressed || r < 1.0;
        if (!any_compressed) break;
        const bool fresh = !scores.count({v.m.scorer, q_seen});
        const HeadScores& hs = scores_for(v.m, q_seen);
        const double sc_s = fresh ? score_s.at({v.m.scorer, q_seen}) : 0.0;
        for (double ratio : ratios) {
          if (ratio >= 1.0) continue;
          Acc& a = acc[ratio];
          a.scoring_s += sc_s;
          const auto ta = clock_type::now();
          const PruneReport pr = v.m.prune(ctx, hs, ratio);
          add_head_kept(ctx, a.head_kept);
          a.r_true_sum += pr.ratio_true;
          a.kv_bytes_sum += static_cast<double>(pr.kv_bytes_after);
          ++a.n_prunes;
          for (size_t q : answered) {
            const QueryResult r = ctx.query(query_text(s, q), gp, false);
            a.qs[q] = score_answer(s.metrics[q], r.answer, s.answers[q], needles);
            json jq = {{"q", s.questions[q]}, {"ref", s.answers[q]}, {"metric", s.metrics[q]},
                       {"pred", r.answer},    {"full", full[q].text},
                       {"score", a.qs[q] ? json(*a.qs[q]) : json(nullptr)}, {"same_as_full", r.answer == full[q].text}};
            if (q_seen >= 0) jq["scored_with_question"] = q_seen;
            if (o.fidelity && !full[q].targets.empty()) {
              a.fid[q] = compare_logprobs(full[q].logprobs, ctx.answer_logprobs(query_text(s, q), full[q].targets),
                                          full[q].targets, n_vocab);
              jq["fidelity"] = fidelity_json(a.fid[q]);
            }
            a.questions[q] = std::move(jq);
            bar.update(units += 1, total_units);
          }
          a.answers_s += secs_since(ta);
        }
      }

      for (double ratio : ratios) {
        Acc& a = acc[ratio];
        Fidelity fid;
        for (const auto& f : a.fid) fid.add(f);
        json rec = {{"model", o.model_name},  {"task", s.task},         {"sample", s.index},
                    {"seed", s.seed},         {"ctx_target", s.ctx_target}, {"info", s.info},
                    {"n_ctx", ctx.n_ctx()},   {"n_sys", ctx.n_sys()},   {"method", v.label},
                    {"base_method", v.m.name}, {"mode", eval_mode_name(v.mode)},
                    {"ratio", ratio},         {"kv_bytes_full", kv_full}};
        // aware: one prune per question; the realised ratio and bytes are their means
        const double r_true = a.r_true_sum / std::max(1, a.n_prunes), score = 100.0 * mean_present(a.qs);
        rec["r_true"] = r_true;
        rec["kv_bytes"] = static_cast<size_t>(a.kv_bytes_sum / std::max(1, a.n_prunes) + 0.5);
        rec["n_prunes"] = ratio < 1.0 ? a.n_prunes : 0;
        rec["score"] = score;
        if (!a.head_kept.empty()) {
          // The layer x KV-head picture of `kvzip report`: each head's kept fraction of the context.
          const int n_h = model.hp().n_head_kv;
          json hk = json::array();
          for (size_t l = 0; l * n_h < a.head_kept.size(); ++l) {
            json row = json::array();
            for (int h = 0; h < n_h; ++h)
              row.push_back(std::round(1e4 * a.head_kept[l * n_h + h] / std::max(1, a.n_prunes)) / 1e4);
            hk.push_back(std::move(row));
          }
          rec["head_kept"] = std::move(hk);
        }
        rec["fidelity"] = fidelity_json(fid);
        rec["questions"] = a.questions;
        rec["time_s"] = {{"prefill", prefill_s}, {"full_answers", full_s}, {"scoring", a.scoring_s}, {"answers", a.answers_s}};
        out.write(rec);
        ++st.records_written;
        if (o.log_records) {
          bar.clear();
          fmt::print(stderr, "[eval] {}#{} ({} tok) {}@{:.2f}: kept {:.3f}, score {:5.1f}, KL {:.4f}, flips {:.3f}\n",
                     s.task, s.index, ctx.n_ctx(), v.label, ratio, r_true, score, fid.mean_kl(), fid.flip_rate());
        }
      }
    }
  }
  bar.finish();
  return st;
}

}  // namespace kvz

// The eval driver on the tiny synthetic model: records per (sample, method, ratio), the
// full-cache reuse at ratio 1.0, resume after an interrupted write, and the teacher-forced
// distributions that the fidelity metrics use.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "eval/fidelity.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "kv/kvzip_context.h"
#include "kvzap_random.h"
#include "synthetic_model.h"

using namespace kvz;
using EvalRunnerTest = test::SyntheticModelTest;

namespace {

std::vector<EvalSample> tiny_samples() {
  std::vector<EvalSample> v;
  for (int i = 0; i < 2; ++i) {
    EvalSample s;
    s.task = "tiny";
    s.index = i;
    s.seed = 3;
    s.context = i == 0 ? "ab ab cd ef gh ij kl mn op ab qr st uv wx yz ab ab 12 34 56 78 90 ab cd"
                       : "the quick brown fox jumps over the lazy dog, again and again, ab ab ab";
    s.questions = {"what?", "where?"};
    s.answers = {"ab", "zz"};
    s.metrics = {"inclusion", "inclusion"};
    s.max_new_tokens = 6;
    v.push_back(s);
  }
  return v;
}

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> v;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) v.push_back(std::move(j));
  }
  return v;
}

}  // namespace

TEST_F(EvalRunnerTest, TeacherForcedRowsPredictTheGreedyAnswerAndRestoreTheCache) {
  ThreadPool pool(1);
  ContextOptions co;
  co.scoring.chunk = 32;
  co.retain_full = true;
  KvzipContext c(*model_, pool, co);
  c.prefill("ab cd ef gh ij kl mn op qr st uv wx yz ab ab 12 34 56");
  GenerateParams gp;
  gp.n_predict = 6;
  gp.stop_at_eog = false;
  const QueryResult r = c.query("Q: what?", gp, false);
  ASSERT_EQ(r.answer_ids.size(), 6u);
  const auto lens = c.session().cache().lengths();
  const int64_t pos = c.session().n_pos();
  const std::vector<float> lp = c.answer_logprobs("Q: what?", r.answer_ids);
  EXPECT_EQ(c.session().cache().lengths(), lens);
  EXPECT_EQ(c.session().n_pos(), pos);
  const size_t V = static_cast<size_t>(model_->hp().n_vocab);
  ASSERT_EQ(lp.size(), r.answer_ids.size() * V);
  for (size_t i = 0; i < r.answer_ids.size(); ++i) {
    const float* row = lp.data() + i * V;
    EXPECT_EQ(std::max_element(row, row + V) - row, r.answer_ids[i]) << "greedy = argmax of the teacher-forced row " << i;
    double sum = 0;
    for (size_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]));
    EXPECT_NEAR(sum, 1.0, 1e-4);
  }
  // the same rows again from the restored cache
  EXPECT_EQ(c.answer_logprobs("Q: what?", r.answer_ids), lp);
}

TEST_F(EvalRunnerTest, RecordsResumeAndReport) {
  ThreadPool pool(1);
  const std::string out = ::testing::TempDir() + "/kvz_eval_runner.jsonl";
  std::remove(out.c_str());
  EvalOptions o;
  o.model_name = "synthetic";
  o.methods = {"pair", "head", "pair-uniform"};
  o.ratios = {1.0, 0.5};
  o.out_path = out;
  o.score_chunk = 32;
  o.log_records = false;
  const auto samples = tiny_samples();
  EvalRunStats st = run_eval(*model_, pool, samples, o);
  EXPECT_EQ(st.records_written, 2 * 3 * 2);
  EXPECT_EQ(st.samples_run, 2);
  auto recs = read_lines(out);
  ASSERT_EQ(recs.size(), 12u);
  for (const auto& r : recs) {
    const double ratio = r["ratio"];
    EXPECT_EQ(r["questions"].size(), 2u);
    if (ratio == 1.0) {
      EXPECT_EQ(r["r_true"], 1.0);
      EXPECT_EQ(r["fidelity"]["sum_kl"], 0.0);
      for (const auto& q : r["questions"]) EXPECT_EQ(q["pred"], q["full"]);
    } else {
      EXPECT_NEAR(r["r_true"].get<double>(), 0.5, 0.05) << r["method"];
      EXPECT_LT(r["kv_bytes"].get<double>(), r["kv_bytes_full"].get<double>());
      EXPECT_GT(r["fidelity"]["n_tokens"].get<int>(), 0);
      EXPECT_GE(r["fidelity"]["sum_kl"].get<double>(), 0.0);
    }
  }
  // Everything done: a second run writes nothing.
  st = run_eval(*model_, pool, samples, o);
  EXPECT_EQ(st.records_written, 0);
  EXPECT_EQ(st.records_skipped, 12);
  EXPECT_EQ(st.samples_run, 0);

  // Interrupted mid-line: drop the last record and half of the one before it.
  {
    std::string all;
    {
      std::ifstream in(out);
      all.assign(std::istreambuf_iterator<char>(in), {});
    }
    all.pop_back();
    all.resize(all.rfind('\n'));      // last record gone
    all.resize(all.size() - 40);      // the one before it cut mid-line
    std::ofstream(out, std::ios::trunc) << all;
  }
  int bad = 0;
  EXPECT_EQ(done_record_keys(out, &bad).size(), 10u);
  EXPECT_EQ(bad, 1);
  st = run_eval(*model_, pool, samples, o);
  EXPECT_EQ(st.records_written, 2);
  EXPECT_EQ(st.samples_run, 1);
  EXPECT_EQ(done_record_keys(out, &bad).size(), 12u);
  EXPECT_EQ(bad, 1) << "the cut line stays, on its own line";

  // Deterministic: the resumed records equal the first run's.
  const auto again = read_lines(out);
  EXPECT_EQ(again.back()["questions"], recs.back()["questions"]);

  const auto rows = aggregate_results(out);
  ASSERT_EQ(rows.size(), 3u * 2u);  // tiny x {pair, head, pair-uniform} x {1.0, 0.5}, in run order
  EXPECT_EQ(rows[0].method, "pair");
  EXPECT_EQ(rows[2].method, "head");
  EXPECT_EQ(rows[0].ratio, 1.0);
  EXPECT_EQ(rows[0].n_samples, 2);
  EXPECT_EQ(rows[0].r_true, 1.0);
  // The layer x KV-head picture: every pruned record carries each head's kept fraction; at the
  // pair levels (every layer evictable here) their mean is the realised ratio.
  for (const auto& rec : again) {
    if (rec["ratio"].get<double>() >= 1.0) {
      EXPECT_FALSE(rec.contains("head_kept"));
      continue;
    }
    ASSERT_TRUE(rec.contains("head_kept"));
    const auto& hk = rec["head_kept"];
    ASSERT_EQ(hk.size(), static_cast<size_t>(model_->hp().n_layer));
    double sum = 0;
    for (const auto& row : hk) {
      ASSERT_EQ(row.size(), static_cast<size_t>(model_->hp().n_head_kv));
      for (const auto& x : row) sum += x.get<double>();
    }
    EXPECT_NEAR(sum / (hk.size() * hk[0].size()), rec["r_true"].get<double>(), 1e-3) << rec["method"];
  }
  EXPECT_TRUE(rows[1].head_kept.size() == static_cast<size_t>(model_->hp().n_layer) && rows[0].head_kept.empty());
  const std::string hk_csv = out + ".heads.csv";
  ASSERT_TRUE(write_head_kept_csv(rows, hk_csv));
  {
    std::ifstream in(hk_csv);
    std::string header;
    std::getline(in, header);
    EXPECT_EQ(header, "model,task,method,ratio,layer,head,kept");
  }
  std::remove(hk_csv.c_str());
  const std::string md = report_markdown(rows, "x.jsonl");
  EXPECT_NE(md.find("### tiny"), std::string::npos);
  EXPECT_NE(md.find("| pair-uniform |"), std::string::npos);
  std::remove(out.c_str());
}

TEST_F(EvalRunnerTest, UnknownMethodAndBadRatioThrow) {
  ThreadPool pool(1);
  EvalOptions o;
  o.methods = {"not-a-method"};
  o.ratios = {0.5};
  o.out_path = ::testing::TempDir() + "/kvz_eval_never.jsonl";
  EXPECT_THROW(run_eval(*model_, pool, tiny_samples(), o), Error);
  o.methods = {"pair"};
  o.ratios = {1.5};
  EXPECT_THROW(run_eval(*model_, pool, tiny_samples(), o), Error);
}

// The other presses run through the same driver under their registry names: one scoring
// per sample, the realised ratio per method, and PyramidKV's per-layer budgets applied.
TEST_F(EvalRunnerTest, PressesRunUnderTheirRegistryNames) {
  ThreadPool pool(1);
  const std::string out = ::testing::TempDir() + "/kvz_eval_presses.jsonl";
  std::remove(out.c_str());
  EvalOptions o;
  o.model_name = "synthetic";
  o.methods = {"snapkv", "streaming_llm", "knorm", "pyramidkv"};
  o.ratios = {0.5};
  o.out_path = out;
  o.score_chunk = 32;
  o.log_records = false;
  const EvalRunStats st = run_eval(*model_, pool, tiny_samples(), o);
  EXPECT_EQ(st.records_written, 2 * 4);
  const auto recs = read_lines(out);
  ASSERT_EQ(recs.size(), 8u);
  for (const auto& r : recs) {
    EXPECT_NEAR(r["r_true"].get<double>(), 0.5, 0.06) << r["method"];
    EXPECT_LT(r["kv_bytes"].get<double>(), r["kv_bytes_full"].get<double>()) << r["method"];
  }
  std::remove(out.c_str());
}

// Query-aware modes: the records of a press that uses the question must be the ones of a
// cache scored with the right question. The expected per-question KL is recomputed here
// from the method's own score/prune steps: aware = each question's own scores, reuse =
// the first question's scores for every question, agnostic = no question. The test first
// checks that the questions really lead to different kept sets, so it fails if the runner
// ignored the mode.
TEST_F(EvalRunnerTest, QueryAwareAndReuseModesScoreWithTheRightQuestion) {
  ThreadPool pool(1);
  const std::string out = ::testing::TempDir() + "/kvz_eval_modes.jsonl";
  std::remove(out.c_str());
  EvalSample s = tiny_samples()[0];
  s.questions = {"what comes after ab?", "list every number 12 34 56 78 90 please"};
  const std::vector<EvalSample> samples = {s};
  const double ratio = 0.4;

  // Expected sum_kl per question, per question seen while scoring (-1: none).
  const EvalMethod m = resolve_method("snapkv");
  ASSERT_TRUE(m.uses_question);
  ContextOptions co;
  co.retain_full = true;
  co.scoring.chunk = 32;
  KvzipContext c(*model_, pool, co);
  c.prefill(s.context);
  GenerateParams gp;
  gp.n_predict = s.max_new_tokens;
  std::vector<std::vector<int32_t>> targets(2);
  std::vector<std::vector<float>> full_lp(2);
  for (size_t q = 0; q < 2; ++q) {
    const QueryResult r = c.query(query_text(s, q), gp, false);
    targets[q] = r.answer_ids;
    if (r.end_id >= 0) targets[q].push_back(r.end_id);
    full_lp[q] = c.answer_logprobs(query_text(s, q), targets[q]);
  }
  std::map<int, std::vector<double>> kl;  // question seen -> sum_kl per answered question
  for (int seen : {-1, 0, 1}) {
    const HeadScores hs = m.score(c, seen < 0 ? std::string() : query_text(s, static_cast<size_t>(seen)), {});
    m.prune(c, hs, ratio);
    for (size_t q = 0; q < 2; ++q)
      kl[seen].push_back(compare_logprobs(full_lp[q], c.answer_logprobs(query_text(s, q), targets[q]), targets[q],
                                          model_->hp().n_vocab).sum_kl);
  }
  // Precondition: the two questions give different caches, distinguishable by the KL of
  // the second question's answer; otherwise this test could not tell the modes apart.
  ASSERT_NE(kl[0][1], kl[1][1]) << "question 0's and question 1's caches answer question 1 alike";
  ASSERT_NE(kl[-1][1], kl[1][1]);

  EvalOptions o;
  o.model_name = "synthetic";
  o.methods = {"snapkv", "pair"};
  o.modes = {EvalMode::Agnostic, EvalMode::Aware, EvalMode::Reuse};
  o.ratios = {1.0, ratio};
  o.out_path = out;
  o.score_chunk = 32;
  o.log_records = false;
  EvalRunStats st = run_eval(*model_, pool, samples, o);
  // snapkv in three modes, pair once (query-agnostic in every mode), two ratios each
  EXPECT_EQ(st.records_written, (3 + 1) * 2);
  const auto recs = read_lines(out);
  std::map<std::string, nlohmann::json> by;  // "label@ratio"
  for (const auto& r : recs) by[r["method"].get<std::string>() + "@" + std::to_string(r["ratio"].get<double>())] = r;
  const std::string at = "@" + std::to_string(ratio);
  ASSERT_TRUE(by.count("snapkv" + at) && by.count("snapkv/aware" + at) && by.count("snapkv/reuse" + at) &&
              by.count("pair" + at));
  EXPECT_EQ(by["snapkv" + at]["mode"], "agnostic");
  EXPECT_EQ(by["snapkv/aware" + at]["mode"], "aware");
  EXPECT_EQ(by["snapkv/reuse" + at]["mode"], "reuse");
  EXPECT_EQ(by["pair" + at]["mode"], "agnostic");
  EXPECT_EQ(by["snapkv/aware" + at]["n_prunes"], 2);
  EXPECT_EQ(by["snapkv/reuse" + at]["n_prunes"], 1);
  auto rec_kl = [&](const std::string& label, size_t q) {
    return by[label + at]["questions"][q]["fidelity"]["sum_kl"].get<double>();
  };
  for (size_t q = 0; q < 2; ++q) {
    EXPECT_DOUBLE_EQ(rec_kl("snapkv", q), kl[-1][q]) << "agnostic, question " << q;
    EXPECT_DOUBLE_EQ(rec_kl("snapkv/aware", q), kl[static_cast<int>(q)][q]) << "aware, question " << q;
    EXPECT_DOUBLE_EQ(rec_kl("snapkv/reuse", q), kl[0][q]) << "reuse, question " << q;
  }
  EXPECT_EQ(by["snapkv/aware" + at]["questions"][1]["scored_with_question"], 1);
  EXPECT_EQ(by["snapkv/reuse" + at]["questions"][1]["scored_with_question"], 0);
  // ratio 1.0 is the full cache in every mode
  for (const char* label : {"snapkv/aware", "snapkv/reuse"})
    for (size_t q = 0; q < 2; ++q)
      EXPECT_EQ(by[std::string(label) + "@" + std::to_string(1.0)]["questions"][q]["pred"],
                by[std::string(label) + "@" + std::to_string(1.0)]["questions"][q]["full"]);

  // Resume: everything is done; adding a mode runs only its records.
  st = run_eval(*model_, pool, samples, o);
  EXPECT_EQ(st.records_written, 0);
  EXPECT_EQ(st.records_skipped, 8);
  const auto rows = aggregate_results(out);
  std::set<std::string> labels;
  for (const auto& r : rows) labels.insert(r.method);
  EXPECT_EQ(labels, (std::set<std::string>{"snapkv", "snapkv/aware", "snapkv/reuse", "pair"}));
  std::remove(out.c_str());
}

TEST(EvalModes, NamesRoundTripAndUnknownThrows) {
  for (EvalMode m : {EvalMode::Agnostic, EvalMode::Aware, EvalMode::Reuse})
    EXPECT_EQ(parse_eval_mode(eval_mode_name(m)), m);
  EXPECT_THROW(parse_eval_mode("query-aware"), Error);
  EXPECT_THROW(parse_eval_mode(""), Error);
  EvalMethod m;
  m.name = "tova";
  m.uses_question = true;
  EXPECT_EQ(eval_method_label(m, EvalMode::Aware), "tova/aware");
  EXPECT_EQ(eval_method_label(m, EvalMode::Agnostic), "tova");
  m.uses_question = false;
  EXPECT_EQ(eval_method_label(m, EvalMode::Reuse), "tova");
}

// A task run at several context lengths is reported per length ("task@LEN"); a task run at
// one length keeps its plain name.
TEST(EvalReport, TasksAtSeveralLengthsAreSplit) {
  const std::string path = ::testing::TempDir() + "/kvz_report_lengths.jsonl";
  {
    std::ofstream f(path);
    auto rec = [&](const std::string& task, int64_t len, int sample, double score) {
      const nlohmann::json j = {{"model", "m"}, {"task", task}, {"sample", sample}, {"seed", 1}, {"ctx_target", len},
                                {"method", "pair"}, {"ratio", 0.5}, {"score", score}, {"r_true", 0.5},
                                {"kv_bytes", 50}, {"kv_bytes_full", 100}, {"questions", nlohmann::json::array()},
                                {"fidelity", {{"n_tokens", 0}, {"flips", 0}, {"sum_abs_dp", 0.0}, {"sum_kl", 0.0},
                                              {"max_abs_dp", 0.0}}}};
      f << j.dump() << "\n";
    };
    rec("squad", 1000, 0, 100);
    rec("squad", 1000, 1, 50);
    rec("squad", 4000, 0, 0);
    rec("kv", 2000, 0, 30);
  }
  const auto rows = aggregate_results(path);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].task, "squad@1000");
  EXPECT_EQ(rows[0].n_samples, 2);
  EXPECT_DOUBLE_EQ(rows[0].score, 75.0);
  EXPECT_EQ(rows[1].task, "squad@4000");
  EXPECT_DOUBLE_EQ(rows[1].score, 0.0);
  EXPECT_EQ(rows[2].task, "kv");
  std::remove(path.c_str());
}

// A threshold rule (kvzap@TAU) ignores the ratio, so a sweep runs it once per sample under
// the first compressed ratio (plus the free full-cache row at 1.0), not once per ratio; the
// ranked methods still run at every ratio. The report's kept-against-quality table lists it.
TEST_F(EvalRunnerTest, ThresholdMethodsRunOncePerSample) {
  const KvzapModel sur = test::random_linear_kvzap(*model_);
  const std::string dir = test::temp_path("kvz-eval-threshold");
  sur.save(dir, *model_);

  ThreadPool pool(1);
  const std::string out = ::testing::TempDir() + "/kvz_eval_threshold.jsonl";
  std::remove(out.c_str());
  EvalOptions o;
  o.model_name = "synthetic";
  o.methods = {"pair", "kvzap@0", "kvzap@1e9"};
  o.ratios = {1.0, 0.5, 0.3};
  o.out_path = out;
  o.score_chunk = 32;
  o.log_records = false;
  o.method_env.kvzap_dir = dir;
  o.method_env.kvzap_window = 4;
  EvalRunStats st = run_eval(*model_, pool, tiny_samples(), o);
  EXPECT_EQ(st.records_written, 2 * (3 + 2 + 2));  // pair x 3 ratios, each threshold x {1.0, 0.5}
  std::map<std::string, std::set<double>> ratios_of;
  for (const auto& r : read_lines(out)) {
    const std::string m = r["method"];
    ratios_of[m].insert(r["ratio"].get<double>());
    if (m == "kvzap@1e9" && r["ratio"].get<double>() < 1.0) {
      // Nothing scores 1e9: only the protected window of 4 context tokens stays.
      EXPECT_NEAR(r["r_true"].get<double>(), 4.0 / r["n_ctx"].get<double>(), 0.02);
    }
  }
  EXPECT_EQ(ratios_of["pair"], (std::set<double>{1.0, 0.5, 0.3}));
  EXPECT_EQ(ratios_of["kvzap@0"], (std::set<double>{1.0, 0.5}));
  EXPECT_EQ(ratios_of["kvzap@1e9"], (std::set<double>{1.0, 0.5}));
  st = run_eval(*model_, pool, tiny_samples(), o);
  EXPECT_EQ(st.records_written, 0);
  EXPECT_EQ(st.records_skipped, 14);

  const std::string md = report_markdown(aggregate_results(out), "x.jsonl");
  const size_t table = md.find("### Kept against quality");
  ASSERT_NE(table, std::string::npos);
  EXPECT_NE(md.find("| kvzap@1e9 | 0.50 |", table), std::string::npos);
  EXPECT_EQ(md.find("| kvzap@1e9 | 0.30 |", table), std::string::npos);
  EXPECT_NE(md.find("| pair | 0.30 |", table), std::string::npos);
  std::remove(out.c_str());
  std::filesystem::remove_all(dir);
}

// Samples that cannot run in the window are named and skipped before their prefill, by the
// rule the CLI uses: the context, the scoring pass with KVzip's repeat chunk shrunk to fit,
// the longest question and its answer. The largest context the rule admits must really run
// (the rule is not looser than the scorer); one token pair more is skipped.
TEST_F(EvalRunnerTest, SamplesThatDoNotFitTheWindowAreSkippedBeforePrefill) {
  ThreadPool pool(1);
  KvzipContext probe(*model_, pool, ContextOptions{});
  const int64_t limit = probe.n_ctx_max(), n_sys = probe.n_sys();
  auto make = [](int k, int max_new) {
    EvalSample s;
    s.task = "fit";
    s.index = k;
    s.seed = 1;
    for (int i = 0; i < k; ++i) s.context += "ab cd ";
    s.questions = {"what?"};
    s.answers = {"ab"};
    s.metrics = {"inclusion"};
    s.max_new_tokens = max_new;
    return s;
  };
  auto fits = [&](const EvalSample& s) {
    const auto n = static_cast<int64_t>(model_->tokenizer().encode(s.context, false, false).size());
    const auto q = static_cast<int64_t>(probe.question_ids(query_text(s, 0)).size());
    return probe.positions_needed(n, nullptr) <= limit && n_sys + n + q + s.max_new_tokens <= limit;
  };
  int k = 1;
  while (fits(make(k + 1, 6))) ++k;
  ASSERT_GT(k, 20);  // the window holds a real context
  const std::vector<EvalSample> samples = {make(k, 6), make(k + 1, 6), make(4 * k, 6), make(10, 600)};
  EXPECT_FALSE(fits(samples[1]));

  const std::string out = ::testing::TempDir() + "/kvz_eval_fit.jsonl";
  std::remove(out.c_str());
  EvalOptions o;
  o.model_name = "synthetic";
  o.methods = {"pair"};
  o.ratios = {0.5};
  o.out_path = out;
  o.log_records = false;
  ::testing::internal::CaptureStderr();
  const EvalRunStats st = run_eval(*model_, pool, samples, o);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(st.samples_run, 1);
  EXPECT_EQ(st.samples_too_long, 3);
  EXPECT_EQ(st.records_written, 1);
  const auto recs = read_lines(out);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["sample"].get<int>(), k);
  EXPECT_NE(err.find(fmt::format("fit#{} skipped", k + 1)), std::string::npos) << err;
  EXPECT_NE(err.find("pair scoring needs"), std::string::npos) << err;
  EXPECT_NE(err.find(fmt::format("fit#{} skipped", 4 * k)), std::string::npos) << err;
  EXPECT_NE(err.find("more than the window of " + std::to_string(limit)), std::string::npos) << err;
  EXPECT_NE(err.find("fit#10 skipped"), std::string::npos) << err;
  EXPECT_NE(err.find("600 answer tokens"), std::string::npos) << err;
  std::remove(out.c_str());
}

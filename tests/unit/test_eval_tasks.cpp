// Task generators: deterministic per seed, sized to the requested tokens, answers really
// in the context; the JSON-lines loader for user data.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "eval/jsonl.h"
#include "eval/metrics.h"
#include "eval/tasks/registry.h"

using namespace kvz;

namespace {
bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }
}  // namespace

TEST(EvalTasks, EveryTaskIsDeterministicValidAndSized) {
  for (const TaskInfo& t : task_registry()) {
    SCOPED_TRACE(t.name);
    TaskParams p;
    p.seed = 7;
    p.ctx_tokens = 600;
    for (int i = 0; i < 3; ++i) {
      const EvalSample a = make_task_sample(t, i, p);
      const EvalSample b = make_task_sample(t, i, p);
      EXPECT_EQ(a.context, b.context);
      EXPECT_EQ(a.questions, b.questions);
      EXPECT_EQ(a.answers, b.answers);
      EXPECT_EQ(a.task, t.name);
      EXPECT_EQ(a.seed, 7u);
      EXPECT_EQ(a.ctx_target, 600);
      // Sized with the approximate counter (4 bytes per token): within the target's range.
      // needle varies its length over {1/4, 1/2, 1} of the target.
      const double n = static_cast<double>(approx_tokens(a.context));
      const double lo = t.make == make_needle ? 600 / 4 : 600;
      EXPECT_GE(n, 0.85 * lo) << a.info;
      EXPECT_LE(n, 1.35 * 600 + 150) << a.info;
    }
    p.seed = 8;
    EXPECT_NE(make_task_sample(t, 0, p).context, make_task_sample(t, 0, {600, 7, {}, false}).context)
        << "another seed, another sample";
  }
}

TEST(EvalTasks, AnswersAreInTheContext) {
  TaskParams p;
  p.ctx_tokens = 800;
  for (const char* name : {"needle", "needle-multikey", "kv", "kv-easy", "prefix-suffix", "prefix-suffix-easy",
                           "squad", "squad-easy", "repoqa", "repoqa-easy"}) {
    SCOPED_TRACE(name);
    for (int i = 0; i < 5; ++i) {
      const EvalSample s = make_task_sample(find_task(name), i, p);
      for (size_t q = 0; q < s.answers.size(); ++q)
        EXPECT_TRUE(has(s.context, s.answers[q])) << s.questions[q] << " -> " << s.answers[q];
    }
  }
  // The needle sits at the requested depth: depth 0 opens the context, 100 closes it.
  const EvalSample d0 = make_task_sample(find_task("needle"), 0, p);   // depth 0
  const EvalSample d100 = make_task_sample(find_task("needle"), 4, p); // depth 100
  EXPECT_EQ(d0.context.find("The special magic number"), 0u) << d0.info;
  EXPECT_NE(d100.context.rfind("The special magic number"), std::string::npos);
  EXPECT_GT(d100.context.rfind("The special magic number"), d100.context.size() - 80) << d100.info;
}

TEST(EvalTasks, TaskSpecificShapes) {
  TaskParams p;
  p.ctx_tokens = 800;
  // vt: every variable of the chain is assigned in the context; the metric gives full marks.
  const EvalSample vt = make_task_sample(find_task("vt"), 0, p);
  for (size_t q = 0; q < vt.questions.size(); ++q) {
    size_t start = 0;
    const std::string& a = vt.answers[q];
    while (start < a.size()) {
      const size_t e = std::min(a.find(", ", start), a.size());
      EXPECT_TRUE(has(vt.context, "VAR " + a.substr(start, e - start) + " = ")) << a;
      start = e + 2;
    }
    EXPECT_EQ(*score_answer("substring_fraction", a, a), 1.0);
  }
  // gsm: the reference answer ends with "#### N" and states "The answer is N."
  const EvalSample g = make_task_sample(find_task("gsm"), 1, p);
  EXPECT_EQ(g.prompt, "gsm");
  EXPECT_EQ(query_text(g, 0).rfind("Reason and answer the question. You must say the answer in the last sentence "
                                   "beginning with 'The answer is'. Q: In story ",
                                   0),
            0u)
      << "the reference's reasoning prompt (kvzip-spec 6.2)";
  EXPECT_EQ(query_text(vt, 0), "Q: " + vt.questions[0]);
  for (const auto& a : g.answers) {
    const std::string n = a.substr(a.rfind("#### ") + 5);
    EXPECT_TRUE(has(a, "The answer is " + n + ".")) << a;
    EXPECT_EQ(*score_answer("gsm", a.substr(0, a.find("\n####")), a), 1.0);
  }
  // many-shot: answers are option lines; the context holds examples of every label.
  const EvalSample m = make_task_sample(find_task("many-shot"), 0, p);
  for (const auto& a : m.answers) EXPECT_TRUE(has(m.context, "Label: " + a)) << a;
  // repoqa: the asked functions are whole functions of the module and pass their own metric.
  const EvalSample r = make_task_sample(find_task("repoqa"), 0, p);
  for (const auto& a : r.answers) EXPECT_EQ(*score_answer("repoqa", "```python\n" + a + "```", a, r.answers), 1.0);
  // summary-needles: a summary question scored with ROUGE-L plus needle questions.
  const EvalSample sn = make_task_sample(find_task("summary-needles"), 0, p);
  EXPECT_EQ(sn.metrics[0], "rouge_l");
  EXPECT_GE(sn.questions.size(), 2u);
  EXPECT_NEAR(*score_answer("rouge_l", sn.answers[0], sn.answers[0]), 1.0, 1e-6);
}

TEST(EvalTasks, TokenCounterDrivesTheLength) {
  // A counter that says every byte is a token: contexts come out ~4x shorter in bytes.
  TaskParams p;
  p.ctx_tokens = 400;
  const EvalSample approx = make_task_sample(find_task("kv"), 0, p);
  p.count = [](const std::string& s) { return static_cast<int64_t>(s.size()); };
  const EvalSample bytes = make_task_sample(find_task("kv"), 0, p);
  EXPECT_GE(static_cast<int64_t>(bytes.context.size()), 400);
  EXPECT_LE(static_cast<int64_t>(bytes.context.size()), 500);
  EXPECT_GT(approx.context.size(), 3 * bytes.context.size());
  EXPECT_THROW(find_task("no-such-task"), Error);
}

TEST(EvalJsonl, LoadsTheReferenceShapeAndRejectsBadLines) {
  const std::string path = ::testing::TempDir() + "/kvz_eval_data.jsonl";
  {
    std::ofstream o(path);
    o << R"({"context": "Paris is in France.", "questions": ["Where is Paris?"], "answers": ["France"]})" << "\n\n";
    o << R"({"context": "c", "question": "q?", "answers": [["x", "y"]], "metric": "substring_fraction", )"
      << R"("max_new_tokens": 16, "prompt": "gsm"})" << "\n";
  }
  const auto v = load_jsonl_samples(path, "mydata");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].task, "mydata");
  EXPECT_EQ(v[0].metrics, std::vector<std::string>{"inclusion"});
  EXPECT_EQ(v[1].index, 1);
  EXPECT_EQ(v[1].questions, std::vector<std::string>{"q?"});
  EXPECT_EQ(v[1].answers, std::vector<std::string>{"x, y"}) << "a list answer is joined with \", \"";
  EXPECT_EQ(v[1].max_new_tokens, 16);
  EXPECT_EQ(v[1].prompt, "gsm");
  EXPECT_THROW(parse_jsonl_sample("{\"context\": \"c\"}", "t", 0, "x:1"), Error);
  EXPECT_THROW(parse_jsonl_sample("{\"context\": \"c\", \"questions\": [\"a\", \"b\"], \"answers\": [\"a\"]}", "t", 0,
                                  "x:1"),
               Error);
  EXPECT_THROW(parse_jsonl_sample("{\"context\": \"c\", \"questions\": [\"a\"], \"answers\": [\"a\"], \"metric\": "
                                  "\"bleu9\"}",
                                  "t", 0, "x:1"),
               Error);
  EXPECT_THROW(parse_jsonl_sample("not json", "t", 0, "x:1"), Error);
  std::remove(path.c_str());
}

// Context-length sweeps (`--ctx-tokens 1000,2000,4000`): every task generated at each
// length, each sample sized to it, bad lists rejected with a message.
TEST(EvalTasks, ContextLengthSweep) {
  EXPECT_EQ(parse_ctx_tokens("2000,4000,8000"), (std::vector<int64_t>{2000, 4000, 8000}));
  EXPECT_EQ(parse_ctx_tokens("0"), (std::vector<int64_t>{0}));
  EXPECT_EQ(parse_ctx_tokens("1000,,16000"), (std::vector<int64_t>{1000, 16000}));
  for (const char* bad : {"", ",", "2k", "-5", "1000,1000", "99999999", "12x"}) EXPECT_THROW(parse_ctx_tokens(bad), Error) << bad;

  for (const char* name : {"squad", "kv", "needle-multikey", "vt"}) {
    SCOPED_TRACE(name);
    const TaskInfo& t = find_task(name);
    TaskParams p;
    p.seed = 5;
    p.ctx_tokens = 123;  // ignored: the lengths list wins
    const std::vector<int64_t> lengths = {1000, 4000, 0};
    const auto v = make_task_samples(t, 2, lengths, p);
    ASSERT_EQ(v.size(), 6u);
    for (size_t il = 0; il < lengths.size(); ++il) {
      const int64_t want = lengths[il] ? lengths[il] : t.default_ctx_tokens;
      for (int i = 0; i < 2; ++i) {
        const EvalSample& s = v[il * 2 + static_cast<size_t>(i)];
        EXPECT_EQ(s.index, i);
        EXPECT_EQ(s.ctx_target, want);
        const int64_t n = approx_tokens(s.context);  // the default counter when p.count is empty
        EXPECT_GE(n, want * 85 / 100) << "sample " << i << " at " << want;  // as EveryTaskIsDeterministicValidAndSized
        EXPECT_LE(n, want * 135 / 100 + 150) << "sample " << i << " at " << want;
      }
    }
    EXPECT_NE(v[0].context, v[2].context) << "another length, another context";
  }
}

// Evaluation metrics (kvzip-spec §6.3) on hand-computed cases. The BLEU and ROUGE-L
// expectations were worked out by hand below and agree with nltk 3.10.4
// (sentence_bleu, SmoothingFunction().method4) and rouge 1.0.1 (Rouge().get_scores, avg).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "eval/fidelity.h"
#include "eval/metrics.h"
#include "test_paths.h"

using namespace kvz;

TEST(EvalMetrics, Normalize) {
  EXPECT_EQ(normalize_answer("The  Cat, an Apple!"), "cat apple");
  EXPECT_EQ(normalize_answer("Seven seas and a THREE-legged stool"), "7 seas and threelegged stool");
  EXPECT_EQ(normalize_answer("  three  "), "3");
  EXPECT_EQ(normalize_answer("theatre"), "theatre") << "only whole words are articles";
  EXPECT_EQ(normalize_answer(""), "");
}

TEST(EvalMetrics, InclusionF1ExactSubstring) {
  EXPECT_EQ(answer_inclusion("It is in Port Elwin.", "port elwin"), 1.0);
  EXPECT_EQ(answer_inclusion("It is in Port.", "port elwin"), 0.0);
  EXPECT_EQ(answer_inclusion("The answer: three apples", "3 apples"), 1.0);
  // pred "cat sat on mat" (4 tokens), ref "cat is on mat" (4): overlap cat,on,mat = 3 -> P=R=3/4
  EXPECT_DOUBLE_EQ(token_f1("the cat sat on the mat", "the cat is on the mat"), 0.75);
  // multiset: pred "a a b" -> "b" after articles... use non-articles: "x x y" vs "x y y": overlap 2, P=R=2/3
  EXPECT_NEAR(token_f1("x x y", "x y y"), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(token_f1("nothing shared", "else"), 0.0);
  EXPECT_EQ(exact_match("42", "42"), 1.0);
  EXPECT_EQ(exact_match("42 ", "42"), 0.0) << "no normalization";
  EXPECT_NEAR(substring_fraction("ABCDE, QWERT and ZZZZZ", "ABCDE, QWERT, PLMOK"), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(substring_fraction("abcde", "ABCDE"), 0.0) << "case-sensitive";
}

TEST(EvalMetrics, RougeL) {
  // ref words {a, c, e} (m=3), hyp words {a, b, c, d} (n=4), LCS "a c": P=2/4, R=2/3,
  // F = 2PR/(P+R+1e-8) = 0.5714285665...
  EXPECT_NEAR(rouge_l("a b c d", "a c e"), 2 * (0.5 * 2.0 / 3) / (0.5 + 2.0 / 3 + 1e-8), 1e-12);
  // two hyp sentences, union LCS with the one ref sentence = {the, cat, on, mat}: P=R=4/5
  EXPECT_NEAR(rouge_l("the cat sat. on the mat", "the cat is on the mat"), 0.7999999950000002, 1e-12);
  // distinct words are counted once (exclusive sets); full overlap -> ~1
  EXPECT_NEAR(rouge_l("x y. y z", "y z. x"), 0.999999995, 1e-12);
  // case-sensitive: "The" != "the"; ref words {the,cat,sat,on,a,mat}, hyp {The,cat,sat,on,the,mat}
  // LCS "cat sat on mat" -> 4: P=R=4/6
  EXPECT_NEAR(rouge_l("The cat sat on the mat.", "the cat sat on a mat."), 0.6666666616666668, 1e-12);
  EXPECT_EQ(rouge_l("", "abc"), 0.0);
}

TEST(EvalMetrics, GsmManyShotFirstLine) {
  EXPECT_EQ(gsm_answer("Tom has 3 + 4 = 7. The answer is 7.", "3 + 4 = 7\n#### 7"), 1.0);
  EXPECT_EQ(gsm_answer("The answer is 7. Then 8, so THE ANSWER IS 8", "#### 7"), 0.0) << "after the last cue only";
  EXPECT_EQ(gsm_answer("The answer is 17.", "#### 7"), 1.0) << "raw substring test, as in the reference";
  EXPECT_EQ(many_shot("(B) food", "(B) food"), 1.0);
  EXPECT_EQ(many_shot("The label is (C) weather", "(B) food"), 0.0);
  EXPECT_EQ(many_shot("It is about food.", "(B) food"), 1.0) << "no parenthesis in pred: inclusion of the label";
  EXPECT_EQ(many_shot("It is about sports.", "(B) food"), 0.0);
  EXPECT_EQ(first_line_inclusion("\nParis\nnot London", "london"), 0.0);
  EXPECT_EQ(first_line_inclusion("Paris, France\nx", "paris"), 1.0);
}

TEST(EvalMetrics, SentenceBleuMethod4) {
  EXPECT_NEAR(sentence_bleu("def f ( x ) : return x + 1", "def f ( x ) : return x + 1"), 1.0, 1e-12);
  // p1..p3 = 3/4, 2/3, 1/2; p4 = 0 -> method4: 1/(2 * 5 / ln 4); BP = 1 (equal lengths)
  const double p4 = std::log(4.0) / 10.0;
  EXPECT_NEAR(sentence_bleu("a b c d", "a b c e"), std::pow(0.75 * (2.0 / 3) * 0.5 * p4, 0.25), 1e-12);
  EXPECT_NEAR(sentence_bleu("a b c d", "a b c e"), 0.43146827293898643, 1e-12);
  // hyp 3 of ref 6: p1=p2=p3=1, p4 = 0 of 1 n-grams -> ln3/10; BP = exp(1 - 6/3)
  EXPECT_NEAR(sentence_bleu("a b c", "a b c d e f"), std::exp(-1.0) * std::pow(std::log(3.0) / 10.0, 0.25), 1e-12);
  EXPECT_EQ(sentence_bleu("x y", "a b"), 0.0) << "no unigram match";
  // one-token hypothesis: the zero higher orders stay zero and drop out; BP = exp(1 - 2)
  EXPECT_NEAR(sentence_bleu("a", "a b"), std::exp(-1.0), 1e-12);
}

TEST(EvalMetrics, RepoQaPass) {
  const std::string f1 = "def add(a, b):\n    return a + b\n";
  const std::string f2 = "def mul(a, b):\n    return a * b\n";
  EXPECT_EQ(extract_code_block("Sure:\n```python\n" + f1 + "```\nDone"), f1);
  EXPECT_EQ(extract_code_block(f1), f1) << "no fence: the whole prediction";
  EXPECT_EQ(repoqa_pass("```python\n" + f1 + "```", f1, {f1, f2}), 1.0);
  EXPECT_EQ(repoqa_pass("```python\n" + f2 + "```", f1, {f1, f2}), 0.0) << "closer to another needle";
  EXPECT_EQ(repoqa_pass("```python\ndef add(a, b):\n```", f1, {f1, f2}), 0.0) << "below the 0.8 BLEU threshold";
}

TEST(EvalMetrics, ScoreAnswerDispatchAndEmpty) {
  EXPECT_EQ(*score_answer("inclusion", "Port Elwin</s>", "port elwin"), 1.0);
  EXPECT_EQ(*score_answer("inclusion", "   \n", "x"), 0.0);
  EXPECT_FALSE(score_answer("repoqa", " ", "def f(): pass", {"def f(): pass"}).has_value())
      << "empty predictions leave the repoqa denominator";
  EXPECT_EQ(*score_answer("f1_or_inclusion", "cat sat on mat", "the cat is on the mat"), 0.75);
  EXPECT_THROW(score_answer("bogus", "a", "a"), Error);
  EXPECT_DOUBLE_EQ(mean_present({1.0, std::nullopt, 0.0}), 0.5);
  EXPECT_DOUBLE_EQ(mean_present({std::nullopt}), 0.0);
}

TEST(EvalFidelity, IdenticalAndKnownDistributions) {
  // two tokens over a vocabulary of 2
  const std::vector<int32_t> targets = {0, 1};
  auto lg = [](std::vector<double> p) {
    std::vector<float> o;
    for (double x : p) o.push_back(static_cast<float>(std::log(x)));
    return o;
  };
  const std::vector<float> full = lg({0.8, 0.2, 0.3, 0.7});
  Fidelity same = compare_logprobs(full, full, targets, 2);
  EXPECT_EQ(same.n_tokens, 2);
  EXPECT_NEAR(same.sum_abs_dp, 0.0, 1e-7);
  EXPECT_EQ(same.flips, 0);
  EXPECT_NEAR(same.mean_kl(), 0.0, 1e-7);
  const std::vector<float> comp = lg({0.6, 0.4, 0.6, 0.4});
  const Fidelity f = compare_logprobs(full, comp, targets, 2);
  // |dp|: token 0 predicts id 0: |0.6-0.8| = 0.2; token 1 predicts id 1: |0.4-0.7| = 0.3
  EXPECT_NEAR(f.mean_abs_dp(), 0.25, 1e-6);
  EXPECT_NEAR(f.max_abs_dp, 0.3, 1e-6);
  EXPECT_EQ(f.flips, 1) << "second row: argmax 1 -> 0";
  const double kl0 = 0.8 * std::log(0.8 / 0.6) + 0.2 * std::log(0.2 / 0.4);
  const double kl1 = 0.3 * std::log(0.3 / 0.6) + 0.7 * std::log(0.7 / 0.4);
  EXPECT_NEAR(f.mean_kl(), (kl0 + kl1) / 2, 1e-6);
  EXPECT_NEAR(f.max_kl, std::max(kl0, kl1), 1e-6);
}

// 154 random and code-like cases scored by nltk's sentence_bleu (method4) and the rouge
// package (tests/golden/gen/eval_metrics.py). Tolerance 1e-9: both sides compute in double.
TEST(EvalMetrics, GoldenAgainstNltkAndRouge) {
  std::ifstream in(test::source_dir() + "/tests/golden/data/eval_metrics.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  int n = 0;
  for (const auto& c : j.at("cases")) {
    const std::string hyp = c.at("hyp"), ref = c.at("ref");
    EXPECT_NEAR(sentence_bleu(hyp, ref), c.at("bleu").get<double>(), 1e-9) << hyp << " | " << ref;
    EXPECT_NEAR(rouge_l(hyp, ref), c.at("rouge_l").get<double>(), 1e-9) << hyp << " | " << ref;
    ++n;
  }
  EXPECT_GE(n, 150);
}

// Session::forward_step (the server's batched decode) against each session's own forward():
// the same logits per row up to batch-shape rounding, the same greedy tokens, the caches
// advanced alike; on a plain model, with f16 and q8_0 caches in one batch, on Gemma 3's sliding
// windows, and on the real SmolLM2.
#include <gtest/gtest.h>

#include <cmath>

#include "core/thread_pool.h"
#include "model/sampler.h"
#include "model/session.h"
#include "synthetic_model.h"
#include "test_paths.h"

namespace kvz {
namespace {

// Decodes `steps` greedy tokens for every prompt, batched (forward_step) and one by one
// (forward), and compares logits and tokens at every step.
void compare_batched(const Model& m, const std::vector<std::vector<int32_t>>& prompts, int steps,
                     const std::vector<KvType>& types, float tol) {
  ThreadPool pool(2);
  const int V = m.hp().n_vocab;
  std::vector<std::unique_ptr<Session>> a, b;
  std::vector<std::vector<float>> la(prompts.size()), lb(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    a.push_back(std::make_unique<Session>(m, pool, 0, types[i % types.size()]));
    b.push_back(std::make_unique<Session>(m, pool, 0, types[i % types.size()]));
    a[i]->forward(prompts[i], LogitsMode::Last, &la[i]);
    b[i]->forward(prompts[i], LogitsMode::Last, &lb[i]);
  }
  ForwardScratch sc;
  std::vector<float> logits(prompts.size() * V);
  for (int step = 0; step < steps; ++step) {
    std::vector<Session*> ss;
    std::vector<int32_t> toks;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const int32_t ta = argmax(la[i].data(), V), tb = argmax(lb[i].data(), V);
      ASSERT_EQ(ta, tb) << "row " << i << " step " << step;
      ss.push_back(a[i].get());
      toks.push_back(ta);
      const int32_t one[1] = {tb};
      b[i]->forward(one, LogitsMode::Last, &lb[i]);
    }
    Session::forward_step(ss, toks, logits.data(), sc);
    for (size_t i = 0; i < prompts.size(); ++i) {
      la[i].assign(logits.begin() + i * V, logits.begin() + (i + 1) * V);
      float worst = 0;
      for (int v = 0; v < V; ++v) worst = std::max(worst, std::fabs(la[i][v] - lb[i][v]));
      EXPECT_LE(worst, tol) << "row " << i << " step " << step;
      EXPECT_EQ(a[i]->n_pos(), b[i]->n_pos());
      EXPECT_EQ(a[i]->cache().lengths(), b[i]->cache().lengths());
    }
  }
}

TEST(ForwardStep, MatchesOneByOneOnASyntheticModel) {
  const std::string path = test::write_synthetic_llama({}, "forward_step");
  auto m = Model::load(path);
  std::remove(path.c_str());
  // Different lengths, so the rows sit at different positions and attend over different spans.
  compare_batched(*m, {{1, 2, 3}, {7, 8, 9, 10, 11, 12, 13}, {42}, {5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5}}, 12,
                  {KvType::F16}, 1e-4f);
}

TEST(ForwardStep, MixedCacheTypes) {
  test::SyntheticSpec spec;
  spec.n_embd = 128;  // d_head 32: q8_0 rows need whole 32-value blocks
  const std::string path = test::write_synthetic_llama(spec, "forward_step_q8");
  auto m = Model::load(path);
  std::remove(path.c_str());
  compare_batched(*m, {{1, 2, 3, 4}, {9, 8, 7}, {100, 101, 102, 103, 104, 105}}, 10, {KvType::F16, KvType::Q8_0},
                  1e-4f);
}

TEST(ForwardStep, SlidingWindows) {
  auto m = test::load_tiny_gemma3(4, "forward_step_gemma");
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 5 + 7 * i; ++t) p.push_back((t * 13 + i * 7) % 200 + 1);
    prompts.push_back(p);
  }
  // 20 steps roll every row past its 8-position window.
  compare_batched(*m, prompts, 20, {KvType::F16}, 1e-4f);
}

TEST(ForwardStep, RealModelGreedyTokensMatch) {
  if (!test::file_exists(test::smollm2_path())) GTEST_SKIP() << "no " << test::smollm2_path();
  auto m = Model::load(test::smollm2_path());
  const Tokenizer& tok = m->tokenizer();
  std::vector<std::vector<int32_t>> prompts;
  for (const char* s : {"The capital of France is", "Once upon a time, a small robot",
                        "def fibonacci(n):", "List three colours: red,", "The quick brown fox"})
    prompts.push_back(tok.encode(s, true, false));
  // Quantized activations, integer dot products: batch shape moves the f32 sums only slightly.
  compare_batched(*m, prompts, 16, {KvType::F16}, 2e-2f);
}

}  // namespace
}  // namespace kvz

// Forward-pass parity with llama.cpp on real models: SmolLM2-135M-Instruct Q4_1 (llama),
// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: QKV bias, NeoX RoPE, Q5_0/Q8_0/Q6_K weights) and
// Gemma 3 270M base Q4_K_M (sliding-window layers; bounds below its test).
// Fixtures: tests/golden/gen/gen_llama_parity.py, gen_gemma3_parity.py (llama-cpp-python,
// 2 threads, F16 KV).
// For 7-10 prompts per model (one over 1,000 tokens) we feed llama.cpp's token ids and compare, at every
// position, the logits of llama.cpp's top-8 ids and of 8 fixed random ids.
//
// Tolerance, derived: the fixture also records how much llama.cpp disagrees with ITSELF on
// the same ids when flash attention is switched on (another valid f16/f32 mix). SmolLM2
// amplifies attention rounding strongly (max ~1.2 logits, mean ~0.3-0.45). We allow 1.5x
// that floor for the max and the mean. A real bug (rope, mask, norm, GQA mapping) moves
// logits by several units at most positions and fails the mean bound by far.
//
// Greedy: the 32-token continuation is checked teacher-forced (llama.cpp's tokens fed back)
// - our argmax must equal llama.cpp's at every step whose top-1/top-2 margin exceeds the
// noise floor - and free-running, where our own continuation must equal llama.cpp's up to
// the first step whose margin is below the floor (after a near-tie either engine may take
// either branch; llama.cpp's two attention paths do too).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>

#include "model/sampler.h"
#include "model/session.h"
#include "test_paths.h"

using namespace kvz;

namespace {

constexpr double kNoiseFactor = 1.5;
// Positions per prompt under the sanitizers (test::sanitized()).
constexpr size_t kSanitizedTokens = 48;

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;
  std::vector<double> margins;
  // per position: top ids, their logits, logits of rand ids
  std::vector<std::vector<int32_t>> top;
  std::vector<std::vector<float>> top_val, rand_val;
  double noise_max = 0, noise_mean = 0, noise_p99 = 0;  // this prompt's llama.cpp flash-attn on vs off
};

struct Fixture {
  double noise_max = 0, noise_mean = 0;  // llama.cpp flash-attn on vs off, max over prompts
  std::vector<int32_t> rand_ids;
  std::vector<Prompt> prompts;
};

Fixture load_fixture(const std::string& stem) {
  const std::string dir = test::source_dir() + "/tests/golden/data/";
  std::ifstream jf(dir + stem + ".json");
  if (!jf) throw std::runtime_error("missing fixture " + stem + ".json");
  const auto meta = nlohmann::json::parse(jf);
  Fixture fx;
  fx.rand_ids = meta["rand_ids"].get<std::vector<int32_t>>();
  const int K = meta["topk"].get<int>();
  const int R = static_cast<int>(fx.rand_ids.size());
  std::ifstream bf(dir + stem + ".bin", std::ios::binary);
  std::vector<char> blob((std::istreambuf_iterator<char>(bf)), {});
  size_t off = 0;
  auto rd = [&](void* p, size_t n) {
    if (off + n > blob.size()) throw std::runtime_error("fixture truncated");
    std::memcpy(p, blob.data() + off, n);
    off += n;
  };
  for (const auto& pj : meta["prompts"]) {
    Prompt p;
    int32_t n;
    rd(&n, 4);
    p.ids.resize(n);
    rd(p.ids.data(), 4 * n);
    for (int t = 0; t < n; ++t) {
      std::vector<int32_t> top(K);
      std::vector<float> tv(K), rv(R);
      rd(top.data(), 4 * K);
      rd(tv.data(), 4 * K);
      rd(rv.data(), 4 * R);
      p.top.push_back(top);
      p.top_val.push_back(tv);
      p.rand_val.push_back(rv);
    }
    p.greedy = pj["greedy"].get<std::vector<int32_t>>();
    p.margins = pj["greedy_margins"].get<std::vector<double>>();
    p.noise_max = pj["self_noise"]["max"].get<double>();
    p.noise_mean = pj["self_noise"]["mean"].get<double>();
    p.noise_p99 = pj["self_noise"].value("p99", 0.0);
    fx.noise_max = std::max(fx.noise_max, p.noise_max);
    fx.noise_mean = std::max(fx.noise_mean, p.noise_mean);
    fx.prompts.push_back(std::move(p));
  }
  if (!(off == blob.size())) throw std::runtime_error("fixture " + stem + ".bin has trailing bytes");
  return fx;
}

// Runs every prompt of `fx` and checks logits and greedy continuations. Logits are computed
// in calls of `chunk` tokens (one forward batch each), which bounds the [chunk][n_vocab]
// logits buffer for large vocabularies. Returns the number of prompts whose whole
// continuation is identical to llama.cpp's.
// Bounds on |logit - llama.cpp| for one prompt, and the margin below which a greedy step
// counts as a near-tie. p99: the 99th percentile over positions (0: not checked).
struct Bounds {
  double max = 0, mean = 0, p99 = 0, tie = 0;
};

size_t check_parity(const Fixture& fx, const std::string& model_path, const std::function<Bounds(const Prompt&)>& bounds,
                    int64_t chunk) {
  auto model = Model::load(model_path);
  const int V = model->hp().n_vocab;
  ThreadPool pool(2);
  bool saw_long = false;
  size_t n_exact = 0;  // prompts whose whole 32-token greedy continuation is identical
  // Under the sanitizers each prompt stops after its first kSanitizedTokens positions (the
  // logits there are the fixture's: attention is causal) and the greedy continuations are
  // left out (SmolLM2 decodes about 15 tokens/s there).
  const bool truncated = test::sanitized();
  for (size_t ip = 0; ip < fx.prompts.size(); ++ip) {
    const Prompt& p = fx.prompts[ip];
    const size_t n = truncated ? std::min(p.ids.size(), kSanitizedTokens) : p.ids.size();  // positions checked
    const Bounds b = bounds(p);
    saw_long |= p.ids.size() > 1000;
    Session s(*model, pool);
    std::vector<float> logits;
    double max_err = 0.0, sum_err = 0.0;
    std::vector<double> errs;
    for (size_t t = 0; t < n; ++t) {
      if (t % chunk == 0) {
        const size_t m = std::min<size_t>(chunk, n - t);
        s.forward(std::span<const int32_t>(p.ids.data() + t, m), LogitsMode::All, &logits);
      }
      const float* row = logits.data() + (t % chunk) * V;
      double e = 0.0;
      for (size_t k = 0; k < p.top[t].size(); ++k) e = std::max<double>(e, std::abs(row[p.top[t][k]] - p.top_val[t][k]));
      for (size_t k = 0; k < fx.rand_ids.size(); ++k)
        e = std::max<double>(e, std::abs(row[fx.rand_ids[k]] - p.rand_val[t][k]));
      max_err = std::max(max_err, e);
      sum_err += e;
      errs.push_back(e);
    }
    const double mean_err = sum_err / n;
    std::sort(errs.begin(), errs.end());
    // numpy's default (linear) percentile, as the generator computes llama.cpp's
    const double rank = 0.99 * (errs.size() - 1);
    const size_t lo = static_cast<size_t>(rank);
    const double p99 = errs[lo] + (rank - lo) * (errs[std::min(lo + 1, errs.size() - 1)] - errs[lo]);
    std::printf("prompt %zu: %zu tokens, |logit - llama.cpp| max %.3f mean %.3f p99 %.3f (bounds %.3f / %.3f / %.3f)\n",
                ip, n, max_err, mean_err, p99, b.max, b.mean, b.p99);
    EXPECT_LT(max_err, b.max) << "prompt " << ip;
    EXPECT_LT(mean_err, b.mean) << "prompt " << ip;
    if (b.p99 > 0) {
      EXPECT_LT(p99, b.p99) << "prompt " << ip;
    }

    if (truncated) {
      std::printf("  (first %zu of %zu tokens under the sanitizers; greedy not checked)\n", n, p.ids.size());
      continue;
    }
    // Free-running greedy from our own logits, and teacher-forced agreement on a copy.
    const Session::Checkpoint prompt_end = s.checkpoint();
    const std::vector<float> prompt_last(logits.end() - V, logits.end());
    std::vector<float> last = prompt_last;
    std::vector<int32_t> gen;
    for (size_t i = 0; i < p.greedy.size(); ++i) {
      const int32_t id = argmax(last.data(), V);
      gen.push_back(id);
      const int32_t one[1] = {id};
      s.forward(one, LogitsMode::Last, &last);
    }
    size_t stable = 0;  // steps before llama.cpp's first near-tie
    while (stable < p.margins.size() && p.margins[stable] > b.tie) ++stable;
    size_t same = 0;
    while (same < gen.size() && gen[same] == p.greedy[same]) ++same;
    std::printf("  greedy: identical for %zu of %zu tokens (llama.cpp's first near-tie at step %zu)\n", same,
                gen.size(), stable);
    EXPECT_GE(same, stable) << "prompt " << ip << ": diverged from llama.cpp before any near-tie";
    n_exact += same == gen.size();

    s.restore(prompt_end);
    last = prompt_last;
    for (size_t i = 0; i < p.greedy.size(); ++i) {
      if (p.margins[i] > b.tie) {
        EXPECT_EQ(argmax(last.data(), V), p.greedy[i]) << "prompt " << ip << " step " << i;
      }
      const int32_t one[1] = {p.greedy[i]};
      s.forward(one, LogitsMode::Last, &last);
    }
  }
  EXPECT_TRUE(saw_long) << "the fixture must include a prompt over 1,000 tokens";
  std::printf("greedy continuations identical to llama.cpp for all 32 tokens: %zu of %zu prompts\n", n_exact,
              fx.prompts.size());
  return n_exact;
}

}  // namespace

TEST(ParityTest, LogitsAndGreedyMatchLlamaCpp) {
  if (!test::file_exists(test::smollm2_path()))
    GTEST_SKIP() << "model not found at " << test::smollm2_path() << "; run scripts/pull-model.sh smollm2-135m";
  const Fixture fx = load_fixture("parity_smollm2");
  ASSERT_GE(fx.prompts.size(), 5u);
  ASSERT_GT(fx.noise_max, 0.0);
  const Bounds b{kNoiseFactor * fx.noise_max, kNoiseFactor * fx.noise_mean, 0.0, fx.noise_max};
  const size_t n_exact = check_parity(fx, test::smollm2_path(), [&](const Prompt&) { return b; }, 1 << 30);
  // Issue 3's bar: at least five prompts whose whole 32-token continuation is identical.
  if (!test::sanitized()) {  // no greedy check under the sanitizers
    EXPECT_GE(n_exact, 5u);
  }
}

TEST(ParityTest, Qwen25LogitsAndGreedyMatchLlamaCpp) {
  const std::string path = test::models_dir() + "/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
  if (!test::file_exists(path))
    GTEST_SKIP() << "model not found at " << path << "; run scripts/pull-model.sh qwen2.5-coder-0.5b";
  const Fixture fx = load_fixture("parity_qwen25");
  ASSERT_GE(fx.prompts.size(), 5u);
  ASSERT_GT(fx.noise_max, 0.0);
  const Bounds b{kNoiseFactor * fx.noise_max, kNoiseFactor * fx.noise_mean, 0.0, fx.noise_max};
  const size_t n_exact = check_parity(fx, path, [&](const Prompt&) { return b; }, 1 << 30);
  if (!test::sanitized()) {  // no greedy check under the sanitizers
    EXPECT_GE(n_exact, 5u);
  }
}

TEST(ParityTest, Gemma3LogitsAndGreedyMatchLlamaCpp) {
  if (!test::file_exists(test::gemma3_path()))
    GTEST_SKIP() << "model not found at " << test::gemma3_path() << "; run scripts/pull-model.sh gemma3-270m";
  const Fixture fx = load_fixture("parity_gemma3");
  ASSERT_GE(fx.prompts.size(), 5u);
  // Per-prompt bounds: llama.cpp's own flash-attn on/off disagreement is ~0.4-0.6 (mean) on
  // every prompt, but on the 1,425-token prompt it reaches 14.7 at a few positions (p99 1.9);
  // a fixture-wide max would make the short prompts' bounds meaningless. The near-tie
  // threshold for greedy steps is the largest per-prompt p99.
  double tie = 0;
  for (const Prompt& p : fx.prompts) tie = std::max(tie, p.noise_p99);
  ASSERT_GT(tie, 0.0) << "parity_gemma3.json lacks self_noise.p99; regenerate it";
  const size_t n_exact = check_parity(
      fx, test::gemma3_path(),
      [&](const Prompt& p) {
        return Bounds{kNoiseFactor * p.noise_max, kNoiseFactor * p.noise_mean, kNoiseFactor * p.noise_p99, tie};
      },
      512);  // logits of 512 tokens at a time: [512][262144] f32 is 512 MiB
  if (!test::sanitized()) {  // no greedy check under the sanitizers
    EXPECT_GE(n_exact, 4u);
  }
}


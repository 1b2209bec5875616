// Forward-pass parity with llama.cpp on real models: SmolLM2-135M-Instruct Q4_1 (llama) and
// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2: QKV bias, NeoX RoPE, Q5_0/Q8_0/Q6_K weights).
// Fixtures: tests/golden/gen/gen_llama_parity.py (llama-cpp-python, 2 threads, F16 KV).
// For 10 prompts per model (one over 1,000 tokens) we feed llama.cpp's token ids and compare, at every
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

#include <cmath>
#include <cstring>
#include <fstream>

#include "model/sampler.h"
#include "model/session.h"
#include "test_paths.h"

using namespace kvz;

namespace {

constexpr double kNoiseFactor = 1.5;

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;
  std::vector<double> margins;
  // per position: top ids, their logits, logits of rand ids
  std::vector<std::vector<int32_t>> top;
  std::vector<std::vector<float>> top_val, rand_val;
};

struct Fixture {
  double noise_max = 0, noise_mean = 0;  // llama.cpp flash-attn on vs off, max over prompts
  std::vector<int32_t> rand_ids;
  std::vector<Prompt> prompts;
};

Fixture load_fixture(const std::string& name) {
  const std::string dir = test::source_dir() + "/tests/golden/data/";
  std::ifstream jf(dir + "parity_" + name + ".json");
  if (!jf) throw std::runtime_error("missing fixture parity_" + name + ".json");
  const auto meta = nlohmann::json::parse(jf);
  Fixture fx;
  fx.rand_ids = meta["rand_ids"].get<std::vector<int32_t>>();
  const int K = meta["topk"].get<int>();
  const int R = static_cast<int>(fx.rand_ids.size());
  std::ifstream bf(dir + "parity_" + name + ".bin", std::ios::binary);
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
    fx.noise_max = std::max(fx.noise_max, pj["self_noise"]["max"].get<double>());
    fx.noise_mean = std::max(fx.noise_mean, pj["self_noise"]["mean"].get<double>());
    fx.prompts.push_back(std::move(p));
  }
  return fx;
}

struct ParityCase {
  const char* fixture;  // parity_<fixture>.json/.bin
  const char* pull;     // scripts/pull-model.sh name = models dir
  const char* file;
};

class ParityTest : public ::testing::TestWithParam<ParityCase> {
 protected:
  void SetUp() override {
    path_ = test::models_dir() + "/" + GetParam().pull + "/" + GetParam().file;
    if (!test::file_exists(path_))
      GTEST_SKIP() << "model not found at " << path_ << "; run scripts/pull-model.sh " << GetParam().pull;
  }
  std::string path_;
};

}  // namespace

TEST_P(ParityTest, LogitsAndGreedyMatchLlamaCpp) {
  const Fixture fx = load_fixture(GetParam().fixture);
  ASSERT_GE(fx.prompts.size(), 5u);
  ASSERT_GT(fx.noise_max, 0.0);
  const double tol_max = kNoiseFactor * fx.noise_max, tol_mean = kNoiseFactor * fx.noise_mean;
  auto model = Model::load(path_);
  const int V = model->hp().n_vocab;
  ThreadPool pool(2);
  bool saw_long = false;
  size_t n_exact = 0;  // prompts whose whole 32-token greedy continuation is identical
  for (size_t ip = 0; ip < fx.prompts.size(); ++ip) {
    const Prompt& p = fx.prompts[ip];
    saw_long |= p.ids.size() > 1000;
    Session s(*model, pool);
    std::vector<float> logits;
    s.forward(p.ids, LogitsMode::All, &logits);
    double max_err = 0.0, sum_err = 0.0;
    for (size_t t = 0; t < p.ids.size(); ++t) {
      const float* row = logits.data() + t * V;
      double e = 0.0;
      for (size_t k = 0; k < p.top[t].size(); ++k) e = std::max<double>(e, std::abs(row[p.top[t][k]] - p.top_val[t][k]));
      for (size_t k = 0; k < fx.rand_ids.size(); ++k)
        e = std::max<double>(e, std::abs(row[fx.rand_ids[k]] - p.rand_val[t][k]));
      max_err = std::max(max_err, e);
      sum_err += e;
    }
    const double mean_err = sum_err / p.ids.size();
    std::printf("prompt %zu: %zu tokens, |logit - llama.cpp| max %.3f mean %.3f (bounds %.3f / %.3f)\n", ip,
                p.ids.size(), max_err, mean_err, tol_max, tol_mean);
    EXPECT_LT(max_err, tol_max) << "prompt " << ip;
    EXPECT_LT(mean_err, tol_mean) << "prompt " << ip;

    // Free-running greedy from our own logits, and teacher-forced agreement on a copy.
    const std::vector<int64_t> lens = s.cache().lengths();
    const int64_t n_pos = s.n_pos();
    std::vector<float> last(logits.end() - V, logits.end());
    std::vector<int32_t> gen;
    for (size_t i = 0; i < p.greedy.size(); ++i) {
      const int32_t id = argmax(last.data(), V);
      gen.push_back(id);
      const int32_t one[1] = {id};
      s.forward(one, LogitsMode::Last, &last);
    }
    size_t stable = 0;  // steps before llama.cpp's first near-tie
    while (stable < p.margins.size() && p.margins[stable] > fx.noise_max) ++stable;
    size_t same = 0;
    while (same < gen.size() && gen[same] == p.greedy[same]) ++same;
    std::printf("  greedy: identical for %zu of %zu tokens (llama.cpp's first near-tie at step %zu)\n", same,
                gen.size(), stable);
    EXPECT_GE(same, stable) << "prompt " << ip << ": diverged from llama.cpp before any near-tie";
    n_exact += same == gen.size();

    s.cache().truncate(lens);
    s.set_n_pos(n_pos);
    last.assign(logits.end() - V, logits.end());
    for (size_t i = 0; i < p.greedy.size(); ++i) {
      if (p.margins[i] > fx.noise_max) {
        EXPECT_EQ(argmax(last.data(), V), p.greedy[i]) << "prompt " << ip << " step " << i;
      }
      const int32_t one[1] = {p.greedy[i]};
      s.forward(one, LogitsMode::Last, &last);
    }
  }
  EXPECT_TRUE(saw_long) << "the fixture must include a prompt over 1,000 tokens";
  std::printf("greedy continuations identical to llama.cpp for all 32 tokens: %zu of %zu prompts\n", n_exact,
              fx.prompts.size());
  // Issue 3's bar: at least five prompts whose whole 32-token continuation is identical.
  EXPECT_GE(n_exact, 5u);
}

INSTANTIATE_TEST_SUITE_P(Models, ParityTest,
                         ::testing::Values(ParityCase{"smollm2", "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"},
                                           ParityCase{"qwen25", "qwen2.5-coder-0.5b",
                                                      "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}),
                         [](const auto& info) { return std::string(info.param.fixture); });

// Llama 3.x rope scaling (per-frequency divisors in rope_freqs.weight) against llama.cpp.
// Fixture: tests/golden/gen/gen_rope_scaling_parity.py writes a tiny random-weight llama
// GGUF whose frequencies fall in all three Llama 3.1 regimes, runs 1,200 ids through
// llama.cpp and stores its logits at 12 positions, its flash-attention on/off disagreement
// and how far the same model without rope_freqs moves those logits.
//
// Tolerance: 3x llama.cpp's own disagreement (both engines round K/V to f16; the random
// model's logits are large, up to ~20). The test also checks that this tolerance is far
// below the unscaled model's distance, so ignoring rope_freqs cannot pass.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "model/session.h"
#include "test_paths.h"

using namespace kvz;

TEST(RopeScaling, Llama3FrequencyFactorsMatchLlamaCpp) {
  const std::string dir = test::source_dir() + "/tests/golden/data/";
  std::ifstream jf(dir + "rope_llama3.json");
  ASSERT_TRUE(jf.good()) << "missing fixture rope_llama3.json";
  const auto fx = nlohmann::json::parse(jf);
  auto model = Model::load(dir + "rope_llama3.gguf");
  ASSERT_TRUE(model->hp().has_rope_freqs);
  const auto factors = fx["rope_factors"].get<std::vector<float>>();
  ASSERT_EQ(model->w().rope_freqs.size(), factors.size());
  for (size_t i = 0; i < factors.size(); ++i) EXPECT_NEAR(model->w().rope_freqs[i], factors[i], 1e-5);

  const auto ids = fx["ids"].get<std::vector<int32_t>>();
  const auto positions = fx["positions"].get<std::vector<int>>();
  const auto ref = fx["logits"].get<std::vector<std::vector<float>>>();
  const double tol = 3.0 * fx["self_noise_max"].get<double>();
  const double unscaled = fx["unscaled_diff_max"].get<double>();
  ASSERT_LT(4.0 * tol, unscaled) << "the fixture cannot tell scaled from unscaled rope";

  ThreadPool pool(2);
  Session s(*model, pool);
  std::vector<float> logits;
  s.forward(ids, LogitsMode::All, &logits, /*n_batch=*/512);
  const int V = model->hp().n_vocab;
  double worst = 0.0;
  for (size_t k = 0; k < positions.size(); ++k) {
    ASSERT_EQ(ref[k].size(), static_cast<size_t>(V));
    double e = 0.0;
    for (int j = 0; j < V; ++j) e = std::max<double>(e, std::abs(logits[positions[k] * int64_t{V} + j] - ref[k][j]));
    EXPECT_LT(e, tol) << "position " << positions[k];
    worst = std::max(worst, e);
  }
  std::printf("rope_freqs model: max |logit - llama.cpp| %.4f (tolerance %.4f; without rope_freqs llama.cpp moves %.2f)\n",
              worst, tol, unscaled);
}

// KVzap surrogate file format and prediction (kv/kvzap_model.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "kv/kvzap_model.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

class KvzapModelTest : public test::SyntheticModelTest {
 protected:
  std::string tmpdir(const std::string& tag) {
    const auto d = std::filesystem::temp_directory_path() /
                   fmt::format("kvz-kvzap-{}-{}", tag, ::testing::UnitTest::GetInstance()->random_seed());
    std::filesystem::remove_all(d);
    dirs_.push_back(d.string());
    return d.string();
  }
  void TearDown() override {
    for (const auto& d : dirs_) std::filesystem::remove_all(d);
  }
  static KvzapModel random_model(KvzapModel::Kind kind, const HParams& hp, uint64_t seed) {
    KvzapModel m = KvzapModel::zeros(kind, hp.n_layer, hp.n_embd, hp.n_head_kv, hp.n_embd / 8);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.3f);
    for (int il = 0; il < m.n_layer(); ++il)
      for (auto* v : {&m.layer(il).w1, &m.layer(il).b1, &m.layer(il).w2, &m.layer(il).b2})
        for (float& x : *v) x = nd(rng);
    return m;
  }
  // The definition, written out: s = W2 gelu(W1 h + b1) + b2, or W h + b.
  static std::vector<float> naive(const KvzapModel& m, int il, const std::vector<float>& h, int64_t n) {
    const KvzapLayer& l = m.layer(il);
    const int D = m.d_in(), H = m.n_out(), F = m.d_hidden();
    std::vector<float> out(static_cast<size_t>(n) * H);
    for (int64_t t = 0; t < n; ++t) {
      const float* x = h.data() + t * D;
      if (m.kind() == KvzapModel::Kind::Linear) {
        for (int o = 0; o < H; ++o) {
          double s = l.b1[o];
          for (int i = 0; i < D; ++i) s += double(l.w1[size_t(o) * D + i]) * x[i];
          out[t * H + o] = float(s);
        }
      } else {
        std::vector<double> a(F);
        for (int j = 0; j < F; ++j) {
          double s = l.b1[j];
          for (int i = 0; i < D; ++i) s += double(l.w1[size_t(j) * D + i]) * x[i];
          a[j] = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));
        }
        for (int o = 0; o < H; ++o) {
          double s = l.b2[o];
          for (int j = 0; j < F; ++j) s += double(l.w2[size_t(o) * F + j]) * a[j];
          out[t * H + o] = float(s);
        }
      }
    }
    return out;
  }
  std::vector<std::string> dirs_;
};

TEST_F(KvzapModelTest, SaveLoadRoundTripAndPredictMatchTheDefinition) {
  const HParams& hp = model_->hp();
  for (auto kind : {KvzapModel::Kind::Linear, KvzapModel::Kind::Mlp}) {
    const KvzapModel m = random_model(kind, hp, 7);
    const std::string dir = tmpdir(kind == KvzapModel::Kind::Mlp ? "mlp" : "lin");
    m.save(dir, *model_, {{"corpus", "test"}});
    const KvzapModel r = KvzapModel::load(dir, *model_);
    ASSERT_EQ(r.kind(), kind);
    EXPECT_EQ(r.info().value("corpus", ""), "test");
    const int64_t n = 5;
    std::vector<float> h(static_cast<size_t>(n) * hp.n_embd);
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float& x : h) x = nd(rng);
    std::vector<float> out(static_cast<size_t>(n) * hp.n_head_kv), scratch;
    for (int il = 0; il < hp.n_layer; ++il) {
      r.predict(il, h.data(), n, out.data(), scratch);
      const auto want = naive(m, il, h, n);
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-4f * (1.0f + std::fabs(want[i])));
    }
  }
}

TEST_F(KvzapModelTest, PublishedLayoutWithoutTagLoadsWhenShapesFit) {
  const KvzapModel m = random_model(KvzapModel::Kind::Mlp, model_->hp(), 9);
  const std::string dir = tmpdir("untagged");
  m.save_untagged(dir);
  const auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  EXPECT_EQ(cfg["model_type"], "kvzap");
  EXPECT_EQ(cfg["hidden_dim"], model_->hp().n_embd / 8);
  EXPECT_FALSE(cfg.contains("kvzip"));
  EXPECT_NO_THROW(KvzapModel::load(dir, *model_));
}

TEST_F(KvzapModelTest, WrongModelOrDamagedFolderIsAClearError) {
  const HParams& hp = model_->hp();
  // Shapes of another model.
  HParams other = hp;
  other.n_embd = hp.n_embd * 2;
  const std::string d1 = tmpdir("shape");
  random_model(KvzapModel::Kind::Linear, other, 1).save_untagged(d1);
  EXPECT_THROW(KvzapModel::load(d1, *model_), Error);

  // Same shapes, but tagged for another model.
  const std::string d2 = tmpdir("tag");
  random_model(KvzapModel::Kind::Linear, hp, 1).save(d2, *model_);
  auto cfg = nlohmann::json::parse(std::ifstream(d2 + "/config.json"));
  cfg["kvzip"]["model_fingerprint"] = "0123456789abcdef";
  std::ofstream(d2 + "/config.json") << cfg.dump();
  try {
    KvzapModel::load(d2, *model_);
    ADD_FAILURE() << "loaded weights tagged for another model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }

  // Truncated weights file, missing config, wrong model_type.
  const std::string d3 = tmpdir("trunc");
  random_model(KvzapModel::Kind::Mlp, hp, 1).save(d3, *model_);
  std::filesystem::resize_file(d3 + "/model.safetensors", std::filesystem::file_size(d3 + "/model.safetensors") / 2);
  EXPECT_THROW(KvzapModel::load(d3, *model_), Error);
  EXPECT_THROW(KvzapModel::load(tmpdir("empty"), *model_), Error);
  const std::string d4 = tmpdir("type");
  random_model(KvzapModel::Kind::Linear, hp, 1).save(d4, *model_);
  cfg = nlohmann::json::parse(std::ifstream(d4 + "/config.json"));
  cfg["model_type"] = "llama";
  std::ofstream(d4 + "/config.json") << cfg.dump();
  EXPECT_THROW(KvzapModel::load(d4, *model_), Error);
}

}  // namespace

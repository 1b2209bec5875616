// The KVzap training pipeline end to end on a synthetic model: corpus, targets, both
// trainers, `kvzip train-kvzap` writing folders that load and predict.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "kvzap/corpus.h"
#include "kvzap/train.h"
#include "synthetic_model.h"

using namespace kvz;
namespace fs = std::filesystem;

namespace {

class KvzapTrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::SyntheticSpec spec;
    spec.n_ctx = 4096;  // the extended prompt of a 1,250-token text is ~2,500 tokens
    path_ = test::write_synthetic_llama(spec, "kvzap-train");
    model_ = Model::load(path_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    std::remove(path_.c_str());
  }
  static inline std::string path_;
  static inline Model* model_ = nullptr;
};

std::vector<CorpusText> take(Corpus& c, bool val, int n) {
  std::vector<CorpusText> out;
  CorpusText t;
  for (int i = 0; i < n && c.next(val, t); ++i) out.push_back(t);
  return out;
}

TEST_F(KvzapTrainTest, CorpusIsDeterministicWindowedAndHoldsOutWholeDocuments) {
  CorpusOptions o;
  o.sources = {"tasks"};
  o.seed = 3;
  Corpus a(model_->tokenizer(), o), b(model_->tokenizer(), o);
  const auto va = take(a, true, 2), ta = take(a, false, 12);
  const auto vb = take(b, true, 2), tb = take(b, false, 12);
  ASSERT_EQ(va.size(), 2u);
  ASSERT_EQ(ta.size(), 12u);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i].ids, tb[i].ids);
    EXPECT_GE(ta[i].ids.size(), 750u);
    EXPECT_LE(ta[i].ids.size(), 1250u);
    for (const auto& v : va) EXPECT_NE(ta[i].doc, v.doc) << "a held-out document also gave a training text";
  }
  EXPECT_EQ(va[0].ids, vb[0].ids);
  o.seed = 4;
  Corpus c(model_->tokenizer(), o);
  EXPECT_NE(take(c, false, 1)[0].ids, ta[0].ids);  // the seed changes the order
  const nlohmann::json d = a.describe();
  EXPECT_EQ(d["train"]["tasks"]["texts"], 12);
  EXPECT_EQ(d["validation"]["tasks"]["texts"], 2);
  o.sources = {"no-such-source"};
  EXPECT_THROW(Corpus(model_->tokenizer(), o), Error);
}

TEST_F(KvzapTrainTest, FilesystemSourcesGiveText) {
  if (!fs::is_directory("/usr/share/common-licenses")) GTEST_SKIP() << "no /usr/share/common-licenses";
  CorpusOptions o;
  o.sources = {"licenses"};
  Corpus c(model_->tokenizer(), o);
  const auto t = take(c, false, 1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].doc.rfind("/usr/share/common-licenses/", 0), 0u) << t[0].doc;
  EXPECT_GE(t[0].ids.size(), 750u);
}

TEST_F(KvzapTrainTest, DefaultDirFollowsThePulledModelLayout) {
  EXPECT_EQ(kvzap_output_dir("/c", "/m/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", "mlp"),
            "/c/kvzap/smollm2-135m-mlp");
  EXPECT_EQ(kvzap_output_dir("/c", "/x/other/My-Model.gguf", "linear"), "/c/kvzap/my-model-linear");
}

TEST_F(KvzapTrainTest, LibraryTrainsBothKindsWithHeldOutR2) {
  ThreadPool pool(2);
  KvzapTrainOptions o;
  o.tokens = 600;
  o.val_tokens = 300;
  o.positions_per_text = 150;
  o.corpus.sources = {"tasks"};
  o.mlp_opt.epochs = 3;
  o.progress = false;
  const KvzapTrainResult r = train_kvzap(*model_, pool, o);
  const HParams& hp = model_->hp();
  EXPECT_EQ(r.n_train_tokens, 600);
  EXPECT_EQ(r.n_val_tokens, 300);
  EXPECT_EQ(r.n_train_texts, 4);
  EXPECT_EQ(r.n_val_texts, 2);
  ASSERT_EQ(r.r2_linear.size(), static_cast<size_t>(hp.n_layer));
  ASSERT_EQ(r.r2_mlp.size(), static_cast<size_t>(hp.n_layer));
  for (int il = 0; il < hp.n_layer; ++il) {
    EXPECT_TRUE(std::isfinite(r.r2_linear[il]) && r.r2_linear[il] <= 1.0);
    EXPECT_TRUE(std::isfinite(r.r2_mlp[il]) && r.r2_mlp[il] <= 1.0);
  }
  EXPECT_EQ(r.linear.kind(), KvzapModel::Kind::Linear);
  EXPECT_EQ(r.mlp.d_hidden(), hp.n_embd / 8);
  const nlohmann::json info = r.info(true);
  EXPECT_EQ(info["train_pairs"], 600 * hp.n_head_kv);
  EXPECT_EQ(info["corpus"]["train"]["tasks"]["texts"], 4);
  EXPECT_TRUE(info.contains("r2_per_layer") && info.contains("train_seconds") && info.contains("target_stats"));
}

TEST_F(KvzapTrainTest, CliWritesFoldersThatLoadAndPredict) {
  const fs::path out = test::temp_path("kvz-train-kvzap");
  fs::remove_all(out);
  const std::string cmd = fmt::format(
      "'{}' train-kvzap -m '{}' -o '{}' --sources tasks --tokens 400 --val-tokens 200 --positions 100 --epochs 2 "
      "-t 2 > '{}.log' 2>&1",
      KVZ_CLI_PATH, path_, out.string(), out.string());
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const HParams& hp = model_->hp();
  for (const char* kind : {"linear", "mlp"}) {
    const KvzapModel km = KvzapModel::load((out / kind).string(), *model_);
    EXPECT_EQ(km.n_layer(), hp.n_layer);
    EXPECT_EQ(km.n_out(), hp.n_head_kv);
    EXPECT_EQ(km.info()["train_tokens"], 400);
    EXPECT_EQ(km.info()["r2_per_layer"].size(), static_cast<size_t>(hp.n_layer));
    std::vector<float> h(3 * hp.n_embd, 0.5f), pred(3 * hp.n_head_kv, NAN), scratch;
    km.predict(1, h.data(), 3, pred.data(), scratch);
    for (float v : pred) EXPECT_TRUE(std::isfinite(v));
    EXPECT_NE(pred[0], 0.0f);  // trained, not the zero model
  }
  fs::remove_all(out);
  fs::remove(out.string() + ".log");
}

}  // namespace

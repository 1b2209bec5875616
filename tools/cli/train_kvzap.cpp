// `kvzip train-kvzap`: trains the KVzap surrogates (linear and MLP) for a model on the
// offline corpus and writes them where `--method kvzap` finds them (kvzap/train.h).
#include <cmath>
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "kvzap/train.h"
#include "model/model.h"

namespace {

using namespace kvz;

std::string cache_root() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/kvzip";
}

double peak_rss_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);  // Linux: KiB
}

}  // namespace

void add_train_kvzap_command(CLI::App& app, const std::string& default_model) {
  static const KvzapTrainOptions def;
  auto* sub = app.add_subcommand(
      "train-kvzap",
      "train the KVzap surrogates (per-layer linear and MLP predictors of log KVzip+ scores from the attention "
      "input, arXiv 2601.07891) for a model, on text found offline on this machine; writes folders in kvpress's "
      "KVzap layout and prints held-out R^2 per layer");
  sub->add_option("-m,--model", "GGUF model file or Hugging Face folder")->default_val(default_model);
  static const std::string out_help = "output folder: writes OUT/linear and OUT/mlp (default: " + cache_root() +
                                      "/kvzap/<model>-linear and -mlp, where --method kvzap looks)";
  sub->add_option("-o,--out", out_help);
  sub->add_option("--kind", "which surrogate(s) to train")
      ->default_val("both")
      ->check(CLI::IsMember({"linear", "mlp", "both"}));
  sub->add_option("--tokens",
                  "sampled training tokens; pairs = tokens x KV heads. Memory: n_layer x (n_embd x 2 + "
                  "n_kv_head x 4) bytes per token (SmolLM2-135M: 34.9 KB; 333000 tokens = 1M pairs ~ 11.6 GB)")
      ->default_val(def.tokens)
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  sub->add_option("--val-tokens", "held-out tokens, from whole held-out documents (0: max(500, tokens/10))")
      ->default_val(def.val_tokens)
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 32));
  sub->add_option("--positions", "sampled positions per text (the same for all layers)")
      ->default_val(def.positions_per_text)
      ->check(CLI::Range(1, 100000));
  static const std::string sources_help = "corpus sources, comma-separated, from:\n" + corpus_help();
  sub->add_option("--sources", sources_help)->default_val("licenses,copyright,docs,python,tasks");
  sub->add_option("--epochs", "MLP epochs (cosine schedule over them)")
      ->default_val(def.mlp_opt.epochs)
      ->check(CLI::Range(1, 1000));
  sub->add_option("--seed", "corpus order, window lengths, sampled positions and MLP initialisation")
      ->default_val(def.corpus.seed);
  sub->add_option("-t,--threads", "threads (0: all cores)")->default_val(0)->check(CLI::Range(0, 1024));
}

int run_train_kvzap_command(const CLI::App& app) {
  const CLI::App* sub = app.get_subcommand("train-kvzap");
  const std::string model_path = sub->get_option("--model")->as<std::string>();
  const std::string kind = sub->get_option("--kind")->as<std::string>();
  KvzapTrainOptions o;
  o.tokens = sub->get_option("--tokens")->as<int64_t>();
  o.val_tokens = sub->get_option("--val-tokens")->as<int64_t>();
  o.positions_per_text = sub->get_option("--positions")->as<int>();
  o.mlp_opt.epochs = sub->get_option("--epochs")->as<int>();
  o.corpus.seed = sub->get_option("--seed")->as<uint64_t>();
  o.mlp_opt.seed = o.corpus.seed;
  o.corpus.sources.clear();
  for (std::string s = sub->get_option("--sources")->as<std::string>(); !s.empty();) {
    const size_t c = s.find(',');
    if (c > 0) o.corpus.sources.push_back(s.substr(0, c));
    s = c == std::string::npos ? "" : s.substr(c + 1);
  }
  if (o.corpus.sources.empty()) fail("train-kvzap: --sources is empty");
  o.linear = kind != "mlp";
  o.mlp = kind != "linear";
  std::string dir_linear = kvzap_output_dir(cache_root(), model_path, "linear");
  std::string dir_mlp = kvzap_output_dir(cache_root(), model_path, "mlp");
  if (sub->get_option("--out")->count() > 0) {
    const std::string out = sub->get_option("--out")->as<std::string>();
    dir_linear = out + "/linear";
    dir_mlp = out + "/mlp";
  }

  std::unique_ptr<Model> m;
  {
    ProgressBar bar("loading", "%", stderr_is_tty());
    m = Model::load(model_path, [&](double f) { bar.update(100.0 * f, 100.0); });
  }
  const HParams& hp = m->hp();
  ThreadPool pool(sub->get_option("--threads")->as<int>());
  fmt::print(stderr, "train-kvzap: {} layers x {} KV heads, d_in {}; {} training + {} held-out tokens, {} threads\n",
             hp.n_layer, hp.n_head_kv, hp.n_embd, o.tokens,
             o.val_tokens > 0 ? o.val_tokens : std::max<int64_t>(500, o.tokens / 10), pool.size());
  const KvzapTrainResult r = train_kvzap(*m, pool, o, [](const std::string& s) { fmt::print(stderr, "{}\n", s); });

  fmt::print("\nheld-out R^2 (mean over KV heads; {} tokens x {} heads from {} held-out texts)\n", r.n_val_tokens,
             hp.n_head_kv, r.n_val_texts);
  fmt::print("{:>5}{}{}\n", "layer", o.linear ? fmt::format("{:>9}", "linear") : "",
             o.mlp ? fmt::format("{:>9}", "mlp") : "");
  auto cell = [](double v) { return std::isnan(v) ? fmt::format("{:>9}", "local") : fmt::format("{:>9.3f}", v); };
  for (int il = 0; il < hp.n_layer; ++il)
    fmt::print("{:>5}{}{}\n", il, o.linear ? cell(r.r2_linear[il]) : "", o.mlp ? cell(r.r2_mlp[il]) : "");
  fmt::print("{:>5}{}{}\n", "mean", o.linear ? fmt::format("{:>9.3f}", r.r2_linear_mean) : "",
             o.mlp ? fmt::format("{:>9.3f}", r.r2_mlp_mean) : "");
  fmt::print("\ntargets: {} texts ({} training, {} held out), {} sampled tokens, {} forward tokens, {:.1f} s\n",
             r.n_train_texts + r.n_val_texts, r.n_train_texts, r.n_val_texts, r.n_train_tokens + r.n_val_tokens,
             r.forward_tokens, r.extract_seconds);
  if (r.corpus.contains("train"))
    for (const auto& [src, v] : r.corpus["train"].items())
      fmt::print("  train {:<10} {:>4} texts {:>8} tokens\n", src, v.value("texts", 0), v.value("tokens", 0));
  if (r.corpus.contains("validation"))
    for (const auto& [src, v] : r.corpus["validation"].items())
      fmt::print("  held  {:<10} {:>4} texts {:>8} tokens\n", src, v.value("texts", 0), v.value("tokens", 0));
  if (o.linear) {
    r.linear.save(dir_linear, *m, r.info(false));
    fmt::print("linear: {:.1f} s training, wrote {}\n", r.linear_seconds, dir_linear);
  }
  if (o.mlp) {
    r.mlp.save(dir_mlp, *m, r.info(true));
    fmt::print("mlp: {:.1f} s training, wrote {}\n", r.mlp_seconds, dir_mlp);
  }
  fmt::print("peak RSS {:.2f} GiB\n", peak_rss_gib());
  return 0;
}

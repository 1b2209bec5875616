#include "kvzap/train.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <limits>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "core/progress.h"
#include "kvzap/targets.h"
#include "model/session.h"

namespace kvz {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Per-layer pairs: x [n][d_in] bf16, y [n][n_out] f32.
struct PairSet {
  std::vector<std::vector<uint16_t>> x;
  std::vector<std::vector<float>> y;
  int64_t n = 0, texts = 0;
};

// Held-out R^2 per layer (mean over KV heads) and the mean over the trained layers'
// (layer, head); a sliding-window layer (never pruned, no targets) gets NaN.
std::vector<double> held_out_r2(const KvzapModel& km, const PairSet& val, int D, int H, ThreadPool& pool,
                                const HParams& hp, double& mean) {
  const int L = km.n_layer();
  std::vector<double> per_layer(L, 0.0);
  std::vector<std::vector<double>> cols(L);
  pool.parallel_for(L, [&](int64_t b, int64_t e, int) {
    std::vector<float> xf, pred, scratch;
    for (int64_t il = b; il < e; ++il) {
      if (hp.is_swa(static_cast<int>(il))) continue;
      xf.resize(static_cast<size_t>(val.n) * D);
      for (size_t i = 0; i < xf.size(); ++i) xf[i] = bf16_to_f32(val.x[il][i]);
      pred.resize(static_cast<size_t>(val.n) * H);
      km.predict(static_cast<int>(il), xf.data(), val.n, pred.data(), scratch);
      cols[il] = r2_per_column(val.y[il].data(), pred.data(), val.n, H);
    }
  });
  double sum = 0.0;
  int n = 0;
  for (int il = 0; il < L; ++il) {
    if (hp.is_swa(il)) {
      per_layer[il] = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    per_layer[il] = std::accumulate(cols[il].begin(), cols[il].end(), 0.0) / H;
    sum += per_layer[il];
    ++n;
  }
  mean = sum / std::max(n, 1);
  return per_layer;
}

}  // namespace

nlohmann::json KvzapTrainResult::info(bool is_mlp) const {
  nlohmann::json j;
  j["method"] = is_mlp ? "kvzap-mlp" : "kvzap-linear";
  j["target"] = "log(max(KVzip+ score, 1e-30)), KVzip+ per arXiv 2601.07891 Eq. 3";
  j["corpus"] = corpus;
  j["train_texts"] = n_train_texts;
  j["validation_texts"] = n_val_texts;
  j["train_tokens"] = n_train_tokens;
  j["validation_tokens"] = n_val_tokens;
  const int H = (is_mlp ? mlp : linear).n_out();
  j["train_pairs"] = n_train_tokens * H;
  j["validation_pairs"] = n_val_tokens * H;
  j["r2_per_layer"] = is_mlp ? r2_mlp : r2_linear;
  j["r2_mean"] = is_mlp ? r2_mlp_mean : r2_linear_mean;
  j["target_stats"] = target_stats;
  j["extract_seconds"] = extract_seconds;
  j["train_seconds"] = is_mlp ? mlp_seconds : linear_seconds;
  return j;
}

KvzapTrainResult train_kvzap(const Model& m, ThreadPool& pool, const KvzapTrainOptions& opt,
                             const std::function<void(const std::string&)>& log) {
  const HParams& hp = m.hp();
  const int L = hp.n_layer, D = hp.n_embd, H = hp.n_head_kv;
  if (opt.tokens < 1) fail("train-kvzap: --tokens must be positive, got {}", opt.tokens);
  if (!opt.linear && !opt.mlp) fail("train-kvzap: nothing to train (neither linear nor mlp)");
  if (opt.positions_per_text < 1) fail("train-kvzap: positions per text must be positive");
  const int64_t max_seq = 2 * opt.corpus.max_tokens + 256;
  if (hp.n_ctx_train > 0 && hp.n_ctx_train < max_seq)
    fail("train-kvzap: the model's context ({}) is shorter than the extended prompt of a {}-token text (~{})",
         hp.n_ctx_train, opt.corpus.max_tokens, max_seq);
  const int64_t val_tokens = opt.val_tokens > 0 ? opt.val_tokens : std::max<int64_t>(500, opt.tokens / 10);
  KvzapTrainResult res;
  auto note = [&](const std::string& s) {
    if (log) log(s);
  };

  // --- extraction ---
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<float> grams = output_gram_matrices(m, &pool);
  Corpus corpus(m.tokenizer(), opt.corpus);
  Session session(m, pool);
  std::mt19937_64 rng(opt.corpus.seed * 0x2545F4914F6CDD1Dull + 7);
  PairSet train, val;
  ProgressBar bar("kvzap targets", "tok", long_work_progress(opt.progress));
  const int64_t total = opt.tokens + val_tokens;
  auto collect = [&](bool is_val, PairSet& set, int64_t want) {
    set.x.resize(L);
    set.y.resize(L);
    for (int il = 0; il < L; ++il) {
      set.x[il].reserve(static_cast<size_t>(want) * D);
      set.y[il].reserve(static_cast<size_t>(want) * H);
    }
    CorpusText text;
    while (set.n < want) {
      if (!corpus.next(is_val, text)) {
        if (set.n == 0)
          fail("train-kvzap: the corpus has no {} text (sources: {})", is_val ? "validation" : "training",
               fmt::join(opt.corpus.sources, ", "));
        note(fmt::format("corpus exhausted: {} {} tokens instead of {}", set.n, is_val ? "validation" : "training",
                         want));
        break;
      }
      const int64_t n_text = static_cast<int64_t>(text.ids.size());
      const int64_t n_pos = std::min<int64_t>({opt.positions_per_text, n_text, want - set.n});
      std::vector<int64_t> pos(n_text);
      std::iota(pos.begin(), pos.end(), int64_t{0});
      std::shuffle(pos.begin(), pos.end(), rng);
      pos.resize(n_pos);
      std::sort(pos.begin(), pos.end());
      const RepeatSequence seq = kvzap_repeat_sequence(m, text.ids);
      const KvzapTargets t = kvzip_plus_targets(session, seq, pos, grams, opt.n_batch);
      for (int il = 0; il < L; ++il) {
        const float* xs = t.x.data() + static_cast<size_t>(il) * n_pos * D;
        for (int64_t i = 0; i < n_pos * D; ++i) set.x[il].push_back(f32_to_bf16(xs[i]));
        const float* ys = t.y.data() + static_cast<size_t>(il) * n_pos * H;
        set.y[il].insert(set.y[il].end(), ys, ys + n_pos * H);
      }
      set.n += n_pos;
      ++set.texts;
      res.forward_tokens += static_cast<int64_t>(seq.ids.size());
      bar.update(static_cast<double>(train.n + val.n), static_cast<double>(total));
    }
  };
  collect(true, val, val_tokens);
  collect(false, train, opt.tokens);
  bar.finish();
  res.extract_seconds = seconds_since(t0);
  res.corpus = corpus.describe();
  res.n_train_texts = train.texts;
  res.n_val_texts = val.texts;
  res.n_train_tokens = train.n;
  res.n_val_tokens = val.n;
  {
    // Distribution of the targets (log s+), all layers and heads of the training set.
    double sum = 0, ss = 0, lo = 1e30, hi = -1e30;
    int64_t n = 0, clamped = 0;
    for (int il = 0; il < L; ++il)
      for (float v : train.y[il]) {
        sum += v;
        ss += double{v} * v;
        lo = std::min(lo, double{v});
        hi = std::max(hi, double{v});
        clamped += v <= -69.0f;
        ++n;
      }
    const double mean = sum / std::max<int64_t>(n, 1);
    const double sd = std::sqrt(std::max(0.0, ss / std::max<int64_t>(n, 1) - mean * mean));
    res.target_stats = {{"mean", mean},
                        {"sd", sd},
                        {"min", lo},
                        {"max", hi},
                        {"clamped_fraction", static_cast<double>(clamped) / std::max<int64_t>(n, 1)}};
    note(fmt::format("targets log s+: mean {:.2f} sd {:.2f} min {:.2f} max {:.2f}, {} pairs at the 1e-30 clamp", mean,
                     sd, lo, hi, clamped));
  }
  note(fmt::format("targets: {} training + {} held-out texts, {} + {} sampled tokens ({} forward tokens) in {:.1f} s",
                   train.texts, val.texts, train.n, val.n, res.forward_tokens, res.extract_seconds));

  // --- ridge ---
  if (opt.linear) {
    const auto t1 = std::chrono::steady_clock::now();
    res.linear = KvzapModel::zeros(KvzapModel::Kind::Linear, L, D, H, 0);
    ProgressBar lb("kvzap linear", "layer", opt.progress && stderr_is_tty());
    std::mutex mu;
    std::atomic<int> done{0};
    pool.parallel_for(L, [&](int64_t b, int64_t e, int) {
      for (int64_t il = b; il < e; ++il) {
        if (hp.is_swa(static_cast<int>(il))) continue;  // never pruned: weights stay 0
        ridge_fit(train.x[il].data(), train.y[il].data(), train.n, D, H, opt.ridge_alpha,
                  res.linear.layer(static_cast<int>(il)));
        std::lock_guard<std::mutex> g(mu);
        lb.update(++done, L);
      }
    });
    lb.finish();
    res.linear_seconds = seconds_since(t1);
    res.r2_linear = held_out_r2(res.linear, val, D, H, pool, hp, res.r2_linear_mean);
    note(fmt::format("linear: trained in {:.1f} s, held-out R^2 mean {:.3f}", res.linear_seconds, res.r2_linear_mean));
  }

  // --- mlp ---
  if (opt.mlp) {
    const auto t1 = std::chrono::steady_clock::now();
    MlpTrainOptions mo = opt.mlp_opt;
    if (mo.hidden <= 0) mo.hidden = std::max(1, D / 8);
    res.mlp = KvzapModel::zeros(KvzapModel::Kind::Mlp, L, D, H, mo.hidden);
    ProgressBar mb("kvzap mlp", "epoch", long_work_progress(opt.progress));
    std::mutex mu;
    int64_t done = 0;
    int n_global = 0;
    for (int il = 0; il < L; ++il) n_global += !hp.is_swa(il);
    const int64_t total_epochs = int64_t{n_global} * mo.epochs;
    pool.parallel_for(L, [&](int64_t b, int64_t e, int) {
      for (int64_t il = b; il < e; ++il) {
        if (hp.is_swa(static_cast<int>(il))) continue;  // never pruned: weights stay 0
        MlpTrainOptions lo = mo;
        lo.seed = mo.seed + static_cast<uint64_t>(il);
        const MlpParams p = mlp_fit(train.x[il].data(), train.y[il].data(), train.n, D, H, lo, [&](int, double) {
          std::lock_guard<std::mutex> g(mu);
          mb.update(static_cast<double>(++done), static_cast<double>(total_epochs));
        });
        p.to_layer(res.mlp.layer(static_cast<int>(il)));
      }
    });
    mb.finish();
    res.mlp_seconds = seconds_since(t1);
    res.r2_mlp = held_out_r2(res.mlp, val, D, H, pool, hp, res.r2_mlp_mean);
    note(fmt::format("mlp: trained in {:.1f} s, held-out R^2 mean {:.3f}", res.mlp_seconds, res.r2_mlp_mean));
  }
  return res;
}

std::string kvzap_output_dir(const std::string& cache_root, const std::string& model_path, const std::string& kind) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(model_path);
  while (!p.empty() && !p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  std::string name = lower(fs::is_directory(p) ? p.filename().string() : p.stem().string());
  const std::string parent = lower(p.parent_path().filename().string());
  if (!fs::is_directory(p) && !parent.empty() && name.rfind(parent, 0) == 0) name = parent;
  return (fs::path(cache_root) / "kvzap" / (name + "-" + kind)).string();
}

}  // namespace kvz

// `kvzip bench`: end-to-end throughput in llama-bench's terms, so the two tables line up
// (bench/compare_llamacpp.py runs both). Cases:
//   ppN           prefill N tokens into an empty cache                     -> tokens/s
//   tgN@dD        N single-token decode steps over a cache of D tokens     -> tokens/s
//   kvzip[@dD]    prefill D (default --kvzip-depth) tokens, KVzip-score them, then for each --ratios r:
//                 prune to r and time tgN on the compressed cache; also scoring ÷ prefill
//   bandwidth     stream a buffer with the thread pool: the machine's read bandwidth (GB/s)
// Token ids are synthetic (deterministic, uniform over the vocabulary) as in llama-bench;
// timings exclude tokenization and sampling. Decode repetitions run on one prefilled cache
// that is truncated back to depth D between repetitions, so the prefill is paid once.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "kernels/types.h"
#include "kv/kvzap_pruner.h"
#include "kv/kvzip_context.h"
#include "common.h"
#include "kvzap_cli.h"
#include "model/model.h"
#include "model/session.h"

namespace {

using namespace kvz;
using clock_type = std::chrono::steady_clock;

double secs_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

struct Stat {
  double mean = 0, sd = 0;
};

// Sample mean and standard deviation (n-1), as llama-bench reports them.
Stat stat_of(const std::vector<double>& v) {
  Stat s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

// Deterministic, valid token ids: splitmix64 over [0, n_vocab).
std::vector<int32_t> synthetic_ids(int64_t n, int n_vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t x = seed;
  for (auto& id : ids) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    id = static_cast<int32_t>(z % static_cast<uint64_t>(n_vocab));
  }
  return ids;
}

// Peak resident set of this process since the last reset_peak_rss(), in bytes. Linux resets
// VmHWM on "5" > /proc/self/clear_refs; elsewhere this is getrusage's whole-process peak.
void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}
size_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return static_cast<size_t>(std::stoull(line.substr(6))) * 1024;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;
}
size_t process_peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += fmt::format("\\u{:04x}", c);
    else o += c;
  }
  return o + "\"";
}

// One row of the report. Optional fields are < 0 when they do not apply.
struct Result {
  std::string name;
  std::string kind;  // pp, tg, tg-kvzip, kvzip-score, bandwidth
  int64_t n_prompt = 0, n_gen = 0, depth = 0;
  std::vector<double> samples_s;  // wall time of each repetition
  std::vector<double> samples_rate;  // tokens/s (GB/s for bandwidth) of each repetition
  size_t kv_bytes = 0;               // KV bytes held when the timed work starts
  double kv_read_per_tok = -1;       // mean KV bytes read per decoded token
  double weight_read_per_tok = -1;
  double ratio = -1, ratio_true = -1;
  double prefill_s = -1, score_s = -1;  // kvzip-score (and the depth prefill of tg cases)
  double predict_share = -1, macs_share = -1;  // tg-kvzap: surrogate time / forward time; MACs / model MACs
  size_t peak_rss = 0;

  Stat rate() const { return stat_of(samples_rate); }
  // Bytes read per decoded token ÷ time per token, GB/s (decode cases only).
  double gbs_used() const {
    if (kv_read_per_tok < 0 || samples_rate.empty()) return -1;
    return (weight_read_per_tok + kv_read_per_tok) * rate().mean / 1e9;
  }
};

struct BenchSpec {
  std::string model;
  int threads = 0;
  int reps = 3;
  std::string cases = "pp512,pp4096,tg64@d0,tg64@d4096,tg64@d16384,kvzip,bandwidth";
  int64_t kvzip_depth = 16384;
  int64_t kvzip_gen = 64;
  std::string ratios = "0.5,0.3,0.1";
  int64_t n_ctx = 0;
  int64_t bandwidth_mib = 1024;
  uint64_t seed = 1234;
  std::string json_path;
  std::string kv_type = "f16";
  std::string kvzap_dir;          // kvzap case: surrogate folder ("" = default for the model)
  std::string kvzap_threshold = "-6";
  int64_t kvzap_window = 128;
  bool interleave = true;  // weights in the interleaved decode layout (LoadOptions::interleave)
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

class Bench {
 public:
  Bench(const BenchSpec& spec, const Model& m, ThreadPool& pool) : spec_(spec), m_(m), pool_(pool) {}

  void pp(int64_t n) {
    Result r;
    r.name = fmt::format("pp{}", n);
    r.kind = "pp";
    r.n_prompt = n;
    const auto ids = synthetic_ids(n, m_.hp().n_vocab, spec_.seed);
    Session s(m_, pool_, ctx_limit(n), parse_kv_type(spec_.kv_type));
    std::vector<float> logits;
    for (int rep = 0; rep < spec_.reps; ++rep) {
      s.reset();
      const auto t0 = clock_type::now();
      s.forward(ids, LogitsMode::Last, &logits);
      const double dt = secs_since(t0);
      r.samples_s.push_back(dt);
      r.samples_rate.push_back(static_cast<double>(n) / dt);
    }
    r.kv_bytes = s.cache().bytes_used();
    finish(std::move(r));
  }

  void tg(int64_t n_gen, int64_t depth) {
    Result r;
    r.name = fmt::format("tg{}@d{}", n_gen, depth);
    r.kind = "tg";
    r.n_gen = n_gen;
    r.depth = depth;
    Session s(m_, pool_, ctx_limit(depth + n_gen), parse_kv_type(spec_.kv_type));
    if (depth > 0) {
      const auto ids = synthetic_ids(depth, m_.hp().n_vocab, spec_.seed);
      ProgressBar bar(fmt::format("{} depth prefill", r.name), "tok", stderr_is_tty());
      const auto t0 = clock_type::now();
      s.forward(ids, LogitsMode::None, nullptr, 512,
                bar.callback());
      r.prefill_s = secs_since(t0);
    }
    time_decode(s, n_gen, r);
    finish(std::move(r));
  }

  void kvzip(int64_t depth) {
    ContextOptions co;
    co.kv_type = parse_kv_type(spec_.kv_type);
    co.n_ctx_max = ctx_limit(depth + spec_.kvzip_gen + co.scoring.chunk + 256);
    co.retain_full = true;  // prune at every ratio from one scoring pass
    KvzipContext ctx(m_, pool_, co);
    const auto ids = synthetic_ids(depth, m_.hp().n_vocab, spec_.seed);
    const bool tty = stderr_is_tty();

    Result sc;
    sc.name = fmt::format("kvzip-score@d{}", depth);
    sc.kind = "kvzip-score";
    sc.depth = depth;
    {
      ProgressBar bar(fmt::format("kvzip prefill {}", depth), "tok", tty);
      const auto t0 = clock_type::now();
      ctx.prefill_ids(ids, bar.callback());
      sc.prefill_s = secs_since(t0);
    }
    sc.kv_bytes = ctx.kv_bytes();
    {
      ProgressBar bar("kvzip scoring", "tok", tty);
      const auto t0 = clock_type::now();
      ctx.score(bar.callback());
      sc.score_s = secs_since(t0);
    }
    // One sample: the ratio of the two times (the number the issue's target is stated in).
    sc.samples_s = {sc.score_s};
    sc.samples_rate = {sc.score_s / sc.prefill_s};
    finish(std::move(sc));

    for (const std::string& rs : split_list(spec_.ratios)) {
      Result r;
      r.ratio = std::stod(rs);
      r.name = fmt::format("tg{}@d{}+kvzip{}", spec_.kvzip_gen, depth, rs);
      r.kind = "tg-kvzip";
      r.n_gen = spec_.kvzip_gen;
      r.depth = depth;
      SelectOptions so;
      so.ratio = r.ratio;
      const PruneReport pr = ctx.prune(so);
      r.ratio_true = pr.ratio_true;
      time_decode(ctx.session(), spec_.kvzip_gen, r);
      finish(std::move(r));
    }
  }

  // KVzap streaming eviction: the depth prefill (batches of 512) and kvzip_gen decode steps,
  // each followed by a prune. Rate: decode tok/s; notes: kept fraction of all pairs that
  // entered, the surrogate's share of the forward time (predict wall time / prefill + decode
  // wall time, same run) and of the matmul MACs per token.
  void kvzap(int64_t depth) {
    const KvzapOptions ko{cli::parse_threshold(spec_.kvzap_threshold), spec_.kvzap_window};
    const std::string dir = kvzap_default_dir(spec_.kvzap_dir, spec_.model, cli::kvzip_cache_root());
    const KvzapModel sur = KvzapModel::load(dir, m_);
    Result r;
    r.name = fmt::format("tg{}@d{}+kvzap{}", spec_.kvzip_gen, depth, spec_.kvzap_threshold);
    r.kind = "tg-kvzap";
    r.n_gen = spec_.kvzip_gen;
    r.depth = depth;
    r.weight_read_per_tok = static_cast<double>(m_.weight_bytes_per_token());
    r.macs_share = static_cast<double>(sur.macs_per_token()) / static_cast<double>(model_matmul_macs_per_token(m_.hp()));
    const auto ids = synthetic_ids(depth, m_.hp().n_vocab, spec_.seed);
    const auto gen = synthetic_ids(spec_.kvzip_gen, m_.hp().n_vocab, spec_.seed + 1);
    Session s(m_, pool_, ctx_limit(depth + spec_.kvzip_gen), parse_kv_type(spec_.kv_type));
    std::vector<float> logits;
    double predict_s = 0, forward_s = 0, kv_read = 0;
    for (int rep = 0; rep < spec_.reps; ++rep) {
      s.reset();
      KvzapPruner p(s, sur, ko);
      auto t0 = clock_type::now();
      p.forward(ids, LogitsMode::Last, &logits, 512);
      r.prefill_s = secs_since(t0);
      r.kv_bytes = s.cache().bytes_used();
      t0 = clock_type::now();
      for (int64_t it = 0; it < spec_.kvzip_gen; ++it)
        p.forward(std::span<const int32_t>(&gen[it], 1), LogitsMode::Last, &logits, 1);
      const double dt = secs_since(t0);
      kv_read = 0.5 * static_cast<double>(r.kv_bytes + s.cache().bytes_used());
      r.samples_s.push_back(dt);
      r.samples_rate.push_back(static_cast<double>(spec_.kvzip_gen) / dt);
      predict_s += p.stats().predict_seconds;
      forward_s += r.prefill_s + dt;
      r.ratio_true = p.stats().kept_fraction();
    }
    r.kv_read_per_tok = kv_read;
    r.predict_share = forward_s > 0 ? predict_s / forward_s : -1;
    finish(std::move(r));
  }

  // Streams a buffer of bandwidth_mib MiB, split across the pool, and reports GB/s per pass.
  // Plain 64-bit adds with independent accumulators: the compiler vectorises them, and two
  // cores at one 16-byte load per cycle far exceed DRAM bandwidth, so memory is the limit.
  void bandwidth() {
    Result r;
    r.name = "bandwidth";
    r.kind = "bandwidth";
    const size_t n = static_cast<size_t>(spec_.bandwidth_mib) * (1u << 20) / sizeof(uint64_t);
    std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
    pool_.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint64_t>(i);
    });
    std::vector<uint64_t> sink(static_cast<size_t>(pool_.size()) * 8);
    const int passes = std::max(spec_.reps, 5);
    for (int rep = 0; rep < passes; ++rep) {
      const auto t0 = clock_type::now();
      pool_.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e, int ith) {
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        const uint64_t* p = buf.get();
        int64_t i = b;
        for (; i + 8 <= e; i += 8) {
          a0 += p[i], a1 += p[i + 1], a2 += p[i + 2], a3 += p[i + 3];
          a4 += p[i + 4], a5 += p[i + 5], a6 += p[i + 6], a7 += p[i + 7];
        }
        for (; i < e; ++i) a0 += p[i];
        sink[static_cast<size_t>(ith) * 8] += a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
      });
      const double dt = secs_since(t0);
      r.samples_s.push_back(dt);
      r.samples_rate.push_back(static_cast<double>(n * sizeof(uint64_t)) / dt / 1e9);
    }
    uint64_t chk = 0;
    for (uint64_t v : sink) chk += v;
    KVZ_ASSERT(chk != 1, "bandwidth probe checksum {}", chk);  // keeps the reads alive
    bandwidth_gbs_ = *std::max_element(r.samples_rate.begin(), r.samples_rate.end());
    finish(std::move(r));
  }

  const std::vector<Result>& results() const { return results_; }
  double bandwidth_gbs() const { return bandwidth_gbs_; }

 private:
  // The position limit for a case: --ctx when given, else what the case needs (beyond the
  // model's training context if necessary, as llama-bench allows).
  int64_t ctx_limit(int64_t need) const { return spec_.n_ctx > 0 ? spec_.n_ctx : std::max<int64_t>(need, 1); }

  // Times n_gen single-token forward passes `reps` times from the session's current state,
  // restoring that state after each repetition. Logits of the last token are computed (as in
  // real decoding) but not sampled; the next input is a synthetic id.
  void time_decode(Session& s, int64_t n_gen, Result& r) {
    const Session::Checkpoint start = s.checkpoint();
    r.kv_bytes = s.cache().bytes_used();
    r.weight_read_per_tok = static_cast<double>(m_.weight_bytes_per_token());
    const auto ids = synthetic_ids(n_gen, m_.hp().n_vocab, spec_.seed + 1);
    std::vector<float> logits;
    double kv_end = 0;
    for (int rep = 0; rep < spec_.reps; ++rep) {
      const auto t0 = clock_type::now();
      for (int64_t it = 0; it < n_gen; ++it) s.forward(std::span<const int32_t>(&ids[it], 1), LogitsMode::Last, &logits);
      const double dt = secs_since(t0);
      kv_end = static_cast<double>(s.cache().bytes_used());
      s.restore(start);
      r.samples_s.push_back(dt);
      r.samples_rate.push_back(static_cast<double>(n_gen) / dt);
    }
    // Step it reads the cache as it stands after appending its own row, so the mean over the
    // steps is the mean of the byte counts before and after one repetition (plus half a row).
    r.kv_read_per_tok = 0.5 * (static_cast<double>(r.kv_bytes) + kv_end);
  }

  void finish(Result r) {
    r.peak_rss = peak_rss_bytes();
    print_row(r);
    results_.push_back(std::move(r));
  }

  void print_row(const Result& r) const {
    const Stat st = r.rate();
    std::string unit = r.kind == "bandwidth" ? "GB/s" : r.kind == "kvzip-score" ? "x prefill" : "tok/s";
    std::string extra;
    if (r.kind == "kvzip-score")
      extra = fmt::format("prefill {:.2f} s, scoring {:.2f} s", r.prefill_s, r.score_s);
    if (r.gbs_used() > 0) {
      extra = fmt::format("{:.2f} ms/tok, {:.1f} GB/s read", 1e3 / st.mean, r.gbs_used());
      if (bandwidth_gbs_ > 0) extra += fmt::format(" ({:.0f}% of peak)", 100 * r.gbs_used() / bandwidth_gbs_);
    }
    if (r.ratio_true >= 0) extra += fmt::format(", kept {:.1f}%", 100 * r.ratio_true);
    if (r.predict_share >= 0)
      extra += fmt::format(", surrogate {:.2f}% of forward time, {:.3f}% of matmul MACs, prefill {:.2f} s",
                           100 * r.predict_share, 100 * r.macs_share, r.prefill_s);
    fmt::print("| {:<24} | {:>9.2f} ± {:<7.2f} {:<9} | {:>9.1f} MiB KV | {:>7.1f} MiB RSS | {}\n", r.name, st.mean,
               st.sd, unit, static_cast<double>(r.kv_bytes) / (1 << 20), static_cast<double>(r.peak_rss) / (1 << 20),
               extra);
    std::fflush(stdout);
  }

  const BenchSpec& spec_;
  const Model& m_;
  ThreadPool& pool_;
  std::vector<Result> results_;
  double bandwidth_gbs_ = 0;
};

std::string num(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : "null"; }

std::string to_json(const BenchSpec& spec, const Model& m, const ThreadPool& pool, const Bench& b, double total_s) {
  const HParams& hp = m.hp();
  std::string o = "{\n";
  o += fmt::format("  \"tool\": \"kvzip bench\",\n  \"model\": {},\n  \"model_file_bytes\": {},\n", json_str(spec.model),
                   m.file().file_size());
  o += fmt::format("  \"n_layer\": {}, \"n_head_kv\": {}, \"d_head\": {}, \"kv_dtype\": \"{}\",\n", hp.n_layer,
                   hp.n_head_kv, hp.d_head, spec.kv_type);
  o += fmt::format("  \"weight_bytes_per_token\": {},\n  \"threads\": {},\n  \"reps\": {},\n  \"cpu\": {},\n"
                   "  \"kernels\": \"{}\",\n",
                   m.weight_bytes_per_token(), pool.size(), spec.reps, json_str(kvz::cli::cpu_model_name()), kernel_isa());
  o += fmt::format("  \"bandwidth_gbs\": {},\n  \"peak_rss_bytes\": {},\n  \"wall_s\": {},\n  \"results\": [\n",
                   b.bandwidth_gbs() > 0 ? num(b.bandwidth_gbs()) : "null", process_peak_rss_bytes(), num(total_s));
  const auto& rs = b.results();
  for (size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    const Stat st = r.rate();
    auto arr = [](const std::vector<double>& v) {
      std::string s = "[";
      for (size_t j = 0; j < v.size(); ++j) s += (j ? ", " : "") + num(v[j]);
      return s + "]";
    };
    auto opt = [](double v) { return v < 0 ? std::string("null") : num(v); };
    o += fmt::format(
        "    {{\"case\": {}, \"kind\": \"{}\", \"n_prompt\": {}, \"n_gen\": {}, \"depth\": {}, \"mean\": {}, \"sd\": {}, "
        "\"unit\": \"{}\", \"samples\": {}, \"samples_s\": {}, \"kv_bytes\": {}, \"kv_read_bytes_per_tok\": {}, "
        "\"weight_bytes_per_tok\": {}, \"gbs_used\": {}, \"ratio\": {}, \"ratio_true\": {}, \"prefill_s\": {}, "
        "\"score_s\": {}, \"predict_share\": {}, \"macs_share\": {}, \"peak_rss_bytes\": {}}}{}\n",
        json_str(r.name), r.kind, r.n_prompt, r.n_gen, r.depth, num(st.mean), num(st.sd),
        r.kind == "bandwidth" ? "GB/s" : r.kind == "kvzip-score" ? "score_s/prefill_s" : "tok/s", arr(r.samples_rate),
        arr(r.samples_s), r.kv_bytes, opt(r.kv_read_per_tok), opt(r.weight_read_per_tok), opt(r.gbs_used()),
        opt(r.ratio), opt(r.ratio_true), opt(r.prefill_s), opt(r.score_s), opt(r.predict_share), opt(r.macs_share), r.peak_rss, i + 1 < rs.size() ? "," : "");
  }
  o += "  ]\n}\n";
  return o;
}

int run_bench(const BenchSpec& spec) {
  if (spec.reps < 1) fail("-r {}: need at least one repetition", spec.reps);
  const auto t_start = clock_type::now();
  LoadOptions lo;
  lo.interleave = spec.interleave;
  auto m = Model::load(spec.model, {}, lo);
  ThreadPool pool(spec.threads);
  Bench b(spec, *m, pool);

  // Warm-up: fault in the memory-mapped weights and the pool's threads (llama-bench does a
  // warm-up run too).
  {
    Session s(*m, pool, 64);
    std::vector<float> logits;
    s.forward(synthetic_ids(16, m->hp().n_vocab, spec.seed), LogitsMode::Last, &logits);
  }
  fmt::print("kvzip bench: {} | {} threads | {} repetitions | KV {} | kernels {} | weights read per token {:.1f} MiB "
             "({:.1f} MiB interleaved)\n",
             spec.model, pool.size(), spec.reps, spec.kv_type, kernel_isa(), static_cast<double>(m->weight_bytes_per_token()) / (1 << 20),
             static_cast<double>(m->interleaved_bytes()) / (1 << 20));
  fmt::print("| {:<24} | {:^29} | {:^16} | {:^15} | notes\n", "case", "mean ± sd", "KV bytes", "peak RSS");

  const std::regex re_pp(R"(pp(\d+))"), re_tg(R"(tg(\d+)(?:@d(\d+))?)"),
      re_kvzip(R"(kvzip@d(\d+))"), re_kvzap(R"(kvzap(?:@d(\d+))?)");
  auto cases = split_list(spec.cases);
  // The bandwidth probe runs first so that decode rows can be set against it.
  std::stable_partition(cases.begin(), cases.end(), [](const std::string& c) { return c == "bandwidth"; });
  for (const std::string& c : cases) {
    std::smatch mt;
    reset_peak_rss();  // each case's peak RSS is its own
    if (c == "bandwidth") {
      b.bandwidth();
    } else if (c == "kvzip") {
      b.kvzip(spec.kvzip_depth);
    } else if (std::regex_match(c, mt, re_kvzap)) {
      b.kvzap(mt[1].matched ? std::stoll(mt[1]) : spec.kvzip_depth);
    } else if (std::regex_match(c, mt, re_kvzip)) {
      b.kvzip(std::stoll(mt[1]));
    } else if (std::regex_match(c, mt, re_pp)) {
      b.pp(std::stoll(mt[1]));
    } else if (std::regex_match(c, mt, re_tg)) {
      b.tg(std::stoll(mt[1]), mt[2].matched ? std::stoll(mt[2]) : 0);
    } else {
      fail("--cases: unknown case '{}'; expected ppN, tgN, tgN@dD, kvzip, kvzip@dD, kvzap, kvzap@dD or bandwidth", c);
    }
  }
  const double total_s = secs_since(t_start);
  fmt::print("process peak RSS {:.1f} MiB; {:.1f} s in all\n",
             static_cast<double>(process_peak_rss_bytes()) / (1 << 20), total_s);
  if (!spec.json_path.empty()) {
    std::ofstream out(spec.json_path);
    if (!out) fail("--json {}: cannot open for writing", spec.json_path);
    out << to_json(spec, *m, pool, b, total_s);
    if (!out) fail("--json {}: write failed", spec.json_path);
  }
  return 0;
}

}  // namespace

// Registers `kvzip bench`. Options are stored in the subcommand (no globals) and read back
// by run_bench_command() after parsing.
void add_bench_command(CLI::App& app) {
  static const BenchSpec def;
  auto* sub = app.add_subcommand(
      "bench", "throughput benchmark in llama-bench's terms: prefill (ppN), decode at a context depth (tgN@dD), "
               "decode after KVzip pruning, scoring ÷ prefill time, KV bytes, peak RSS, memory read bandwidth");
  const char* home = std::getenv("HOME");
  sub->add_option("-m,--model", "GGUF model file")
      ->default_val(std::string(home ? home : ".") + "/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
  sub->add_option("-t,--threads", "threads (0: all cores)")->default_val(def.threads)->check(CLI::Range(0, 1024));
  sub->add_option("-r,--reps", "repetitions per case (mean ± sd)")->default_val(def.reps)->check(CLI::Range(1, 1000));
  sub->add_option("--cases", "comma-separated: ppN, tgN@dD, kvzip (at --kvzip-depth), kvzip@dD, kvzap[@dD] (--threshold), bandwidth")->default_val(def.cases);
  sub->add_option("--kvzip-depth", "context tokens for the kvzip case")->default_val(def.kvzip_depth)
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 22));
  sub->add_option("--kvzip-gen", "decode steps timed after each pruning")->default_val(def.kvzip_gen)
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  sub->add_option("--ratios", "KVzip keep ratios for the kvzip case, comma-separated")->default_val(def.ratios);
  sub->add_option("-c,--ctx", "context limit in tokens (0: whatever each case needs, even beyond the model's "
                              "training context, as llama-bench allows)")
      ->default_val(def.n_ctx)->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  sub->add_option("--bandwidth-mib", "buffer size of the bandwidth probe, MiB")->default_val(def.bandwidth_mib)
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 16));
  sub->add_option("--seed", "seed of the synthetic token ids")->default_val(def.seed);
  sub->add_option("--kvzap", "kvzap case: surrogate folder (default ~/.cache/kvzip/kvzap/<model>-mlp, else -linear)");
  sub->add_option("--threshold", "kvzap case: eviction threshold (log-score)")->default_val(def.kvzap_threshold);
  sub->add_option("--window", "kvzap case: protected recent tokens")->default_val(def.kvzap_window)
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  sub->add_option("--json", "also write the results as JSON to this file");
  sub->add_option("--kv-type", "KV cache storage: f16 (as llama-bench's default) or q8_0")
      ->default_val(def.kv_type)->check(CLI::IsMember({"f16", "q8_0"}));
  sub->add_option("--weight-layout", "rows: the file's row-major weights in place; interleaved: copied into the kernels' "
                                     "interleaved layout at load (4-row groups; Q4_K in 8 on AVX2, 16 on AVX-512; default)")
      ->default_val("interleaved")->check(CLI::IsMember({"rows", "interleaved"}));
}

int run_bench_command(const CLI::App& app) {
  const CLI::App* sub = app.get_subcommand("bench");
  BenchSpec s;
  s.model = sub->get_option("--model")->as<std::string>();
  s.threads = sub->get_option("--threads")->as<int>();
  s.reps = sub->get_option("--reps")->as<int>();
  s.cases = sub->get_option("--cases")->as<std::string>();
  s.kvzip_depth = sub->get_option("--kvzip-depth")->as<int64_t>();
  s.kvzip_gen = sub->get_option("--kvzip-gen")->as<int64_t>();
  s.ratios = sub->get_option("--ratios")->as<std::string>();
  s.kv_type = sub->get_option("--kv-type")->as<std::string>();
  s.n_ctx = sub->get_option("--ctx")->as<int64_t>();
  s.bandwidth_mib = sub->get_option("--bandwidth-mib")->as<int64_t>();
  s.seed = sub->get_option("--seed")->as<uint64_t>();
  if (sub->get_option("--kvzap")->count() > 0) s.kvzap_dir = sub->get_option("--kvzap")->as<std::string>();
  s.kvzap_threshold = sub->get_option("--threshold")->as<std::string>();
  cli::parse_threshold(s.kvzap_threshold);  // bad input fails before the model loads
  s.kvzap_window = sub->get_option("--window")->as<int64_t>();
  s.interleave = sub->get_option("--weight-layout")->as<std::string>() == "interleaved";
  if (sub->get_option("--json")->count() > 0) s.json_path = sub->get_option("--json")->as<std::string>();
  for (const std::string& r : split_list(s.ratios)) {
    char* end = nullptr;
    const double v = std::strtod(r.c_str(), &end);
    if (end == r.c_str() || *end != '\0' || !(v > 0 && v <= 1)) fail("--ratios: '{}' is not a number in (0, 1]", r);
  }
  return run_bench(s);
}

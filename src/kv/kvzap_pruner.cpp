#include "kv/kvzap_pruner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"

namespace kvz {

double KvzapStats::kept_fraction(int il) const {
  const int64_t e = entered[static_cast<size_t>(il)];
  return e > 0 ? 1.0 - static_cast<double>(evicted[static_cast<size_t>(il)]) / static_cast<double>(e) : 1.0;
}

double KvzapStats::kept_fraction() const {
  int64_t e = 0, v = 0;
  for (size_t il = 0; il < entered.size(); ++il) e += entered[il], v += evicted[il];
  return e > 0 ? 1.0 - static_cast<double>(v) / static_cast<double>(e) : 1.0;
}

KvzapPruner::KvzapPruner(Session& session, const KvzapModel& surrogate, KvzapOptions opt)
    : session_(session), surrogate_(surrogate), opt_(opt), n_head_kv_(session.model().hp().n_head_kv) {
  const HParams& hp = session.model().hp();
  if (surrogate.n_layer() != hp.n_layer || surrogate.n_out() != hp.n_head_kv || surrogate.d_in() != hp.n_embd)
    fail("KVzap surrogate has {} layers x {} heads from {} inputs; the model needs {} x {} from {}",
                surrogate.n_layer(), surrogate.n_out(), surrogate.d_in(), hp.n_layer, hp.n_head_kv, hp.n_embd);
  if (opt_.window < 0) fail("KVzap window must be >= 0, got {}", opt_.window);
  heads_.resize(static_cast<size_t>(hp.n_layer) * n_head_kv_);
  stats_.entered.assign(hp.n_layer, 0);
  stats_.evicted.assign(hp.n_layer, 0);
  reset();
  session_.set_observer(this);
}

KvzapPruner::~KvzapPruner() { session_.set_observer(nullptr); }

void KvzapPruner::reset() {
  // Rows already in the cache (none after Session::reset) count as decided and kept.
  for (int il = 0; il < surrogate_.n_layer(); ++il)
    for (int ih = 0; ih < n_head_kv_ && !session_.model().hp().is_swa(il); ++ih) {
      HeadState& s = head(il, ih);
      const int64_t len = session_.cache().seg(il, ih).len;
      s.score.assign(len, 0.0f);
      s.kept.assign(len, 1);
      s.first_open = len;
    }
  query_floor_ = -1;
}

void KvzapPruner::sync(int il, int ih) {
  // A sliding-window layer drops rows from the front; restore() truncates from the back.
  HeadState& s = head(il, ih);
  const auto len = static_cast<size_t>(session_.cache().seg(il, ih).len);
  if (s.score.size() <= len) return;
  if (session_.model().hp().is_swa(il)) {
    const auto drop = static_cast<std::ptrdiff_t>(s.score.size() - len);
    s.score.erase(s.score.begin(), s.score.begin() + drop);
    s.kept.erase(s.kept.begin(), s.kept.begin() + drop);
    s.first_open = std::max<int64_t>(0, s.first_open - drop);
  } else {
    s.score.resize(len);
    s.kept.resize(len);
    s.first_open = std::min<int64_t>(s.first_open, static_cast<int64_t>(len));
  }
}

void KvzapPruner::on_attn_input(int il, const float* h, int64_t n, const KvCache& cache, ThreadPool& pool) {
  // Sliding-window layers keep their rolling window, as with every other method: no
  // prediction, no eviction (and no pairs counted in the kept fraction).
  if (session_.model().hp().is_swa(il)) return;
  const auto t0 = std::chrono::steady_clock::now();
  out_.resize(static_cast<size_t>(n) * n_head_kv_);
  surrogate_.predict(il, h, n, out_.data(), scratch_, &pool);
  stats_.predict_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int ih = 0; ih < n_head_kv_; ++ih) {
    sync(il, ih);
    HeadState& s = head(il, ih);
    KVZ_ASSERT(static_cast<int64_t>(s.score.size()) == cache.seg(il, ih).len, "kvzap rows {} != cache rows {}",
               s.score.size(), cache.seg(il, ih).len);
    for (int64_t t = 0; t < n; ++t) {
      s.score.push_back(out_[static_cast<size_t>(t) * n_head_kv_ + ih]);
      s.kept.push_back(0);
    }
  }
  stats_.entered[static_cast<size_t>(il)] += n * n_head_kv_;
}

int64_t KvzapPruner::prune() {
  KvCache& cache = session_.cache();
  const int64_t limit = session_.n_pos() - opt_.window;  // rows at pos < limit left the window
  int64_t removed = 0;
  for (int il = 0; il < surrogate_.n_layer(); ++il)
    for (int ih = 0; ih < n_head_kv_ && !session_.model().hp().is_swa(il); ++ih) {
      sync(il, ih);
      HeadState& s = head(il, ih);
      const HeadSegment& seg = cache.seg(il, ih);
      const auto len = static_cast<int64_t>(s.score.size());
      keep_.assign(static_cast<size_t>(len), 1);
      int64_t n_evict = 0;
      bool open_seen = false;  // an undecided row was left (frozen by a query)
      int64_t first_open = s.first_open;
      for (int64_t r = s.first_open; r < len && seg.pos[r] < limit; ++r) {
        if (s.kept[r]) continue;
        const int32_t pos = seg.pos[r];
        if (pos < query_floor_) {  // a row from before the query: frozen
          if (!open_seen) first_open = r, open_seen = true;
          continue;
        }
        if (pos >= protect_below_ && s.score[r] < opt_.threshold) {
          keep_[r] = 0;
          ++n_evict;
        } else {
          s.kept[r] = 1;
        }
      }
      if (n_evict > 0) {
        cache.remove_rows(il, ih, keep_.data());
        int64_t w = 0;
        for (int64_t r = 0; r < len; ++r) {
          if (!keep_[r]) continue;
          s.score[w] = s.score[r];
          s.kept[w] = s.kept[r];
          ++w;
        }
        s.score.resize(w);
        s.kept.resize(w);
        stats_.evicted[static_cast<size_t>(il)] += n_evict;
        removed += n_evict;
      }
      // Advance over the decided prefix (only rows before the first evicted one, which did
      // not move, or all of it when nothing moved).
      if (!open_seen) {
        first_open = s.first_open;
        while (first_open < static_cast<int64_t>(s.kept.size()) && s.kept[first_open]) ++first_open;
      }
      s.first_open = first_open;
    }
  return removed;
}

void KvzapPruner::forward(std::span<const int32_t> tokens, LogitsMode mode, std::vector<float>* logits,
                          int64_t n_batch) {
  const HParams& hp = session_.model().hp();
  n_batch = std::max<int64_t>(1, n_batch);
  const auto n = static_cast<int64_t>(tokens.size());
  if (mode == LogitsMode::All) logits->resize(static_cast<size_t>(n) * hp.n_vocab);
  std::vector<float> part;
  for (int64_t b = 0; b < n; b += n_batch) {
    const int64_t m = std::min(n_batch, n - b);
    const bool last = b + m == n;
    if (mode == LogitsMode::All) {
      session_.forward(tokens.subspan(b, m), LogitsMode::All, &part, m);
      std::copy(part.begin(), part.end(), logits->begin() + b * hp.n_vocab);
    } else {
      session_.forward(tokens.subspan(b, m), last ? mode : LogitsMode::None, last ? logits : nullptr, m);
    }
    prune();
  }
}

void KvzapPruner::begin_query() {
  // Rows of one head are in position order, so "before the query" is a position bound.
  query_floor_ = session_.n_pos();
}

void KvzapPruner::end_query() {
  // Session::restore truncated every head from the back (sliding-window layers included:
  // their dropped rows come back from the snapshot), so the scores are cut the same way.
  query_floor_ = -1;
  for (int il = 0; il < surrogate_.n_layer(); ++il)
    for (int ih = 0; ih < n_head_kv_ && !session_.model().hp().is_swa(il); ++ih) {  // local layers: no state
      HeadState& s = head(il, ih);
      const auto len = static_cast<size_t>(session_.cache().seg(il, ih).len);
      KVZ_ASSERT(s.score.size() >= len, "end_query: {} scores for {} rows (restore to the begin_query checkpoint)",
                 s.score.size(), len);
      s.score.resize(len);
      s.kept.resize(len);
      s.first_open = std::min<int64_t>(s.first_open, static_cast<int64_t>(len));
    }
}

float KvzapPruner::score(int il, int ih, int64_t slot) const {
  return heads_[static_cast<size_t>(il) * n_head_kv_ + ih].score[static_cast<size_t>(slot)];
}

int64_t model_matmul_macs_per_token(const HParams& hp) {
  const int64_t d = hp.n_embd, dq = int64_t{hp.n_head} * hp.d_head, dkv = int64_t{hp.n_head_kv} * hp.d_head;
  return hp.n_layer * (2 * d * dq + 2 * d * dkv + 3 * d * hp.n_ff) + d * hp.n_vocab;
}

std::string kvzap_default_dir(const std::string& dir, const std::string& model_path, const std::string& cache_root) {
  namespace fs = std::filesystem;
  if (!dir.empty()) {
    if (!fs::exists(fs::path(dir) / "config.json"))
      fail("--kvzap {}: no config.json there (expected a KVzap surrogate folder; make one with `kvzip "
                  "train-kvzap -m MODEL`)",
                  dir);
    return dir;
  }
  fs::path p(model_path);
  std::string stem = fs::is_directory(p) ? p.filename().string() : p.stem().string();
  if (stem.empty()) stem = p.parent_path().filename().string();
  const fs::path root = fs::path(cache_root) / "kvzap";
  std::vector<std::string> tried;
  // Our default model file is named after its pull name's family; accept both the full
  // stem and its leading pull-name part (e.g. "smollm2-135m" for "smollm2-135m-instruct-q4_1").
  std::vector<std::string> stems = {stem, fs::path(model_path).parent_path().filename().string()};
  for (const auto& s : stems) {
    if (s.empty()) continue;
    for (const char* kind : {"-mlp", "-linear"}) {
      const fs::path c = root / (s + kind);
      if (fs::exists(c / "config.json")) return c.string();
      tried.push_back(c.string());
    }
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  fail("no KVzap surrogate for {} (looked for {}); train one with `kvzip train-kvzap -m {}` or pass --kvzap DIR",
              model_path, list, model_path);
}

}  // namespace kvz

#include "kv/press.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "kernels/attention.h"

namespace kvz {

int32_t PressInput::token(int64_t row) const {
  KVZ_ASSERT(row >= 0 && row < n_seq(), "row {} outside the observed sequence of {}", row, n_seq());
  if (row < n_sys) return sys_ids[row];
  if (row < n_full()) return ctx_ids[row - n_sys];
  return question_ids[row - n_full()];
}

namespace {

// Passes a row observer the global layers only. A sliding-window layer's cache holds just
// its window, so its rows are not the sequence's rows; those layers are never evicted, and
// every press leaves their scores at 0.
class GlobalLayers final : public LayerObserver {
 public:
  GlobalLayers(RowObserver& o, const HParams& hp) : o_(o), hp_(hp) {}
  void on_layer(int il, const float* q, int64_t n, const KvCache& c, ThreadPool& p) override {
    if (!hp_.is_swa(il)) o_.on_layer(il, q, n, c, p);
  }
  void on_attn_input(int il, const float* h, int64_t n, const KvCache& c, ThreadPool& p) override {
    if (!hp_.is_swa(il)) o_.on_attn_input(il, h, n, c, p);
  }

 private:
  RowObserver& o_;
  const HParams& hp_;
};

}  // namespace

void observe_rows(PressInput& in, int64_t from, RowObserver& obs) {
  Session& s = in.session;
  const HParams& hp = s.model().hp();
  const int64_t n_full = in.n_full(), n_seq = in.n_seq();
  KVZ_ASSERT(from >= 0 && from < n_seq, "observe_rows: start row {} outside [0, {})", from, n_seq);
  const std::vector<int64_t> lens = s.cache().lengths();
  for (int il = 0; il < hp.n_layer; ++il)
    for (int ih = 0; ih < hp.n_head_kv && !hp.is_swa(il); ++ih)
      if (s.cache().seg(il, ih).len != n_full)
        fail("press scoring needs the unpruned context ({} rows expected, a head has {})", n_full,
             s.cache().seg(il, ih).len);
  KVZ_ASSERT(s.n_pos() == n_full, "position counter {} != cache length {}", s.n_pos(), n_full);
  // Restored afterwards. With sliding-window layers the re-run rows of the global layers
  // may come out in the last bits differently (the windows are rolled at other points, so
  // attention tiles fall elsewhere), so every head is copied and put back exactly; without
  // them a re-run row reproduces its K/V and truncation suffices.
  const bool windows = !hp.swa_layers.empty();
  const int64_t n_pos0 = s.n_pos();
  const KvCache::Snapshot before =
      s.cache().snapshot(std::vector<uint8_t>(hp.n_layer, windows ? uint8_t{1} : uint8_t{0}));
  int64_t keep = std::min(from, n_full);
  // Re-running row r of a sliding-window layer needs that layer's rows (r - n_swa, r); the
  // cache keeps only about one window before n_full. When those are gone, re-run the whole
  // prefix (without the observer): exact, at the cost of one more prefill.
  for (int il = 0; il < hp.n_layer && keep > 0; ++il)
    if (hp.is_swa(il)) {
      const HeadSegment& sg = s.cache().seg(il, 0);
      const int64_t first = sg.len > 0 ? sg.pos[0] : n_full;
      if (first > std::max<int64_t>(0, keep - hp.n_swa)) keep = 0;
    }
  std::vector<int64_t> cut(lens.size(), keep);
  for (int il = 0; il < hp.n_layer; ++il)  // a window layer keeps its rows before `keep`
    if (hp.is_swa(il))
      for (int ih = 0; ih < hp.n_head_kv; ++ih) {
        const HeadSegment& sg = s.cache().seg(il, ih);
        cut[static_cast<size_t>(il) * hp.n_head_kv + ih] =
            std::lower_bound(sg.pos.get(), sg.pos.get() + sg.len, static_cast<int32_t>(keep)) - sg.pos.get();
      }
  s.cache().truncate(cut);
  s.set_n_pos(keep);
  std::vector<int32_t> ids;
  for (int64_t r = keep; r < from; ++r) ids.push_back(in.token(r));  // rows before the observed ones
  if (!ids.empty()) s.forward(ids, LogitsMode::None, nullptr);
  ids.clear();
  for (int64_t r = from; r < n_seq; ++r) ids.push_back(in.token(r));
  GlobalLayers global(obs, hp);
  s.set_observer(&global);
  struct Unhook {
    Session& s;
    ~Unhook() { s.set_observer(nullptr); }
  } unhook{s};
  s.forward(ids, LogitsMode::None, nullptr, 512, in.progress);
  s.cache().restore(before);
  s.set_n_pos(n_pos0);
}

void attention_probs(const float* q, int64_t q_stride, int n_rows, const int64_t* limit, const float* keys,
                     int64_t n_keys, int d, float scale, float* p) {
  for (int i = 0; i < n_rows; ++i) {
    const float* qi = q + i * q_stride;
    float* pi = p + static_cast<int64_t>(i) * n_keys;
    const int64_t lim = std::min(limit[i], n_keys);
    float mx = -INFINITY;
    for (int64_t j = 0; j < lim; ++j) {
      const float* kj = keys + j * d;
      float dot = 0.0f;
      for (int c = 0; c < d; ++c) dot += qi[c] * kj[c];
      pi[j] = dot * scale;
      mx = std::max(mx, pi[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < lim; ++j) {
      pi[j] = std::exp(pi[j] - mx);
      sum += pi[j];
    }
    const float inv = sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
    for (int64_t j = 0; j < lim; ++j) pi[j] *= inv;
    std::fill(pi + lim, pi + n_keys, 0.0f);
  }
}

AttentionSumObserver::AttentionSumObserver(const HParams& hp, int64_t n_seq)
    : hp_(hp), n_seq_(n_seq), sums_(static_cast<size_t>(hp.n_layer) * hp.n_head_kv * n_seq, 0.0), rows_(hp.n_layer, 0) {}

// Work is split into fixed slices, never by thread: slice (ih, s) sums, in block order, the
// probabilities of head ih's token blocks b with b % kSumSlices == s into its own [len]
// buffer, and the slices of a head are added in slice order. The double sums therefore do
// not depend on the thread count or on which thread ran which slice (docs/kernels.md).
void AttentionSumObserver::on_rows(int il, const float* q, int64_t row0, int64_t n, const KvCache& cache,
                                   ThreadPool& pool) {
  const int G = hp_.n_group(), H = hp_.n_head_kv, d = hp_.d_head;
  const int64_t dq = int64_t{hp_.n_head} * d;
  const int64_t len = cache.seg(il, 0).len;
  KVZ_ASSERT(len == row0 + n && len <= n_seq_, "observer: head has {} rows, expected {} <= {}", len, row0 + n, n_seq_);
  keys_.resize(static_cast<size_t>(H) * len * d);
  for (int ih = 0; ih < H; ++ih) cache.keys_f32(il, ih, 0, len, keys_.data() + static_cast<size_t>(ih) * len * d);
  const int64_t tb = std::max<int64_t>(1, kAttnMaxRows / G);
  const int64_t n_blocks = (n + tb - 1) / tb;
  const int64_t n_slices = int64_t{H} * kSumSlices;
  part_.assign(static_cast<size_t>(n_slices) * len, 0.0);
  const float scale = hp_.softmax_scale();
  pool.parallel_for(n_slices, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> qbuf, p;
    thread_local std::vector<int64_t> lim;
    qbuf.resize(static_cast<size_t>(kAttnMaxRows) * d);
    p.resize(static_cast<size_t>(kAttnMaxRows) * len);
    lim.resize(kAttnMaxRows);
    for (int64_t slice = begin; slice < end; ++slice) {
      const int ih = static_cast<int>(slice / kSumSlices);
      double* acc = part_.data() + static_cast<size_t>(slice) * len;
      for (int64_t blk = slice % kSumSlices; blk < n_blocks; blk += kSumSlices) {
        const int64_t t0 = blk * tb, nt = std::min(tb, n - t0);
        int rows = 0;
        for (int64_t t = t0; t < t0 + nt; ++t)
          for (int g = 0; g < G; ++g, ++rows) {
            std::copy_n(q + t * dq + (int64_t{ih} * G + g) * d, d, qbuf.data() + rows * d);
            lim[rows] = row0 + t + 1;
          }
        attention_probs(qbuf.data(), d, rows, lim.data(), keys_.data() + static_cast<size_t>(ih) * len * d, len, d,
                        scale, p.data());
        for (int r = 0; r < rows; ++r) {
          const float* pr = p.data() + static_cast<int64_t>(r) * len;
          for (int64_t j = 0; j < lim[r]; ++j) acc[j] += pr[j];
        }
      }
    }
  });
  for (int ih = 0; ih < H; ++ih) {
    double* dst = sums_.data() + (static_cast<size_t>(il) * H + ih) * n_seq_;
    for (int s = 0; s < kSumSlices; ++s) {
      const double* src = part_.data() + (static_cast<size_t>(ih) * kSumSlices + s) * len;
      for (int64_t j = 0; j < len; ++j) dst[j] += src[j];
    }
  }
  rows_[il] += n;
}

double PressParams::num(const std::string& name) const {
  auto it = nums_.find(name);
  KVZ_ASSERT(it != nums_.end(), "press parameter '{}' was not declared", name);
  return it->second;
}

const std::string& PressParams::text(const std::string& name) const {
  auto it = texts_.find(name);
  KVZ_ASSERT(it != texts_.end(), "press parameter '{}' was not declared", name);
  return it->second;
}

const MethodInfo& method_info(const std::string& name) {
  std::string names;
  for (const MethodInfo& m : press_registry()) {
    if (m.name == name) return m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  fail("unknown compression method '{}' (known: {}; `kvzip methods` lists them)", name, names);
}

std::map<std::string, std::string> parse_press_params(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t b = 0;
  while (b < s.size()) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    const std::string kv = s.substr(b, e - b);
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) fail("method parameter '{}' is not key=value (e.g. window=32)", kv);
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
    b = e + 1;
  }
  return out;
}

PressParams resolve_press_params(const std::string& name, const std::map<std::string, std::string>& params) {
  const MethodInfo& m = method_info(name);
  PressParams p;
  for (const PressParam& d : m.params) {
    if (d.kind == PressParam::Text) p.set_text(d.name, d.text_def);
    else p.set_num(d.name, d.def);
  }
  for (const auto& [k, v] : params) {
    auto it = std::find_if(m.params.begin(), m.params.end(), [&key = k](const PressParam& d) { return d.name == key; });
    if (it == m.params.end()) {
      std::string known;
      for (const PressParam& d : m.params) known += (known.empty() ? "" : ", ") + d.name;
      fail("method '{}' has no parameter '{}' (its parameters: {})", name, k, known.empty() ? "none" : known);
    }
    if (it->kind == PressParam::Text) {
      p.set_text(k, v);
      continue;
    }
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(x)) fail("method '{}': {}={} is not a number", name, k, v);
    if (it->kind == PressParam::Int && x != std::floor(x)) fail("method '{}': {}={} must be an integer", name, k, v);
    if (x < it->min || x > it->max)
      fail("method '{}': {}={} is outside [{}, {}] ({})", name, k, v, it->min, it->max, it->help);
    p.set_num(k, x);
  }
  return p;
}

std::unique_ptr<Press> make_press(const std::string& name, const std::map<std::string, std::string>& params) {
  return method_info(name).make(resolve_press_params(name, params));
}

}  // namespace kvz

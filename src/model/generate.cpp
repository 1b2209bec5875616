#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <span>

#include "core/error.h"

namespace kvz {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

GenerateStats generate(Session& s, const std::vector<int32_t>& prompt, const GenerateParams& p,
                       const std::function<bool(int32_t)>& on_token, std::vector<int32_t>* out,
                       const std::function<void(int64_t, int64_t)>& prefill_progress) {
  if (prompt.empty()) fail("generate: the prompt is empty");
  if (p.n_predict < 0) fail("generate: n_predict must be >= 0, got {}", p.n_predict);
  const Model& m = s.model();
  const int n_vocab = m.hp().n_vocab;
  GenerateStats st;
  st.n_prompt = static_cast<int64_t>(prompt.size());
  // Fail before any work if prompt + generation cannot fit.
  if (s.n_pos() + st.n_prompt + p.n_predict > s.n_ctx_max())
    fail("prompt of {} tokens + {} to generate exceeds the context limit of {} tokens ({} already cached)",
         st.n_prompt, p.n_predict, s.n_ctx_max(), s.n_pos());
  Sampler sampler(p.sampling);
  std::vector<float> logits;
  double t0 = now_s();
  if (!p.after_forward) {
    s.forward(prompt, LogitsMode::Last, &logits, p.n_batch, prefill_progress);
  } else {  // batch by batch, so the hook runs between batches
    const std::span<const int32_t> all(prompt);
    const int64_t nb = std::max<int64_t>(1, p.n_batch);
    for (int64_t b = 0; b < st.n_prompt; b += nb) {
      const int64_t n = std::min(nb, st.n_prompt - b);
      const bool last = b + n == st.n_prompt;
      s.forward(all.subspan(b, n), last ? LogitsMode::Last : LogitsMode::None, last ? &logits : nullptr, n);
      p.after_forward();
      if (prefill_progress) prefill_progress(b + n, st.n_prompt);
    }
  }
  st.prefill_s = now_s() - t0;
  if (p.n_predict == 0) return st;

  t0 = now_s();
  for (int i = 0; i < p.n_predict; ++i) {
    const int32_t id = sampler.sample(logits.data(), n_vocab);
    ++st.n_generated;
    if (out) out->push_back(id);
    const bool eog = p.stop_at_eog && m.tokenizer().is_eog(id);
    const bool keep_going = on_token ? on_token(id) : true;
    if (eog) {
      st.stopped_at_eog = true;
      break;
    }
    if (!keep_going || i + 1 == p.n_predict) break;
    const int32_t one[1] = {id};
    s.forward(one, LogitsMode::Last, &logits);
    if (p.after_forward) p.after_forward();
  }
  st.decode_s = now_s() - t0;
  return st;
}

}  // namespace kvz

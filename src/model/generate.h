// The generation loop: prefill a prompt, then sample and feed one token at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/sampler.h"
#include "model/session.h"

namespace kvz {

struct GenerateParams {
  int n_predict = 128;  // max new tokens
  SamplerParams sampling;
  bool stop_at_eog = true;
  int64_t n_batch = 512;  // prefill batch size
  // Called after every prefill batch and every decode step (streaming eviction: KVzap).
  std::function<void()> after_forward;
};

struct GenerateStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  double prefill_s = 0.0;  // prompt forward, wall time
  double decode_s = 0.0;   // forwards of generated tokens, wall time
  bool stopped_at_eog = false;
  double prefill_tok_s() const { return prefill_s > 0 ? n_prompt / prefill_s : 0.0; }
  // Decode rate over the tokens actually fed back (the first token comes from prefill).
  double decode_tok_s() const { return decode_s > 0 ? (n_generated - 1) / decode_s : 0.0; }
};

// Runs `prompt` then generates. on_token(id) is called for every generated token,
// including a final end-of-generation token (which is never fed back: its K/V is never
// computed, kvzip-spec §9.11); returning false stops early. Generated ids are appended
// to *out when given.
GenerateStats generate(Session& s, const std::vector<int32_t>& prompt, const GenerateParams& p,
                       const std::function<bool(int32_t)>& on_token, std::vector<int32_t>* out = nullptr,
                       const std::function<void(int64_t, int64_t)>& prefill_progress = {});

}  // namespace kvz

// KVzip+ training targets for the KVzap surrogate (arXiv 2601.07891 §2.1, Eq. 3; kvpress
// kvzap/data.py; docs: kvzap-and-presses.md §1.1, §1.4). For one text the model reads the
// extended prompt
//   [template prefix | text | instruction, end of user turn, assistant header | text]
// (user = text + "\n\nRepeat the previous context exactly.", assistant = text, in the
// model's chat template) in one causal forward pass, and for every text token i and every
// (layer, KV head k)
//   s+_i = max_{g in group(k)} max_{j in repeated text} a^g_{j,i} ||W_O^g v_i|| / ||h_j||
// with a the ordinary causal softmax over the whole extended sequence (fp32), v_i the value
// row of i, W_O^g the d_head columns of the output projection that belong to query head g,
// h_j the attention input of row j. Target = log(max(s+, 1e-30)); feature = h_i, the
// attention input of token i's first occurrence.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/presses/kvzip.h"  // output_gram_matrices, output_norm, log_inv_norm
#include "model/session.h"

namespace kvz {

struct RepeatSequence {
  std::vector<int32_t> ids;  // [prefix | text | middle | text]; the closing tokens are not needed
  int64_t text0 = 0;         // first row of the text
  int64_t n_text = 0;
  int64_t rep0 = 0;  // first row of the repeated text (== ids.size() - n_text)
};

// Builds the extended prompt with the model's chat template (a plain BOS + text +
// instruction + "\n\n" + text when the model has none we recognise).
RepeatSequence kvzap_repeat_sequence(const Model& m, const std::vector<int32_t>& text);

struct KvzapTargets {
  int64_t n_pos = 0;
  std::vector<float> x;  // [n_layer][n_pos][n_embd] attention inputs h_i, f32
  std::vector<float> y;  // [n_layer][n_pos][n_head_kv] log(max(s+, 1e-30))
};

// Runs the forward pass over `seq` in a fresh session state (the session is reset before
// and after) and returns features and targets at the text positions `pos` (indices into
// the text, each < n_text, any order). grams: output_gram_matrices(model). n_batch: forward
// batch size (the targets do not depend on it). Memory: the outputs, plus O(n_head * n_text)
// per layer and one 64-row block of logits per thread; never the full score matrix.
KvzapTargets kvzip_plus_targets(Session& s, const RepeatSequence& seq, const std::vector<int64_t>& pos,
                                const std::vector<float>& grams, int64_t n_batch = 512);

}  // namespace kvz

// What a compressed context kept, read off its cache rows: for every (layer, KV head) the
// context tokens whose row is still held, and from that the share of heads keeping each
// token and the kept fraction of each head and layer. Shared by the server's
// GET /v1/contexts/{id}/kept and `kvzip kept`, so both show the same thing.
//
// The truth is the cache itself, not the scores: a row's RoPE position says which token it
// belongs to (context token t sits at position n_sys + t), so whatever pruned the cache
// (any press and level, a sliding window rolling, a re-prune) is shown as it is. Rows of the
// system prompt (positions < n_sys) and of turns appended after the context (positions >=
// n_sys + n_ctx, update_cache) are not context tokens and are left out.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/head_cache.h"

namespace kvz {

class Tokenizer;

struct KeptView {
  int n_layer = 0, n_head_kv = 0;
  int64_t n_sys = 0, n_ctx = 0;
  std::vector<uint8_t> mask;         // [n_layer][n_head_kv][n_ctx] 1: head holds token t's row
  std::vector<int64_t> head_rows;    // [n_layer][n_head_kv] context rows the head holds
  std::vector<int32_t> token_heads;  // [n_ctx] (layer, head) pairs holding token t

  const uint8_t* head(int il, int ih) const { return mask.data() + (static_cast<size_t>(il) * n_head_kv + ih) * n_ctx; }
  int64_t rows(int il, int ih) const { return head_rows[static_cast<size_t>(il) * n_head_kv + ih]; }
  // Fractions in [0, 1]; 0 for an empty context.
  double head_fraction(int il, int ih) const;
  double layer_fraction(int il) const;      // over the layer's heads
  double token_fraction(int64_t t) const;   // over all n_layer * n_head_kv pairs
};

// Reads the kept rows of `cache` for a context of n_ctx tokens after n_sys system-prompt
// tokens. Throws kvz::Error when a head holds a context position twice (a broken cache).
KeptView kept_view(const KvCache& cache, int64_t n_sys, int64_t n_ctx);

// The text of each token, in order, so that the pieces concatenate to the decoded text: a
// multi-byte character split over several tokens is given to the token that completes it
// (the earlier ones get ""); bytes never completed become U+FFFD. Always valid UTF-8.
std::vector<std::string> token_pieces(const Tokenizer& tok, std::span<const int32_t> ids);

// A head's kept tokens as hex digits, 4 tokens a digit, most significant bit first:
// digit i holds tokens 4i..4i+3, token 4i in bit 3 ("8" = only token 4i kept). n_ctx = 5,
// tokens 0 and 4 kept: "88".
std::string kept_bitmap_hex(const uint8_t* keep, int64_t n);

}  // namespace kvz

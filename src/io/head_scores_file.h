// Head-level (context-independent) KVzip scores on disk: [n_layer][n_head_kv] float32 plus
// the model's fingerprint and a note on the source context (kvzip-spec §4.3).
//   "KVZHEAD1" | u64 fingerprint | u32 n_layer | u32 n_head_kv | u32 source bytes | source |
//   f32 scores[n_layer * n_head_kv] | u64 FNV-1a-64 of everything before it
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_identity.h"

namespace kvz {

struct HeadScoreFile {
  int n_layer = 0, n_head_kv = 0;
  std::string source;          // e.g. "kvzip demo document, 1,977 tokens"
  std::vector<float> scores;   // [n_layer][n_head_kv]
};

void save_head_scores(const std::string& path, const ModelIdentity& id, const HeadScoreFile& h);
// Largest head-score file read (a real one is a few KB: 4 bytes per layer and KV head).
constexpr uint64_t kMaxHeadScoreBytes = 64u << 20;

// Throws kvz::Error for another model's file, a corrupt or truncated file.
HeadScoreFile load_head_scores(const std::string& path, const ModelIdentity& id);
// The same from bytes in memory; `what` names them in errors.
HeadScoreFile decode_head_scores(const uint8_t* data, size_t n, const std::string& what, const ModelIdentity& id);

}  // namespace kvz

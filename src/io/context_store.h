// Saving and loading a (compressed) context: the per-head KV rows with their positions,
// the context ids, the position counter and the scores, so a context scored once is reused
// across processes. Format (all little-endian):
//   header  "KVZCTX1\0" | u32 version | u64 model fingerprint | u64 payload bytes |
//           u64 compressed bytes | u64 FNV-1a-64 of the payload
//   body    zstd frame of the payload (see context_store.cpp for its fields)
// Loading checks magic, version, fingerprint, sizes and checksum before touching the
// session: a file for another model or a corrupt file is a kvz::Error and loses nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kv/head_cache.h"
#include "kv/scores.h"

namespace kvz {

class Model;

struct StoredContext {
  int64_t n_sys = 0;
  int64_t n_pos = 0;
  bool pruned = false;
  std::vector<int32_t> sys_ids, ctx_ids;
  HeadScores scores;  // may be empty
};

// Identity of a model's weights and vocabulary (metadata, tensor directory and samples of
// the tensor data), so a context is never loaded into another model.
uint64_t model_fingerprint(const Model& m);

void save_context(const std::string& path, const Model& m, const StoredContext& meta, const KvCache& cache,
                  int zstd_level = 3);
// Fills meta and returns the cache. Throws kvz::Error naming the problem.
KvCache load_context(const std::string& path, const Model& m, StoredContext& meta);

}  // namespace kvz

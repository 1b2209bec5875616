// Saving and loading a (compressed) context: the per-head KV rows with their positions,
// the context ids, the position counter and the scores, so a context scored once is reused
// across processes and servers. Format version 4 (all little-endian):
//   "KVZCTX1\0" | u32 version | u64 model fingerprint | u64 info bytes | u64 payload bytes |
//   u64 stored bytes | info (UTF-8, opaque to this layer: the server keeps JSON there) |
//   the payload (fields: context_store.cpp): a zstd frame, or the payload itself when zstd
//   saves less than 12.5 % (stored bytes == payload bytes) | u64 XXH3-64 of every byte before it
// The checksum covers the whole file. Version 3 (FNV-1a-64, always zstd) and versions 1 and 2
// (no info, checksum over the payload only) still load. Decoding checks magic, version,
// fingerprint, sizes and checksum, then every field against the model's identity (ids in
// the vocabulary, shapes, finite scores and rows, increasing positions) before anything is
// returned: a file for another model or a corrupt file is a kvz::Error naming the problem.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/head_cache.h"
#include "cache/scores.h"
#include "io/model_identity.h"

namespace kvz {

struct StoredContext {
  int64_t n_sys = 0;
  int64_t n_pos = 0;
  bool pruned = false;
  std::vector<int32_t> sys_ids, ctx_ids;
  HeadScores scores;  // may be empty
  std::string info;   // free-form metadata (version 3); "" in older files
};

// What the fixed header and the info block say, without decompressing the payload or
// verifying the checksum (listing many files cheaply; decode_context verifies all).
struct ContextFileHeader {
  uint32_t version = 0;
  uint64_t fingerprint = 0;
  uint64_t payload_bytes = 0, compressed_bytes = 0;
  std::string info;
};

std::vector<uint8_t> encode_context(const ModelIdentity& id, const StoredContext& meta, const KvCache& cache,
                                    int zstd_level = 3);
// `what` names the source in errors (a path, a store key). Fills meta and returns the cache,
// every head with room for `extra_rows` more rows (a session appending a question then does
// not regrow; an immutable copy such as the server's takes 0).
KvCache decode_context(const uint8_t* data, size_t n, const std::string& what, const ModelIdentity& id,
                       StoredContext& meta, int64_t extra_rows = 64);
ContextFileHeader peek_context(const uint8_t* data, size_t n, const std::string& what);

// encode_context + write_file_atomic / read_file_bytes + decode_context.
void save_context(const std::string& path, const ModelIdentity& id, const StoredContext& meta, const KvCache& cache,
                  int zstd_level = 3);
KvCache load_context(const std::string& path, const ModelIdentity& id, StoredContext& meta);
// Reads only the header and info block of a file.
ContextFileHeader peek_context_file(const std::string& path);

// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and
// fsyncs the directory: after a crash either the old file or the whole new one is there,
// never a torn one under the real name.
void write_file_atomic(const std::string& path, const void* bytes, size_t n);
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes);

}  // namespace kvz

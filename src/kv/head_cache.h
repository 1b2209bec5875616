// The KV cache, per (layer, KV head). Every head owns its own rows, so after KVzip
// eviction heads hold different numbers of pairs (kvzip-spec §4.4, §9). Rows are kept
// in append order; a row's RoPE position lives beside it in `pos` and is never changed
// (keys are stored post-RoPE, never re-rotated). The position counter is global and
// belongs to the session, not to the cache.
//
// Causality inside a batch is by row index: a query token t of a batch that starts when
// head h holds `base_len[h]` rows sees that head's rows [0, base_len[h] + t].
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kvz {

// One (layer, KV head) segment. Storage is f16 for K and V (what llama.cpp uses by
// default, so logits stay comparable), f32 compute.
struct HeadSegment {
  std::unique_ptr<uint16_t[]> k;    // [cap][d_head] f16, post-RoPE
  std::unique_ptr<uint16_t[]> v;    // [cap][d_head] f16
  std::unique_ptr<int32_t[]> pos;   // [cap] absolute RoPE position of each row
  int64_t len = 0;
  int64_t cap = 0;
};

class KvCache {
 public:
  KvCache(int n_layer, int n_head_kv, int d_head);
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;

  // A deep copy with capacity trimmed to the rows in use.
  KvCache clone() const;

  int n_layer() const { return n_layer_; }
  int n_head_kv() const { return n_head_kv_; }
  int d_head() const { return d_head_; }

  HeadSegment& seg(int il, int ih) { return segs_[static_cast<size_t>(il) * n_head_kv_ + ih]; }
  const HeadSegment& seg(int il, int ih) const { return segs_[static_cast<size_t>(il) * n_head_kv_ + ih]; }

  // Makes room for `extra` more rows in every head without further allocation. Growth
  // copies one head's rows (geometric, at most log(n) times); never done inside a batch.
  void reserve_extra(int64_t extra);

  // Appends one row to head (il, ih); capacity must have been reserved.
  void append(int il, int ih, const uint16_t* k_row, const uint16_t* v_row, int32_t pos);

  // Per-head lengths, layer-major: [n_layer * n_head_kv].
  std::vector<int64_t> lengths() const;
  // Drops rows so that each head has at most lens[i] rows (restore after a query).
  void truncate(const std::vector<int64_t>& lens);
  void clear();

  // Drops the first n rows of head (il, ih) (a sliding-window layer's rows that no later
  // query can see); the rest move to the front, capacity is kept.
  void drop_front(int il, int ih, int64_t n);

  // A copy of every head's length, and of all rows of the heads of the layers marked in
  // `copy_layers` ([n_layer]; rows that drop_front may remove). restore() puts the cache back
  // exactly as it was: copied heads get their rows back, the others are truncated.
  struct Snapshot {
    std::vector<int64_t> lens;
    std::vector<size_t> copied;      // segment indices with a copy
    std::vector<HeadSegment> rows;   // their rows, parallel to `copied`
  };
  Snapshot snapshot(const std::vector<uint8_t>& copy_layers) const;
  void restore(const Snapshot& s);

  // Keeps, for head (il, ih), exactly the rows with keep[r] != 0 (r < len), in order, and
  // reallocates the head to `len_kept + reserve` rows so the evicted memory is freed.
  void compact(int il, int ih, const uint8_t* keep, int64_t reserve);

  // Bytes of retained K+V rows (what the reference's _mem() reports).
  size_t bytes_used() const;
  // Bytes actually allocated for K, V and positions.
  size_t bytes_allocated() const;
  int64_t total_rows() const;

 private:
  void grow(HeadSegment& s, int64_t new_cap);

  int n_layer_, n_head_kv_, d_head_;
  std::vector<HeadSegment> segs_;
};

}  // namespace kvz

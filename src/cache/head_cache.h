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

#include "kernels/attention.h"

namespace kvz {

// A segment's array: allocated alone (new[], freed with it) or a slice of its cache's
// RowArena (freed with the cache). Set it through HeadSegment::allocate or
// KvCache::allocate_all only: reset(new T[]) would keep an arena slice's deleter and leak.
template <typename T>
struct RowFree {
  bool in_arena = false;
  void operator()(T* p) const {
    if (!in_arena) delete[] p;
  }
};
template <typename T>
using RowPtr = std::unique_ptr<T[], RowFree<T>>;

// One (layer, KV head) segment. Rows are stored in the cache's KvType: f16 by default (what
// llama.cpp uses, so logits stay comparable) or Q8_0 (--kv-type q8_0); compute is f32.
struct HeadSegment {
  RowPtr<uint8_t> k;     // [cap] rows of KvCache::row_bytes(), post-RoPE keys
  RowPtr<uint8_t> v;     // [cap] value rows
  RowPtr<int32_t> pos;   // [cap] absolute RoPE position of each row
  int64_t len = 0;
  int64_t cap = 0;
  // Fresh arrays of `cap` rows of `row_bytes` (room for at least 1), on their own; len = 0.
  void allocate(int64_t cap, size_t row_bytes);
};

// One block of memory holding the arrays of many segments, for the cache's bulk copies (a
// clone, a decoded context file): one allocation instead of three per head, and from 2 MiB up
// a mapping in transparent huge pages, so copying a context's rows into fresh memory does not
// fault in every 4 KiB page on its own (30 MB into 4 KiB pages: 20 ms on a KVM guest, 7 ms
// in huge pages; 2026-12-06, AMD EPYC Zen 4).
class RowArena {
 public:
  explicit RowArena(size_t bytes);
  ~RowArena();
  RowArena(const RowArena&) = delete;
  RowArena& operator=(const RowArena&) = delete;
  uint8_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  uint8_t* p_ = nullptr;       // the block, 2 MiB-aligned when mapped
  size_t n_ = 0, mapped_ = 0;  // mapped_ > 0: an mmap of that many bytes at p_
};

class KvCache {
 public:
  KvCache(int n_layer, int n_head_kv, int d_head, KvType type = KvType::F16);
  KvCache() : KvCache(0, 0, 0) {}  // empty, to be assigned
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;

  // A deep copy with capacity trimmed to the rows in use, plus room for `extra` more rows in
  // every head (a session about to append them then never regrows, which would copy every
  // head's rows again).
  KvCache clone(int64_t extra = 0) const;
  // clone() with every row stored as `t` (through f32; q8_0 -> f16 keeps q8_0's rounding).
  KvCache converted(KvType t) const;

  int n_layer() const { return n_layer_; }
  int n_head_kv() const { return n_head_kv_; }
  int d_head() const { return d_head_; }
  KvType type() const { return type_; }
  size_t row_bytes() const { return rb_; }

  HeadSegment& seg(int il, int ih) { return segs_[static_cast<size_t>(il) * n_head_kv_ + ih]; }
  const HeadSegment& seg(int il, int ih) const { return segs_[static_cast<size_t>(il) * n_head_kv_ + ih]; }

  // Gives every head fresh arrays of caps[i] rows (layer-major, at least 1) in one RowArena,
  // len = 0; the rows the heads held are gone. A head that later outgrows its slice moves to
  // an array of its own (reserve_extra).
  void allocate_all(const std::vector<int64_t>& caps);

  // Makes room for `extra` more rows in every head without further allocation. Growth
  // copies one head's rows (geometric, at most log(n) times); never done inside a batch.
  void reserve_extra(int64_t extra);

  // Appends one row to head (il, ih) (rows in the cache's type); capacity must have been reserved.
  void append(int il, int ih, const void* k_row, const void* v_row, int32_t pos);
  // Rows [r0, r0 + n) of head (il, ih) as f32: dst [n][d_head].
  void keys_f32(int il, int ih, int64_t r0, int64_t n, float* dst) const;
  void values_f32(int il, int ih, int64_t r0, int64_t n, float* dst) const;

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

  // As compact(), in place: rows with keep[r] == 0 (r < len) leave, the rest move up in
  // order; capacity is kept, nothing is allocated (streaming eviction, KVzap). Returns the
  // number of rows removed. Rows before the first evicted one are not touched.
  int64_t remove_rows(int il, int ih, const uint8_t* keep);

  // Bytes of retained K+V rows (what the reference's _mem() reports).
  size_t bytes_used() const;
  // Bytes actually allocated for K, V and positions.
  size_t bytes_allocated() const;
  int64_t total_rows() const;

 private:
  void grow(HeadSegment& s, int64_t new_cap);

  int n_layer_, n_head_kv_, d_head_;
  KvType type_;
  size_t rb_;  // bytes per K (or V) row
  std::vector<HeadSegment> segs_;
  std::vector<std::unique_ptr<RowArena>> arenas_;  // slices of these are in segs_
};

}  // namespace kvz

#include "cache/head_cache.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <sys/mman.h>
#include <vector>

#include "core/error.h"

namespace kvz {

KvCache::KvCache(int n_layer, int n_head_kv, int d_head, KvType type)
    : n_layer_(n_layer),
      n_head_kv_(n_head_kv),
      d_head_(d_head),
      type_(type),
      rb_(kv_row_bytes(type, d_head)),
      segs_(static_cast<size_t>(n_layer) * n_head_kv) {
  const bool empty = n_layer == 0 && n_head_kv == 0 && d_head == 0;  // KvCache(): to be assigned
  KVZ_ASSERT(empty || (n_layer > 0 && n_head_kv > 0 && d_head > 0), "bad cache shape {}x{}x{}", n_layer, n_head_kv, d_head);
  if (type == KvType::Q8_0 && d_head % 32 != 0)
    fail("a q8_0 KV cache needs a head size that is a multiple of 32 (this model's is {}); use f16", d_head);
}

void HeadSegment::allocate(int64_t n, size_t row_bytes) {
  const size_t room = static_cast<size_t>(std::max<int64_t>(n, 1));
  k = RowPtr<uint8_t>(new uint8_t[room * row_bytes]);
  v = RowPtr<uint8_t>(new uint8_t[room * row_bytes]);
  pos = RowPtr<int32_t>(new int32_t[room]);
  cap = n;
  len = 0;
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kSliceAlign = 64;
size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
}  // namespace

RowArena::RowArena(size_t bytes) : n_(bytes) {
  if (bytes >= kHugePage) {
    // Map one huge page more, keep the part that starts on a 2 MiB boundary, unmap the rest.
    mapped_ = align_up(bytes, size_t{4096});
    const size_t over = mapped_ + kHugePage;
    void* m = ::mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    auto* base = static_cast<uint8_t*>(m);
    p_ = reinterpret_cast<uint8_t*>(align_up(reinterpret_cast<uintptr_t>(base), kHugePage));
    if (p_ > base) ::munmap(base, static_cast<size_t>(p_ - base));
    if (base + over > p_ + mapped_) ::munmap(p_ + mapped_, static_cast<size_t>(base + over - (p_ + mapped_)));
    // Huge pages for the whole 2 MiB blocks only: the tail stays in 4 KiB pages, so no more
    // than the bytes asked for become resident. Advice only: 4 KiB pages if it is refused.
    ::madvise(p_, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
  } else {
    p_ = new uint8_t[std::max<size_t>(bytes, 1)];
  }
}

RowArena::~RowArena() {
  if (mapped_)
    ::munmap(p_, mapped_);
  else
    delete[] p_;
}

void KvCache::allocate_all(const std::vector<int64_t>& caps) {
  KVZ_ASSERT(caps.size() == segs_.size(), "allocate_all: {} capacities for {} heads", caps.size(), segs_.size());
  size_t total = 0;
  for (int64_t c : caps) {
    KVZ_ASSERT(c >= 0, "allocate_all: capacity {}", c);
    const size_t n = static_cast<size_t>(std::max<int64_t>(c, 1));
    total += 2 * align_up(n * rb_, kSliceAlign) + align_up(n * sizeof(int32_t), kSliceAlign);
  }
  for (auto& s : segs_) s = HeadSegment{};  // drop slices of older arenas before those go
  arenas_.clear();
  auto arena = std::make_unique<RowArena>(total);
  uint8_t* p = arena->data();
  auto take = [&](size_t n) {
    uint8_t* q = p;
    p += align_up(n, kSliceAlign);
    return q;
  };
  for (size_t i = 0; i < segs_.size(); ++i) {
    HeadSegment& s = segs_[i];
    s.cap = std::max<int64_t>(caps[i], 1);
    const size_t n = static_cast<size_t>(s.cap);
    s.k = RowPtr<uint8_t>(take(n * rb_), RowFree<uint8_t>{true});
    s.v = RowPtr<uint8_t>(take(n * rb_), RowFree<uint8_t>{true});
    s.pos = RowPtr<int32_t>(reinterpret_cast<int32_t*>(take(n * sizeof(int32_t))), RowFree<int32_t>{true});
    s.len = 0;
  }
  arenas_.push_back(std::move(arena));
}

KvCache KvCache::clone(int64_t extra) const {
  KVZ_ASSERT(extra >= 0, "clone with {} extra rows", extra);
  KvCache c(n_layer_, n_head_kv_, d_head_, type_);
  std::vector<int64_t> caps;
  caps.reserve(segs_.size());
  for (const auto& s : segs_) caps.push_back(s.len + extra);
  c.allocate_all(caps);
  for (size_t i = 0; i < segs_.size(); ++i) {
    const HeadSegment& s = segs_[i];
    HeadSegment& d = c.segs_[i];
    if (s.len > 0) {
      std::memcpy(d.k.get(), s.k.get(), s.len * rb_);
      std::memcpy(d.v.get(), s.v.get(), s.len * rb_);
      std::memcpy(d.pos.get(), s.pos.get(), s.len * sizeof(int32_t));
    }
    d.len = s.len;
  }
  return c;
}

KvCache KvCache::converted(KvType t) const {
  if (t == type_) return clone();
  KvCache c(n_layer_, n_head_kv_, d_head_, t);
  std::vector<float> f;  // [len][d_head]
  for (size_t i = 0; i < segs_.size(); ++i) {
    const HeadSegment& s = segs_[i];
    HeadSegment& d = c.segs_[i];
    d.allocate(std::max<int64_t>(s.len, 1), c.rb_);
    f.resize(static_cast<size_t>(s.len) * d_head_);
    if (s.len > 0) {
      kv_rows_to_f32(type_, s.k.get(), f.data(), s.len, d_head_);
      f32_to_kv_rows(t, f.data(), d.k.get(), s.len, d_head_);
      kv_rows_to_f32(type_, s.v.get(), f.data(), s.len, d_head_);
      f32_to_kv_rows(t, f.data(), d.v.get(), s.len, d_head_);
      std::memcpy(d.pos.get(), s.pos.get(), s.len * sizeof(int32_t));
    }
    d.len = s.len;
  }
  return c;
}

void KvCache::grow(HeadSegment& s, int64_t new_cap) {
  const size_t d = rb_;
  HeadSegment g;
  g.allocate(new_cap, d);
  const int64_t keep = std::min(s.len, g.cap);
  if (keep > 0) {
    std::memcpy(g.k.get(), s.k.get(), keep * d);
    std::memcpy(g.v.get(), s.v.get(), keep * d);
    std::memcpy(g.pos.get(), s.pos.get(), keep * sizeof(int32_t));
  }
  g.len = keep;
  s = std::move(g);
}

void KvCache::reserve_extra(int64_t extra) {
  for (auto& s : segs_) {
    const int64_t need = s.len + extra;
    if (need > s.cap) grow(s, std::max<int64_t>(need, s.cap + s.cap / 2));
  }
}

void KvCache::append(int il, int ih, const void* k_row, const void* v_row, int32_t pos) {
  HeadSegment& s = seg(il, ih);
  KVZ_ASSERT(s.len < s.cap, "append past reserved capacity (layer {}, head {}, cap {})", il, ih, s.cap);
  const size_t d = rb_;
  std::memcpy(s.k.get() + s.len * d, k_row, d);
  std::memcpy(s.v.get() + s.len * d, v_row, d);
  s.pos[s.len] = pos;
  ++s.len;
}

std::vector<int64_t> KvCache::lengths() const {
  std::vector<int64_t> out;
  out.reserve(segs_.size());
  for (const auto& s : segs_) out.push_back(s.len);
  return out;
}

void KvCache::truncate(const std::vector<int64_t>& lens) {
  KVZ_ASSERT(lens.size() == segs_.size(), "truncate: {} lengths for {} heads", lens.size(), segs_.size());
  for (size_t i = 0; i < segs_.size(); ++i) segs_[i].len = std::min(segs_[i].len, lens[i]);
}

void KvCache::drop_front(int il, int ih, int64_t n) {
  HeadSegment& s = seg(il, ih);
  KVZ_ASSERT(n >= 0 && n <= s.len, "drop_front of {} rows from a head of {} (layer {}, head {})", n, s.len, il, ih);
  if (n == 0) return;
  const size_t d = rb_;
  const int64_t rest = s.len - n;
  std::memmove(s.k.get(), s.k.get() + n * d, rest * d);
  std::memmove(s.v.get(), s.v.get() + n * d, rest * d);
  std::memmove(s.pos.get(), s.pos.get() + n, rest * sizeof(int32_t));
  s.len = rest;
}

namespace {
HeadSegment copy_segment(const HeadSegment& s, int64_t cap, size_t d) {
  HeadSegment c;
  c.allocate(std::max<int64_t>(cap, 1), d);
  if (s.len > 0) {
    std::memcpy(c.k.get(), s.k.get(), s.len * d);
    std::memcpy(c.v.get(), s.v.get(), s.len * d);
    std::memcpy(c.pos.get(), s.pos.get(), s.len * sizeof(int32_t));
  }
  c.len = s.len;
  return c;
}
}  // namespace

KvCache::Snapshot KvCache::snapshot(const std::vector<uint8_t>& copy_layers) const {
  Snapshot snap;
  snap.lens = lengths();
  for (int il = 0; il < n_layer_ && il < static_cast<int>(copy_layers.size()); ++il) {
    if (!copy_layers[il]) continue;
    for (int ih = 0; ih < n_head_kv_; ++ih) {
      const size_t i = static_cast<size_t>(il) * n_head_kv_ + ih;
      snap.copied.push_back(i);
      snap.rows.push_back(copy_segment(segs_[i], segs_[i].len, rb_));
    }
  }
  return snap;
}

void KvCache::restore(const Snapshot& snap) {
  truncate(snap.lens);
  for (size_t j = 0; j < snap.copied.size(); ++j) {
    HeadSegment& s = segs_[snap.copied[j]];
    const HeadSegment& c = snap.rows[j];
    // Back in place when the rows still fit (no allocation in steady state).
    if (s.cap < c.len) s = copy_segment(c, c.len + 64, rb_);
    const size_t d = rb_;
    if (c.len > 0) {
      std::memcpy(s.k.get(), c.k.get(), c.len * d);
      std::memcpy(s.v.get(), c.v.get(), c.len * d);
      std::memcpy(s.pos.get(), c.pos.get(), c.len * sizeof(int32_t));
    }
    s.len = c.len;
  }
}

void KvCache::clear() {
  for (auto& s : segs_) s.len = 0;
}

void KvCache::compact(int il, int ih, const uint8_t* keep, int64_t reserve) {
  HeadSegment& s = seg(il, ih);
  const size_t d = rb_;
  int64_t n_keep = 0;
  for (int64_t r = 0; r < s.len; ++r) n_keep += keep[r] != 0;
  HeadSegment out;
  out.allocate(n_keep + std::max<int64_t>(reserve, 0), d);
  for (int64_t r = 0; r < s.len; ++r) {
    if (!keep[r]) continue;
    std::memcpy(out.k.get() + out.len * d, s.k.get() + r * d, d);
    std::memcpy(out.v.get() + out.len * d, s.v.get() + r * d, d);
    out.pos[out.len] = s.pos[r];
    ++out.len;
  }
  s = std::move(out);
}

int64_t KvCache::remove_rows(int il, int ih, const uint8_t* keep) {
  HeadSegment& s = seg(il, ih);
  const size_t d = rb_;
  int64_t w = 0;
  while (w < s.len && keep[w]) ++w;
  for (int64_t r = w; r < s.len; ++r) {
    if (!keep[r]) continue;
    std::memcpy(s.k.get() + w * d, s.k.get() + r * d, d);
    std::memcpy(s.v.get() + w * d, s.v.get() + r * d, d);
    s.pos[w] = s.pos[r];
    ++w;
  }
  const int64_t removed = s.len - w;
  s.len = w;
  return removed;
}

size_t KvCache::bytes_used() const {
  size_t rows = 0;
  for (const auto& s : segs_) rows += static_cast<size_t>(s.len);
  return rows * 2 * rb_;
}

size_t KvCache::bytes_allocated() const {
  size_t b = 0;
  for (const auto& s : segs_) b += static_cast<size_t>(s.cap) * (2 * rb_ + sizeof(int32_t));
  return b;
}

void KvCache::keys_f32(int il, int ih, int64_t r0, int64_t n, float* dst) const {
  const HeadSegment& s = seg(il, ih);
  KVZ_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= s.len, "keys_f32: rows [{}, {}) of {}", r0, r0 + n, s.len);
  kv_rows_to_f32(type_, s.k.get() + r0 * rb_, dst, n, d_head_);
}

void KvCache::values_f32(int il, int ih, int64_t r0, int64_t n, float* dst) const {
  const HeadSegment& s = seg(il, ih);
  KVZ_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= s.len, "values_f32: rows [{}, {}) of {}", r0, r0 + n, s.len);
  kv_rows_to_f32(type_, s.v.get() + r0 * rb_, dst, n, d_head_);
}

int64_t KvCache::total_rows() const {
  int64_t n = 0;
  for (const auto& s : segs_) n += s.len;
  return n;
}

}  // namespace kvz

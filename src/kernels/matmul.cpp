// matmul: quantize the activations once to the weight type's partner format, then run the
// ISA's tiled gemm over (row chunk, token chunk) work units spread over the pool.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/matmul_multi.h"
#include "kernels/types.h"

namespace kvz {

namespace {

// Work unit: kUnitRows weight rows x kUnitTok tokens. 64 rows of a 576-wide Q4_1 matrix are
// 23 KB (L1-resident while a 4-token tile sweeps them); 64 tokens keep units numerous
// enough to balance 2+ threads at prefill. Decode uses 16-row units for balance.
constexpr int64_t kUnitRows = 64;
constexpr int64_t kUnitRowsDecode = 16;
constexpr int64_t kUnitTok = 64;
static_assert(kUnitRows % kInterleaveRowsMax == 0 && kUnitRowsDecode % kInterleaveRowsMax == 0,
              "row units must start at interleaved group boundaries");

// Per-thread activation scratch: grows to the largest call, never shrinks, so decode
// (n_tok == 1) allocates nothing after the first step. Only matmul's calling thread uses
// its own buffer; pool workers write into it through the pointer.
struct Scratch {
  std::vector<uint8_t> buf;
  uint8_t* get(size_t n) {
    if (buf.size() < n + 64) buf.resize(n + 64);
    const auto p = reinterpret_cast<uintptr_t>(buf.data());
    return buf.data() + ((64 - p % 64) % 64);
  }
};
thread_local Scratch tl_scratch;

}  // namespace

namespace {

constexpr int kMaxMulti = 8;

// One weight of a (multi-)matmul with its activations in the partner format.
struct Job {
  GemmFn gemm;
  const uint8_t* w;
  size_t ws;
  const uint8_t* xq;
  size_t xs;
  int64_t n_in, n_out, n_ru;
  float* y;
};

void check(const KernelTable& k, const WeightView& w, const float* x, int64_t n_tok, const float* y) {
  const TypeInfo& ti = type_info(w.type);
  if (!ti.supported) fail("matmul: weight type {} is not supported", ti.name);
  if (w.n_in <= 0 || w.n_out <= 0 || w.n_in % ti.block_size != 0)
    fail("matmul: bad weight shape [{} x {}] for type {} (n_in must be a positive multiple of {})", w.n_out,
         w.n_in, ti.name, ti.block_size);
  if (n_tok < 0) fail("matmul: negative token count {}", n_tok);
  if (n_tok > 0 && (!w.data || !x || !y)) fail("matmul: null weight, input or output pointer");
  KVZ_ASSERT(k.of(w.type).gemm != nullptr, "no gemm kernel for {} in table {}", ti.name, k.isa);
  if (w.interleave != 1 && (w.interleave != k.of(w.type).group || !k.of(w.type).gemm_i))
    fail("matmul: the {} kernels cannot read {} weights interleaved by {}", k.isa, ti.name, w.interleave);
}

}  // namespace

void matmul_multi_with(const KernelTable& k, const WeightView* w, int n_w, const float* x, int64_t n_tok,
                       float* const* y, ThreadPool* pool) {
  if (n_w < 1 || n_w > kMaxMulti) fail("matmul_multi: {} weights (1..{})", n_w, kMaxMulti);
  for (int i = 0; i < n_w; ++i) {
    check(k, w[i], x, n_tok, y[i]);
    if (w[i].n_in != w[0].n_in) fail("matmul_multi: weights disagree on n_in ({} vs {})", w[i].n_in, w[0].n_in);
  }
  if (n_tok == 0) return;
  const int64_t n_in = w[0].n_in;
  const int nth = pool ? pool->size() : 1;

  // Activations, once per distinct partner format: [n_tok][xs bytes] each, one buffer.
  struct Format {
    Partner partner;
    blk::Q8AMode mode;
    DType type;  // a weight type with this format (for partner_row_bytes)
    size_t xs, off;
  };
  Format fmt[kMaxMulti];
  int fmt_of[kMaxMulti], n_fmt = 0;
  size_t total = 0;
  for (int i = 0; i < n_w; ++i) {
    const Partner p = partner_of(w[i].type);
    const blk::Q8AMode mode = p == Partner::kQ8A ? q8a_mode_of(w[i].type) : blk::Q8AMode::kNone;
    int f = 0;
    while (f < n_fmt && !(fmt[f].partner == p && fmt[f].mode == mode)) ++f;
    if (f == n_fmt) {
      const size_t xs = p == Partner::kF32 ? static_cast<size_t>(n_in) * sizeof(float) : partner_row_bytes(w[i].type, n_in);
      fmt[n_fmt++] = {p, mode, w[i].type, xs, total};
      if (p != Partner::kF32) total += (xs * static_cast<size_t>(n_tok) + 63) / 64 * 64;
    }
    fmt_of[i] = f;
  }
  uint8_t* buf = total ? tl_scratch.get(total) : nullptr;
  const int64_t n_q = int64_t{n_fmt} * n_tok;  // (format, token) rows to quantize
  auto quantize = [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const Format& f = fmt[i / n_tok];
      const int64_t it = i % n_tok;
      uint8_t* dst = buf + f.off + it * f.xs;
      if (f.partner == Partner::kQ8A)
        k.quantize_q8a(x + it * n_in, n_in, dst, f.mode);
      else if (f.partner == Partner::kQ8K)
        k.quantize_q8k(x + it * n_in, n_in, dst);
    }
  };
  if (total) {
    if (pool && nth > 1 && n_tok >= 2 * nth)
      pool->parallel_for(n_q, quantize);
    else
      quantize(0, n_q, 0);
  }

  const int64_t unit_rows = n_tok == 1 ? kUnitRowsDecode : kUnitRows;
  const int64_t n_tu = (n_tok + kUnitTok - 1) / kUnitTok;
  Job job[kMaxMulti];
  int64_t first_unit[kMaxMulti + 1];  // units of weight i: [first_unit[i], first_unit[i + 1])
  first_unit[0] = 0;
  for (int i = 0; i < n_w; ++i) {
    const Format& f = fmt[fmt_of[i]];
    const void* xq = f.partner == Partner::kF32 ? static_cast<const void*>(x) : buf + f.off;
    const int64_t n_ru = (w[i].n_out + unit_rows - 1) / unit_rows;
    const TypeKernels& tk = k.of(w[i].type);
    job[i] = {w[i].interleave == 1 ? tk.gemm : tk.gemm_i,
              static_cast<const uint8_t*>(w[i].data),
              row_bytes(w[i].type, n_in),
              static_cast<const uint8_t*>(xq),
              f.xs,
              n_in,
              w[i].n_out,
              n_ru,
              y[i]};
    first_unit[i + 1] = first_unit[i] + n_ru * n_tu;
  }
  auto run = [&](int64_t u0, int64_t u1, int) {
    // Within one weight, consecutive units share a row chunk: a thread's range walks token
    // chunks of one weight block before moving on. Adjacent row units of one token chunk are
    // merged into one gemm call so decode makes one call per (thread, weight).
    int i = 0;
    int64_t u = u0;
    while (u < u1) {
      while (u >= first_unit[i + 1]) ++i;
      const Job& j = job[i];
      const int64_t v = u - first_unit[i], v_end = std::min(u1, first_unit[i + 1]) - first_unit[i];
      const int64_t ru = v / n_tu, tu = v % n_tu;
      const int64_t ru_end = n_tu == 1 ? v_end : ru + 1;
      const int64_t r0 = ru * unit_rows, r1 = std::min(j.n_out, ru_end * unit_rows);
      const int64_t t0 = tu * kUnitTok, t1 = std::min(n_tok, t0 + kUnitTok);
      j.gemm(j.n_in, j.w + r0 * j.ws, j.ws, j.xq + t0 * j.xs, j.xs, r1 - r0, t1 - t0, j.y + t0 * j.n_out + r0,
                 j.n_out);
      u += n_tu == 1 ? ru_end - ru : 1;
    }
  };
  const int64_t n_units = first_unit[n_w];
  if (pool && nth > 1 && n_units > 1)
    pool->parallel_for(n_units, run);
  else
    run(0, n_units, 0);
}

void matmul_with(const KernelTable& k, const WeightView& w, const float* x, int64_t n_tok, float* y,
                 ThreadPool* pool) {
  matmul_multi_with(k, &w, 1, x, n_tok, &y, pool);
}

void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool* pool) {
  matmul_with(kernels(), w, x, n_tok, y, pool);
}

void matmul_multi(const WeightView* w, int n_w, const float* x, int64_t n_tok, float* const* y, ThreadPool* pool) {
  matmul_multi_with(kernels(), w, n_w, x, n_tok, y, pool);
}

}  // namespace kvz

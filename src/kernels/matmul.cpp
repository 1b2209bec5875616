// matmul: quantize the activations once to the weight type's partner format, then run the
// ISA's tiled gemm over (row chunk, token chunk) work units spread over the pool.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/types.h"

namespace kvz {

namespace {

// Work unit: kUnitRows weight rows x kUnitTok tokens. 64 rows of a 576-wide Q4_1 matrix are
// 23 KB (L1-resident while a 4-token tile sweeps them); 64 tokens keep units numerous
// enough to balance 2+ threads at prefill. Decode uses 16-row units for balance.
constexpr int64_t kUnitRows = 64;
constexpr int64_t kUnitRowsDecode = 16;
constexpr int64_t kUnitTok = 64;

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

void matmul_with(const KernelTable& k, const WeightView& w, const float* x, int64_t n_tok, float* y,
                 ThreadPool* pool) {
  const TypeInfo& ti = type_info(w.type);
  if (!ti.supported) fail("matmul: weight type {} is not supported", ti.name);
  if (w.n_in <= 0 || w.n_out <= 0 || w.n_in % ti.block_size != 0)
    fail("matmul: bad weight shape [{} x {}] for type {} (n_in must be a positive multiple of {})", w.n_out,
         w.n_in, ti.name, ti.block_size);
  if (n_tok < 0) fail("matmul: negative token count {}", n_tok);
  if (n_tok == 0) return;
  if (!w.data || !x || !y) fail("matmul: null weight, input or output pointer");
  const TypeKernels& tk = k.of(w.type);
  KVZ_ASSERT(tk.gemm != nullptr, "no gemm kernel for {} in table {}", ti.name, k.isa);

  const int64_t n_in = w.n_in, n_out = w.n_out;
  const int nth = pool ? pool->size() : 1;

  // Activations in the partner format: [n_tok][xs bytes].
  const Partner partner = partner_of(w.type);
  const void* xq = x;
  size_t xs = static_cast<size_t>(n_in) * sizeof(float);
  if (partner != Partner::kF32) {
    xs = partner_row_bytes(w.type, n_in);
    uint8_t* buf = tl_scratch.get(xs * static_cast<size_t>(n_tok));
    const blk::Q8AMode mode = q8a_mode_of(w.type);
    auto quantize = [&](int64_t t0, int64_t t1, int) {
      for (int64_t it = t0; it < t1; ++it) {
        if (partner == Partner::kQ8A)
          k.quantize_q8a(x + it * n_in, n_in, buf + it * xs, mode);
        else
          k.quantize_q8k(x + it * n_in, n_in, buf + it * xs);
      }
    };
    if (pool && nth > 1 && n_tok >= 2 * nth)
      pool->parallel_for(n_tok, quantize);
    else
      quantize(0, n_tok, 0);
    xq = buf;
  }

  const size_t ws = row_bytes(w.type, n_in);
  const int64_t unit_rows = n_tok == 1 ? kUnitRowsDecode : kUnitRows;
  const int64_t n_ru = (n_out + unit_rows - 1) / unit_rows;
  const int64_t n_tu = (n_tok + kUnitTok - 1) / kUnitTok;
  auto run = [&](int64_t u0, int64_t u1, int) {
    // Consecutive units share a row chunk: a thread's range walks token chunks of one
    // weight block before moving on. Adjacent row units of one token chunk are merged
    // into one gemm call so decode makes one call per thread.
    int64_t u = u0;
    while (u < u1) {
      const int64_t ru = u / n_tu, tu = u % n_tu;
      int64_t ru_end = ru + 1;
      if (n_tu == 1) ru_end = u1;  // merge consecutive row units
      const int64_t r0 = ru * unit_rows, r1 = std::min(n_out, ru_end * unit_rows);
      const int64_t t0 = tu * kUnitTok, t1 = std::min(n_tok, t0 + kUnitTok);
      tk.gemm(n_in, static_cast<const uint8_t*>(w.data) + r0 * ws, ws, static_cast<const uint8_t*>(xq) + t0 * xs,
              xs, r1 - r0, t1 - t0, y + t0 * n_out + r0, n_out);
      u += n_tu == 1 ? ru_end - ru : 1;
    }
  };
  const int64_t n_units = n_ru * n_tu;
  if (pool && nth > 1 && n_units > 1)
    pool->parallel_for(n_units, run);
  else
    run(0, n_units, 0);
}

void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool* pool) {
  matmul_with(kernels(), w, x, n_tok, y, pool);
}

}  // namespace kvz

#include "kernels/dispatch.h"

#include <optional>

#include "kernels/ref/quant_ref.h"
#include "kernels/x86_avx2/quant_avx2.h"

namespace kvz {

namespace {

KernelTable make_reference() {
  KernelTable t;
  qref::fill_table(t);
  return t;
}

// The x86_avx2/ files are built with -mavx2 -mfma -mf16c -mbmi2; all four must be present.
bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

std::optional<KernelTable> make_avx2() {
  if (!cpu_has_avx2()) return std::nullopt;
  KernelTable t = make_reference();
  qavx2::fill_table(t);
  return t;
}

}  // namespace

// Function-local statics: built once on first use (thread-safe), immutable afterwards.
const KernelTable& kernels_reference() {
  static const KernelTable t = make_reference();
  return t;
}

const KernelTable* kernels_avx2() {
  static const std::optional<KernelTable> t = make_avx2();
  return t ? &*t : nullptr;
}

const KernelTable& kernels() {
  static const KernelTable* t = kernels_avx2() ? kernels_avx2() : &kernels_reference();
  return *t;
}

bool can_interleave(DType t) { return kernels().of(t).gemm_i4 != nullptr; }

Partner partner_of(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0: return Partner::kQ8A;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return Partner::kQ8K;
    default: return Partner::kF32;
  }
}

blk::Q8AMode q8a_mode_of(DType t) {
  switch (t) {
    case DType::Q4_1:
    case DType::Q5_1: return blk::Q8AMode::kSumFp16;
    case DType::Q4_0:
    case DType::Q5_0: return blk::Q8AMode::kSumExact;
    default: return blk::Q8AMode::kNone;
  }
}

size_t partner_row_bytes(DType t, int64_t n_in) {
  switch (partner_of(t)) {
    case Partner::kQ8A: return blk::q8a_row_bytes(n_in);
    case Partner::kQ8K: return static_cast<size_t>(n_in / blk::kQKK) * sizeof(blk::Q8_K);
    case Partner::kF32: break;
  }
  return static_cast<size_t>(n_in) * sizeof(float);
}

}  // namespace kvz

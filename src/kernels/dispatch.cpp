#include "kernels/dispatch.h"

#include <cstdlib>
#include <cstring>
#include <optional>

#include "kernels/ref/quant_ref.h"
#include "kernels/x86_avx2/quant_avx2.h"
#include "kernels/x86_avx512/quant_avx512.h"

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

// The x86_avx512/ files add -mavx512f -mavx512vl -mavx512bw -mavx512dq -mavx512vnni.
bool cpu_has_avx512vnni() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

std::optional<KernelTable> make_avx512() {
  if (!cpu_has_avx512vnni()) return std::nullopt;
  KernelTable t = *kernels_avx2();
  qavx512::fill_table(t);
  return t;
}

}  // namespace

const char* isa_override() {
  const char* e = std::getenv("KVZ_ISA");
  return e && *e ? e : nullptr;
}

// Function-local statics: built once on first use (thread-safe), immutable afterwards.
const KernelTable& kernels_reference() {
  static const KernelTable t = make_reference();
  return t;
}

const KernelTable* kernels_avx2() {
  static const std::optional<KernelTable> t = make_avx2();
  return t ? &*t : nullptr;
}

const KernelTable* kernels_avx512() {
  static const std::optional<KernelTable> t = make_avx512();
  return t ? &*t : nullptr;
}

// The best table, or the one KVZ_ISA names (ref, avx2, avx512vnni) when the CPU has it:
// for side-by-side measurements of the ISA paths. An unknown or unavailable name falls
// back to the best table (the choice is visible as kernels().isa, which `kvzip bench`
// and `kvzip info` print).
const KernelTable& kernels() {
  static const KernelTable* t = [] {
    const KernelTable* best = kernels_avx512() ? kernels_avx512() : kernels_avx2() ? kernels_avx2() : &kernels_reference();
    if (const char* want = isa_override()) {
      if (std::strcmp(want, "ref") == 0) return &kernels_reference();
      if (std::strcmp(want, "avx2") == 0 && kernels_avx2()) return kernels_avx2();
    }
    return best;
  }();
  return *t;
}

const char* kernel_isa() { return kernels().isa; }

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

#include "kernels/dispatch.h"

#include <cstdlib>
#include <cstring>
#include <optional>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/error.h"
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

#if defined(__x86_64__) || defined(__i386__)
// F16C is CPUID leaf 1, ECX bit 29. Asked directly: clang's __builtin_cpu_supports does not
// know "f16c". (The AVX2 check below covers the OS saving the YMM state.)
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx >> 29) & 1u;
}
#endif

// The x86_avx2/ files are built with -mavx2 -mfma -mf16c -mbmi2; all four must be present.
bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() &&
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

// The best kernel set the CPU runs, or the one KVZ_ISA names (ref, avx2, avx512vnni), for
// side-by-side measurements of the ISA paths. A name that is unknown, or that this CPU
// cannot run, is an error: a benchmark must not silently measure another kernel set.
Isa active_isa() {
  static const Isa isa = [] {
    const Isa best = kernels_avx512() ? Isa::kAvx512Vnni : kernels_avx2() ? Isa::kAvx2 : Isa::kRef;
    const char* want = std::getenv("KVZ_ISA");
    if (!want || !*want) return best;
    Isa asked;
    if (std::strcmp(want, "ref") == 0)
      asked = Isa::kRef;
    else if (std::strcmp(want, "avx2") == 0)
      asked = Isa::kAvx2;
    else if (std::strcmp(want, "avx512vnni") == 0)
      asked = Isa::kAvx512Vnni;
    else
      fail("KVZ_ISA={}: unknown kernel set (ref, avx2, avx512vnni)", want);
    if (static_cast<int>(asked) > static_cast<int>(best))
      fail("KVZ_ISA={}: this CPU cannot run that kernel set (the best it runs is {})", want,
           best == Isa::kAvx2 ? "avx2" : "ref");
    return asked;
  }();
  return isa;
}

const KernelTable& kernels() {
  switch (active_isa()) {
    case Isa::kAvx512Vnni: return *kernels_avx512();
    case Isa::kAvx2: return *kernels_avx2();
    case Isa::kRef: break;
  }
  return kernels_reference();
}

const char* kernel_isa() { return kernels().isa; }

int interleave_group(DType t) { return kernels().of(t).gemm_i ? kernels().of(t).group : 0; }

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

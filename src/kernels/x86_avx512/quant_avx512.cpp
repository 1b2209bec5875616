// AVX-512 VNNI matmul kernels: the AVX2 body (x86_avx2/quant_impl.h) with the integer dot
// products as vpdpbusd / vpdpwssd on ymm registers (AVX512VL encodings), which replace
// maddubs + madd (+ add) and give the same integers, so every result is bitwise the AVX2
// kernels' (test_quant: Avx512EqualsAvx2). AVX-512 also has 32 vector registers, which
// makes room for wider prefill tiles.
#include "kernels/x86_avx512/quant_avx512.h"

#define KVZ_QUANT_NS qavx512
#define KVZ_QUANT_VNNI 1
#define KVZ_QUANT_CMAX 6
#define KVZ_QUANT_KC45 6
#define KVZ_QUANT_KC6 8
#define KVZ_QUANT_KQ4R 4
#include "kernels/x86_avx2/quant_impl.h"

namespace kvz::qavx512 {

void fill_table(KernelTable& t) {
  t.isa = "avx512vnni";
  fill_common<4, 6>(t);
}

}  // namespace kvz::qavx512

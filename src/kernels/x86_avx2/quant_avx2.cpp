// AVX2 + FMA + F16C + BMI2 matmul kernels: the body in quant_impl.h with maddubs/madd dot
// products, prefill tiles of 2 weight rows x 4 tokens (16 ymm registers: R*C accumulators
// + R unpacked weight blocks).
#include "kernels/x86_avx2/quant_avx2.h"

#define KVZ_QUANT_NS qavx2
#define KVZ_QUANT_VNNI 0
#define KVZ_QUANT_CMAX 4
#define KVZ_QUANT_KC45 4
#define KVZ_QUANT_KC6 4
#define KVZ_QUANT_KQ4R 8
#include "kernels/x86_avx2/quant_impl.h"

namespace kvz::qavx2 {

void fill_table(KernelTable& t) {
  t.isa = "avx2";
  fill_common<2, 4>(t);
}

}  // namespace kvz::qavx2

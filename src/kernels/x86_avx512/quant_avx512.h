// AVX-512 (F, VL, BW, VNNI) matmul kernels for the quantized types. quant_avx512.cpp is
// compiled with those flags on top of AVX2's: call fill_table only after runtime detection
// (kernels/dispatch.cpp).
#pragma once

#include "kernels/dispatch.h"

namespace kvz::qavx512 {

// Overrides the entries of t (a copy of the AVX2 table) that have AVX-512 versions.
void fill_table(KernelTable& t);

}  // namespace kvz::qavx512

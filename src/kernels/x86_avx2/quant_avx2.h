// AVX2 + FMA + F16C + BMI2 kernels for the quantized types. quant_avx2.cpp is compiled with
// those ISA flags: call fill_table only after runtime detection (kernels/dispatch.cpp).
#pragma once

#include "kernels/dispatch.h"

namespace kvz::qavx2 {

// Overrides the entries of t (a copy of the reference table) that have AVX2 versions.
void fill_table(KernelTable& t);

}  // namespace kvz::qavx2

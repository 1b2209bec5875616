// Several matmuls of one input in one pool dispatch: y_i = x W_i^T for i < n_w. All
// weights share n_in; each output i is [n_tok][w[i].n_out]. Results are bitwise those of
// n_w separate matmul() calls (same kernels, same per-output instruction sequence); the
// saving is the activation quantization (once per partner format instead of once per
// weight) and the fork-join per weight, which for decode's small matrices (K/V 192 x 576)
// costs about as much as the work. Use for Q/K/V and gate/up.
#pragma once

#include <cstdint>

#include "kernels/types.h"

namespace kvz {

class ThreadPool;
struct KernelTable;

void matmul_multi(const WeightView* w, int n_w, const float* x, int64_t n_tok, float* const* y, ThreadPool* pool);
void matmul_multi_with(const KernelTable& k, const WeightView* w, int n_w, const float* x, int64_t n_tok,
                       float* const* y, ThreadPool* pool);

}  // namespace kvz

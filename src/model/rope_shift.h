// Moving cached keys to other positions: keys are stored post-RoPE, and a rotary embedding
// composes by adding angles, so a key computed at position p becomes the key at p + delta by
// one more rotation through delta's angles (R(p + delta) = R(delta) R(p)). Exact up to the
// rounding of the row storage (f16 or q8_0) and the f32 rotation, for every RoPE variant the
// loaders accept: plain, linear scaling (positions divided by the factor, still linear in
// p), Llama 3's per-dimension frequency divisors, interleaved or NeoX pairing, and Gemma 3's
// separate base for its sliding-window layers. Used to compose separately prefilled contexts.
#pragma once

#include <cstdint>

#include "cache/head_cache.h"
#include "model/model.h"

namespace kvz {

// Rotates n_rows keys of one head of layer il ([n_rows][d_head] f32, in place) by delta positions.
void rotate_keys(const Model& m, int il, float* k, int64_t n_rows, int64_t delta);

// Rows [r0, r0 + n) of head (il, ih): keys rotated by delta and positions moved by delta, in
// the cache's own row type (decoded, rotated, stored again). delta 0 changes nothing.
void shift_rows(const Model& m, KvCache& cache, int il, int ih, int64_t r0, int64_t n, int64_t delta);

}  // namespace kvz

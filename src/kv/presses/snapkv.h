// SnapKV's scores, shared with PyramidKV (which only changes the per-layer budgets).
#pragma once

#include "kv/press.h"

namespace kvz {

// Observation window = the last `window` rows of [sys | ctx | question]; see snapkv.cpp.
HeadScores snapkv_scores(PressInput& in, int64_t window, int64_t kernel);

}  // namespace kvz

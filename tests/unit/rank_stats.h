// Rank statistics shared by the parity tests against kvpress: score rankings are compared
// per head with Spearman's rho.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <set>
#include <vector>

namespace kvz::test {

// Ranks with ties given their average rank (the fixture generators use the same rule).
inline std::vector<double> ranks(const float* x, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] < x[b]; });
  std::vector<double> r(n);
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && x[order[j + 1]] == x[order[i]]) ++j;
    for (int64_t k = i; k <= j; ++k) r[order[k]] = 0.5 * static_cast<double>(i + j);
    i = j + 1;
  }
  return r;
}

inline double spearman(const float* a, const float* b, int64_t n) {
  std::vector<double> ra = ranks(a, n), rb = ranks(b, n);
  const double mean = 0.5 * static_cast<double>(n - 1);
  double sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return sab / std::sqrt(saa * sbb);
}

// Indices of the k largest of x[0..n), ties to the lower index (a per-head kept set).
inline std::set<int64_t> top(const float* x, int64_t n, int64_t k) {
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return x[a] > x[b]; });
  return std::set<int64_t>(idx.begin(), idx.begin() + k);
}

// |a & b| / |a|: the share of kept set a that b keeps too.
inline double overlap(const std::set<int64_t>& a, const std::set<int64_t>& b) {
  int64_t both = 0;
  for (int64_t i : a) both += b.count(i);
  return static_cast<double>(both) / static_cast<double>(a.size());
}

}  // namespace kvz::test

// Errors. Bad input (files, requests, arguments) throws kvz::Error with a message that
// says what, where and what was expected; broken internal invariants use KVZ_ASSERT,
// which stays on in release builds.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kvz {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace kvz

#define KVZ_ASSERT(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond)) ::kvz::assert_failed(#cond, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace kvz {

// An invariant broke: this is a bug in kvzip, not bad input. Report and abort so the
// state is inspectable in a debugger / core dump rather than unwound into a catch.
void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "kvzip: internal error: %s:%d: assertion '%s' failed: %s\n", file, line, expr,
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace kvz

// The server's integer parameters (src/server/request.cpp) at the edges of int64: the range is
// checked in the JSON number's own kind, so a whole double at 2^63 (what INT64_MAX becomes as a
// double) or an unsigned past INT64_MAX is a 400 naming the parameter, never a conversion
// (undefined for the double: found by the request fuzz target).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "server/api_error.h"
#include "server/request.h"

namespace {

using nlohmann::json;
using kvz::server::ApiError;
using kvz::server::Limits;
using kvz::server::parse_gen_request;

json chat_with(const char* key, const json& value) {
  json j = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  j[key] = value;
  return j;
}

// The error's parameter and message, or "" when the request is accepted.
std::string refusal(const json& j) {
  try {
    parse_gen_request(j, true, Limits{});
    return "";
  } catch (const ApiError& e) {
    return e.param + ": " + e.what();
  }
}

}  // namespace

TEST(ServerRequest, SeedTakesEveryInt64) {
  EXPECT_EQ(parse_gen_request(chat_with("seed", INT64_MAX), true, Limits{}).sampling.seed,
            static_cast<uint64_t>(INT64_MAX));
  EXPECT_EQ(parse_gen_request(chat_with("seed", INT64_MIN), true, Limits{}).sampling.seed,
            static_cast<uint64_t>(INT64_MIN));
  // -2^63 is exactly a double and an int64.
  EXPECT_EQ(parse_gen_request(chat_with("seed", -9223372036854775808.0), true, Limits{}).sampling.seed,
            static_cast<uint64_t>(INT64_MIN));
  EXPECT_EQ(parse_gen_request(chat_with("seed", 42.0), true, Limits{}).sampling.seed, 42u);
}

TEST(ServerRequest, IntegersPastInt64AreRefusedNamingTheParameter) {
  // The fuzz finding: 9.223372036854776e+18 == 2^63 as a double.
  const json parsed = json::parse(R"({"messages": [{"role": "user", "content": "hi"}], "seed": 9.223372036854776e+18})");
  std::string r = refusal(parsed);
  EXPECT_NE(r.find("seed: 'seed' is"), std::string::npos) << r;
  EXPECT_NE(r.find("outside"), std::string::npos) << r;
  r = refusal(chat_with("seed", -1.8446744073709552e19));
  EXPECT_NE(r.find("seed:"), std::string::npos) << r;
  r = refusal(chat_with("seed", uint64_t{9223372036854775808u}));
  EXPECT_NE(r.find("seed:"), std::string::npos) << r;
  r = refusal(chat_with("seed", UINT64_MAX));
  EXPECT_NE(r.find("seed:"), std::string::npos) << r;
}

TEST(ServerRequest, MaxTokensRangeHoldsForEveryNumberKind) {
  EXPECT_EQ(parse_gen_request(chat_with("max_tokens", 9.0), true, Limits{}).max_tokens, 9);
  EXPECT_NE(refusal(chat_with("max_tokens", 0)).find("max_tokens:"), std::string::npos);
  EXPECT_NE(refusal(chat_with("max_tokens", 1e300)).find("max_tokens:"), std::string::npos);
  EXPECT_NE(refusal(chat_with("max_tokens", UINT64_MAX)).find("max_tokens:"), std::string::npos);
  EXPECT_NE(refusal(chat_with("max_tokens", 9.5)).find("max_tokens:"), std::string::npos);
}

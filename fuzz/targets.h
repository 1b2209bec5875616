// The fuzz targets' bodies (fuzz/<name>.cpp), callable without libFuzzer: each takes one
// input and returns "" when the reader accepted it or the kvz::Error message when it refused
// it. Anything else (another exception, a crash, a sanitizer report) is a finding. The
// libFuzzer executables (KVZ_FUZZ=ON) wrap them in LLVMFuzzerTestOneInput; the unit tests
// (tests/unit/test_fuzz_corpus.cpp) replay fuzz/corpus/ and fuzz/regression/ through them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvz::fuzz {

std::string gguf(const uint8_t* data, size_t size);
std::string safetensors(const uint8_t* data, size_t size);
std::string tokenizer(const uint8_t* data, size_t size);
std::string config(const uint8_t* data, size_t size);
std::string chat_template(const uint8_t* data, size_t size);
std::string context(const uint8_t* data, size_t size);
std::string head_scores(const uint8_t* data, size_t size);
std::string request(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // fuzz/<name>.cpp, fuzz/corpus/<name>/, fuzz/dict/<name>.dict
  std::string (*run)(const uint8_t*, size_t);
};
inline constexpr Target kTargets[] = {
    {"gguf", gguf},       {"safetensors", safetensors}, {"tokenizer", tokenizer},     {"config", config},
    {"chat_template", chat_template}, {"context", context}, {"head_scores", head_scores}, {"request", request},
};

}  // namespace kvz::fuzz

// The libFuzzer entry point of a target (not in the replay build).
#ifdef KVZ_FUZZ_REPLAY
#define KVZ_FUZZ_ENTRY(fn)
#else
#define KVZ_FUZZ_ENTRY(fn)                                                \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    kvz::fuzz::fn(data, size);                                            \
    return 0;                                                             \
  }
#endif

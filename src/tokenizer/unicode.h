// UTF-8 helpers and the GPT-2 byte-level alphabet shared by the tokenizer sources.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvz::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), storing the code point
// in *cp; 0 when the bytes there are not well-formed (truncated, overlong, surrogate,
// > U+10FFFF, stray continuation). Same rules as PCRE2's UTF check (RFC 3629).
int decode(std::string_view s, size_t i, uint32_t* cp);

// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF).
void append(std::string& out, uint32_t cp);

// Number of bytes a lead byte announces (1..4), or 0 for a continuation/invalid lead.
int seq_len(uint8_t lead);

}  // namespace kvz::utf8

namespace kvz::byte_level {

// GPT-2 bytes_to_unicode: printable bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF map to the same
// code point; the remaining 68 bytes map to U+0100.. in byte order.
const std::array<uint32_t, 256>& byte_to_cp();
// Reverse mapping; -1 when cp is not in the alphabet.
int cp_to_byte(uint32_t cp);
// Bytes -> byte-level alphabet text (each byte becomes one code point).
std::string encode(std::string_view bytes);

}  // namespace kvz::byte_level

namespace kvz::nfc {

// Unicode NFC (UAX #15: canonical decomposition, canonical ordering, canonical
// composition, Hangul by algorithm). Ill-formed UTF-8 bytes pass through unchanged and
// act as starters that never compose. Text whose bytes are all < 0xCC (code points below
// U+0300, all NFC-stable and never second in a composition) is returned as is.
bool is_trivially_nfc(std::string_view s);
std::string normalize(std::string_view s);

}  // namespace kvz::nfc

// Checked access to JS arguments. Every native entry point reads its arguments through these: a wrong type
// throws TypeError, an out-of-range number RangeError, and no string with an embedded NUL ever reaches C (a
// NUL-truncated name would be another link's name). Each returns false with the exception pending.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace macvtap {

// A string without embedded NUL bytes.
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string* out);
// An integer-valued number within [min, max].
bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* what, int64_t min, int64_t max, int64_t* out);
// A Buffer (or any Uint8Array).
bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* what, Napi::Uint8Array* out);
// A function.
bool ArgFunction(const Napi::CallbackInfo& info, size_t index, const char* what, Napi::Function* out);

}  // namespace macvtap

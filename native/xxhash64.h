// XXH64 (seed 0), written from the published algorithm (Yann Collet's xxHash specification, "XXH64").
// Names of the device plugin's links are "mvt" + the first 12 hex digits of xxhash64(deviceID), as upstream's.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace macvtap {

uint64_t XxHash64(const uint8_t* data, size_t length, uint64_t seed);

// JS: xxhash64(data: Buffer): bigint
Napi::Value XxHash64Js(const Napi::CallbackInfo& info);

}  // namespace macvtap

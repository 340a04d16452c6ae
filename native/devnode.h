// Device node creation, which Node's fs module does not offer.
#pragma once

#include <napi.h>

namespace macvtap {

// mknod(path: string, mode: number /* permission bits */, major: number, minor: number): void — a char device.
Napi::Value Mknod(const Napi::CallbackInfo& info);

}  // namespace macvtap

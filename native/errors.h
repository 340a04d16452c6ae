// Errors leave the addon only as instances of the JS NetlinkError class registered at init, so that
// `instanceof NetlinkError` holds and errno/code/operation/link/extack are always present.
#pragma once

#include <napi.h>

#include <string>

namespace macvtap {

// Remembers the JS class to construct. Called once from the module's init function.
void SetErrorClass(Napi::Env env, Napi::Function cls);

// Builds a NetlinkError. `err` is a positive errno value; `extack` is the kernel's extended-ACK message
// (empty when the kernel gave none); `detail` replaces strerror() in the message when non-empty.
Napi::Error MakeNetlinkError(Napi::Env env, int err, const std::string& operation, const std::string& link,
                             const std::string& extack = "", const std::string& detail = "");

// Throws a NetlinkError as a pending JS exception and returns undefined for the caller to return.
Napi::Value ThrowNetlinkError(Napi::Env env, int err, const std::string& operation, const std::string& link,
                              const std::string& extack = "", const std::string& detail = "");

}  // namespace macvtap

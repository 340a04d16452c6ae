#include "errors.h"

#include <cstring>

#include "addon_data.h"
#include "errno_names.h"

namespace macvtap {

void SetErrorClass(Napi::Env env, Napi::Function cls) {
  if (AddonData* data = GetAddonData(env)) data->error_class = Napi::Persistent(cls);
}

Napi::Error MakeNetlinkError(Napi::Env env, int err, const std::string& operation, const std::string& link,
                             const std::string& extack, const std::string& detail) {
  const char* name = ErrnoName(err);
  std::string code = name != nullptr ? name : "E" + std::to_string(err);
  std::string message = operation;
  if (!link.empty()) message += " " + link;
  message += ": " + (detail.empty() ? std::string(strerror(err)) : detail);
  if (!extack.empty()) message += " (kernel: " + extack + ")";

  AddonData* data = GetAddonData(env);
  if (data == nullptr || data->error_class.IsEmpty()) {
    // Only reachable if the loader forgot to call init(); still never a raw errno.
    Napi::Error plain = Napi::Error::New(env, message);
    plain.Set("code", code);
    plain.Set("errno", Napi::Number::New(env, err));
    return plain;
  }
  Napi::Object obj = data->error_class.New({
      Napi::String::New(env, message),
      Napi::Number::New(env, err),
      Napi::String::New(env, code),
      Napi::String::New(env, operation),
      link.empty() ? env.Undefined() : Napi::String::New(env, link),
      extack.empty() ? env.Undefined() : Napi::String::New(env, extack),
  });
  return {env, obj};
}

Napi::Value ThrowNetlinkError(Napi::Env env, int err, const std::string& operation, const std::string& link,
                              const std::string& extack, const std::string& detail) {
  if (env.IsExceptionPending()) return env.Undefined();
  MakeNetlinkError(env, err, operation, link, extack, detail).ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace macvtap

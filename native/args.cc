#include "args.h"

#include <cmath>
#include <cstring>

namespace macvtap {

namespace {

bool Fail(Napi::Env env, bool range, const std::string& message) {
  if (range) {
    Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
  } else {
    Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  }
  return false;
}

std::string Ordinal(size_t index) { return "argument " + std::to_string(index + 1); }

}  // namespace

bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string* out) {
  Napi::Value value = info[index];
  if (!value.IsString()) return Fail(info.Env(), false, Ordinal(index) + " (" + what + ") must be a string");
  *out = value.As<Napi::String>().Utf8Value();
  if (out->find('\0') != std::string::npos) {
    return Fail(info.Env(), true, Ordinal(index) + " (" + what + ") must not contain a NUL byte");
  }
  return true;
}

bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* what, int64_t min, int64_t max, int64_t* out) {
  Napi::Value value = info[index];
  if (!value.IsNumber()) return Fail(info.Env(), false, Ordinal(index) + " (" + what + ") must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number) || std::trunc(number) != number) {
    return Fail(info.Env(), false, Ordinal(index) + " (" + what + ") must be an integer");
  }
  if (number < static_cast<double>(min) || number > static_cast<double>(max)) {
    return Fail(
        info.Env(), true,
        Ordinal(index) + " (" + what + ") must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  *out = static_cast<int64_t>(number);
  return true;
}

bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* what, Napi::Uint8Array* out) {
  Napi::Value value = info[index];
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return Fail(info.Env(), false, Ordinal(index) + " (" + what + ") must be a Buffer");
  }
  *out = value.As<Napi::Uint8Array>();
  return true;
}

bool ArgFunction(const Napi::CallbackInfo& info, size_t index, const char* what, Napi::Function* out) {
  Napi::Value value = info[index];
  if (!value.IsFunction()) return Fail(info.Env(), false, Ordinal(index) + " (" + what + ") must be a function");
  *out = value.As<Napi::Function>();
  return true;
}

}  // namespace macvtap

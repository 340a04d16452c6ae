// Module entry: registers the native surface described in lib/netlink/native.ts.
#include <napi.h>

#include "devnode.h"
#include "errors.h"
#include "netlink_socket.h"
#include "netns.h"

namespace macvtap {

namespace {

// init(NetlinkErrorClass): must be called once before anything else.
Napi::Value InitErrors(const Napi::CallbackInfo& info) {
  SetErrorClass(info.Env(), info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New<InitErrors>(env, "init"));
  exports.Set("NetlinkSocket", NetlinkSocket::Init(env));
  exports.Set("nsOpen", Napi::Function::New<NsOpen>(env, "nsOpen"));
  exports.Set("nsCreate", Napi::Function::New<NsCreate>(env, "nsCreate"));
  exports.Set("nsRemove", Napi::Function::New<NsRemove>(env, "nsRemove"));
  exports.Set("sysfsRead", Napi::Function::New<SysfsRead>(env, "sysfsRead"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("mknod", Napi::Function::New<Mknod>(env, "mknod"));
  return exports;
}

}  // namespace

NODE_API_MODULE(macvtap_native, Init)

}  // namespace macvtap

// Module entry: registers the native surface described in lib/netlink/native.ts.
#include <napi.h>

#include "addon_data.h"
#include "args.h"
#include "devnode.h"
#include "errors.h"
#include "netlink_socket.h"
#include "netns.h"
#include "statefs.h"
#include "xxhash64.h"

namespace macvtap {

namespace {

// init(NetlinkErrorClass): must be called once before anything else.
Napi::Value InitErrors(const Napi::CallbackInfo& info) {
  Napi::Function cls;
  if (!ArgFunction(info, 0, "errorClass", &cls)) return info.Env().Undefined();
  SetErrorClass(info.Env(), cls);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  SetUpAddonData(env);
  exports.Set("init", Napi::Function::New<InitErrors>(env, "init"));
  exports.Set("NetlinkSocket", NetlinkSocket::Init(env));
  exports.Set("nsOpen", Napi::Function::New<NsOpen>(env, "nsOpen"));
  exports.Set("nsCreate", Napi::Function::New<NsCreate>(env, "nsCreate"));
  exports.Set("nsRemove", Napi::Function::New<NsRemove>(env, "nsRemove"));
  exports.Set("sysfsMount", Napi::Function::New<SysfsMount>(env, "sysfsMount"));
  exports.Set("sysfsRead", Napi::Function::New<SysfsRead>(env, "sysfsRead"));
  exports.Set("readAt", Napi::Function::New<ReadAt>(env, "readAt"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("mknod", Napi::Function::New<Mknod>(env, "mknod"));
  // The state directory's file primitives (native/statefs.h), used only by lib/state.
  exports.Set("stateOpenDir", Napi::Function::New<StateOpenDir>(env, "stateOpenDir"));
  exports.Set("stateMkdir", Napi::Function::New<StateMkdir>(env, "stateMkdir"));
  exports.Set("stateOpen", Napi::Function::New<StateOpen>(env, "stateOpen"));
  exports.Set("stateStat", Napi::Function::New<StateStat>(env, "stateStat"));
  exports.Set("stateRename", Napi::Function::New<StateRename>(env, "stateRename"));
  exports.Set("stateUnlink", Napi::Function::New<StateUnlink>(env, "stateUnlink"));
  exports.Set("stateList", Napi::Function::New<StateList>(env, "stateList"));
  exports.Set("stateLock", Napi::Function::New<StateLock>(env, "stateLock"));
  exports.Set("stateCommit", Napi::Function::New<StateCommit>(env, "stateCommit"));
  exports.Set("xxhash64", Napi::Function::New<XxHash64Js>(env, "xxhash64"));
  return exports;
}

}  // namespace

NODE_API_MODULE(macvtap_native, Init)

}  // namespace macvtap

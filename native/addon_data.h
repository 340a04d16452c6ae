// Per-environment state of the addon (one per Node environment: the main thread and each worker).
#pragma once

#include <napi.h>

#include <set>

namespace macvtap {

struct AddonData {
  // The JS NetlinkError class errors are built from.
  Napi::FunctionReference error_class;
  // Plain fds handed to JS (namespace fds, sysfs mounts) and not yet closed through closeFd(). A worker that
  // exits without closing its handles must not leak them: the environment cleanup hook closes what is left.
  std::set<int> owned_fds;
};

// Creates the environment's data and its cleanup hook. Called once from the module's Init.
void SetUpAddonData(Napi::Env env);
AddonData* GetAddonData(Napi::Env env);

// Records an fd given to JS; ForgetFd when JS closes it.
void OwnFd(Napi::Env env, int fd);
void ForgetFd(Napi::Env env, int fd);

}  // namespace macvtap

#include "addon_data.h"

#include <unistd.h>

namespace macvtap {

namespace {

// Runs at environment teardown, before node-api finalizes wrapped objects and the instance data.
void CloseOwnedFds(void* arg) {
  auto* data = static_cast<AddonData*>(arg);
  for (int fd : data->owned_fds) close(fd);
  data->owned_fds.clear();
}

}  // namespace

void SetUpAddonData(Napi::Env env) {
  auto* data = new AddonData();
  env.SetInstanceData(data);  // freed by node-api when the environment is torn down
  napi_add_env_cleanup_hook(env, CloseOwnedFds, data);
}

AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

void OwnFd(Napi::Env env, int fd) {
  if (AddonData* data = GetAddonData(env)) data->owned_fds.insert(fd);
}

void ForgetFd(Napi::Env env, int fd) {
  if (AddonData* data = GetAddonData(env)) data->owned_fds.erase(fd);
}

}  // namespace macvtap

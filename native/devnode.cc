#include "devnode.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>

#include "errors.h"

namespace macvtap {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  mode_t mode = info[1].As<Napi::Number>().Uint32Value() & 07777;
  unsigned major_number = info[2].As<Napi::Number>().Uint32Value();
  unsigned minor_number = info[3].As<Napi::Number>().Uint32Value();
  if (mknod(path.c_str(), S_IFCHR | mode, makedev(major_number, minor_number)) < 0) {
    return ThrowNetlinkError(env, errno, "create device node", path);
  }
  return env.Undefined();
}

}  // namespace macvtap

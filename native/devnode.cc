#include "devnode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cerrno>

#include <string>

#include "args.h"
#include "errors.h"

namespace macvtap {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int64_t mode = 0;
  int64_t major_number = 0;
  int64_t minor_number = 0;
  if (!ArgString(info, 0, "path", &path) || !ArgInt(info, 1, "mode", 0, 07777, &mode) ||
      !ArgInt(info, 2, "major", 0, 0xfff, &major_number) || !ArgInt(info, 3, "minor", 0, 0xfffff, &minor_number)) {
    return env.Undefined();
  }
  dev_t dev = makedev(static_cast<unsigned>(major_number), static_cast<unsigned>(minor_number));
  // The raw syscall: glibc's mknod/mknodat symbols are GLIBC_2.33 (before, they were inline wrappers of
  // __xmknod), and the addon must load on glibc 2.28.
  if (syscall(SYS_mknodat, AT_FDCWD, path.c_str(), S_IFCHR | static_cast<mode_t>(mode), dev) < 0) {
    return ThrowNetlinkError(env, errno, "create device node", path);
  }
  return env.Undefined();
}

}  // namespace macvtap

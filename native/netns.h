// Network namespace syscalls: open-and-verify, create/remove named namespaces (as `ip netns add/del`),
// and reading a sysfs file as seen from inside a namespace.
#pragma once

#include <napi.h>

namespace macvtap {

// nsOpen(path: string): number — an O_CLOEXEC fd, verified to be a network namespace.
Napi::Value NsOpen(const Napi::CallbackInfo& info);
// nsCreate(dir: string, name: string): void — equivalent to `ip netns add NAME` with NETNS_RUN_DIR = dir.
Napi::Value NsCreate(const Napi::CallbackInfo& info);
// nsRemove(dir: string, name: string): void — equivalent to `ip netns del NAME`.
Napi::Value NsRemove(const Napi::CallbackInfo& info);
// sysfsRead(nsFd: number, path: string): string — reads `path` under a sysfs mounted for that namespace.
Napi::Value SysfsRead(const Napi::CallbackInfo& info);
// closeFd(fd: number): void
Napi::Value CloseFd(const Napi::CallbackInfo& info);

}  // namespace macvtap

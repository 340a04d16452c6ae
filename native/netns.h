// Network namespace syscalls: open-and-verify, create/remove named namespaces (as `ip netns add/del`), and
// reading sysfs files as another namespace sees them.
#pragma once

#include <napi.h>

#include <string>

namespace macvtap {

// nsOpen(path: string): number — an O_CLOEXEC fd, verified to be a network namespace. Never blocks.
Napi::Value NsOpen(const Napi::CallbackInfo& info);
// nsCreate(dir: string, name: string): void — equivalent to `ip netns add NAME` with NETNS_RUN_DIR = dir.
Napi::Value NsCreate(const Napi::CallbackInfo& info);
// nsRemove(dir: string, name: string): void — equivalent to `ip netns del NAME`.
Napi::Value NsRemove(const Napi::CallbackInfo& info);
// sysfsMount(nsFd: number): number — a detached, read-only sysfs mount of that namespace (fsopen/fsmount),
// as an O_CLOEXEC fd to read with readAt(). Fails with ENOSYS on kernels before 5.2.
Napi::Value SysfsMount(const Napi::CallbackInfo& info);
// sysfsRead(nsFd: number, path: string): string — reads `path` under a sysfs mounted for that namespace in a
// private mount namespace (one child task per call; the fallback where sysfsMount is unavailable).
Napi::Value SysfsRead(const Napi::CallbackInfo& info);
// readAt(dirFd: number, path: string): string — reads up to 4 KiB of a file relative to a directory fd.
Napi::Value ReadAt(const Napi::CallbackInfo& info);
// closeFd(fd: number): void
Napi::Value CloseFd(const Napi::CallbackInfo& info);

// Opens `path` as a verified network namespace fd. Returns fd, or -errno with *why naming what it was.
int OpenNetns(const std::string& path, std::string* why);

}  // namespace macvtap

// File primitives for the node's state directory (lib/state/fs.ts). Every name is one path component relative to a
// directory fd and is never followed if it is a symlink (O_NOFOLLOW / AT_SYMLINK_NOFOLLOW); opens never block on a
// FIFO (O_NONBLOCK) and never leak into children (O_CLOEXEC). Node's fs module reads, writes, fsyncs and closes the
// fds these return. Failures throw the registered error class with errno, its name and the operation.
#pragma once

#include <napi.h>

namespace macvtap {

// stateOpenDir(dirFd: number /* -1: relative to the cwd */, path: string): number — O_DIRECTORY|O_NOFOLLOW.
Napi::Value StateOpenDir(const Napi::CallbackInfo& info);
// stateMkdir(dirFd: number, name: string, mode: number): boolean — false when the name exists already.
Napi::Value StateMkdir(const Napi::CallbackInfo& info);
// stateOpen(dirFd: number, name: string, how: 'read' | 'create' | 'exclusive', mode: number): number
//   read: O_RDONLY; create: O_RDWR|O_CREAT; exclusive: O_WRONLY|O_CREAT|O_EXCL.
Napi::Value StateOpen(const Napi::CallbackInfo& info);
// stateStat(dirFd: number, name: string /* '' = dirFd itself */): StatxResult | null (null: no such name).
Napi::Value StateStat(const Napi::CallbackInfo& info);
// stateRename(dirFd: number, from: string, to: string): void — renameat within one directory.
Napi::Value StateRename(const Napi::CallbackInfo& info);
// stateUnlink(dirFd: number, name: string, isDir: boolean): boolean — false when the name did not exist.
Napi::Value StateUnlink(const Napi::CallbackInfo& info);
// stateList(dirFd: number): string[] — every entry but `.` and `..`, in directory order.
Napi::Value StateList(const Napi::CallbackInfo& info);
// stateLock(fd: number): boolean — flock(LOCK_EX|LOCK_NB); false when another open file description holds it.
Napi::Value StateLock(const Napi::CallbackInfo& info);
// stateCommit(fileFd, dirFd, from, to, callback(err | null)): void — fsync(fileFd), renameat(from → to),
// fsync(dirFd), in that order, on libuv's thread pool (the caller's thread keeps running).
Napi::Value StateCommit(const Napi::CallbackInfo& info);

}  // namespace macvtap

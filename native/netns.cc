#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "errors.h"
#include "unique_fd.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace macvtap {

namespace {

// Opens `path` and checks by file system magic and NS_GET_NSTYPE (not by spelling) that it is a network
// namespace. Returns fd, or -errno with `why` set.
int OpenNetns(const std::string& path, std::string* why) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  UniqueFd owned(fd);
  struct statfs fs {};
  if (fstatfs(fd, &fs) < 0) return -errno;
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    *why = "not a namespace file (expected nsfs, e.g. /var/run/netns/NAME or /proc/PID/ns/net)";
    return -EINVAL;
  }
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return -errno;
  if (type != CLONE_NEWNET) {
    *why = "a namespace, but not a network namespace";
    return -EINVAL;
  }
  return owned.release();
}

// State shared with the CLONE_VM child that reads sysfs from inside another namespace.
struct SysfsProbe {
  int ns_fd;
  const char* path;
  char data[4096];
  ssize_t length;
  int error;
  const char* step;
};

// Runs in a vfork-style child sharing our memory: raw syscalls only, then _exit.
int SysfsProbeChild(void* arg) {
  auto* probe = static_cast<SysfsProbe*>(arg);
  auto fail = [probe](const char* step) {
    probe->error = errno;
    probe->step = step;
    _exit(1);
    return 1;
  };
  if (setns(probe->ns_fd, CLONE_NEWNET) < 0) return fail("setns");
  // A private mount namespace, so the sysfs we mount shows this network namespace and nobody else sees it.
  if (unshare(CLONE_NEWNS) < 0) return fail("unshare mount namespace");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) return fail("make mounts private");
  umount2("/sys", MNT_DETACH);
  if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
    return fail("mount sysfs");
  }
  int fd = open(probe->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open");
  ssize_t n = read(fd, probe->data, sizeof(probe->data) - 1);
  if (n < 0) return fail("read");
  probe->length = n;
  _exit(0);
  return 0;
}

}  // namespace

Napi::Value NsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string why;
  int fd = OpenNetns(path, &why);
  if (fd < 0) return ThrowNetlinkError(env, -fd, "open network namespace", path, "", why);
  return Napi::Number::New(env, fd);
}

Napi::Value NsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  std::string path = dir + "/" + name;
  const char* op = "create network namespace";
  if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) return ThrowNetlinkError(env, errno, op, dir);
  // Like iproute2: make the directory a shared mount point so namespace mounts propagate to other mount
  // namespaces (containers, `ip netns exec`); bind it onto itself first if it is not a mount point yet.
  if (mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) < 0) {
    if (errno != EINVAL) return ThrowNetlinkError(env, errno, op, dir);
    if (mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) < 0) {
      return ThrowNetlinkError(env, errno, op, dir);
    }
    if (mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) < 0) return ThrowNetlinkError(env, errno, op, dir);
  }
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return ThrowNetlinkError(env, errno, op, name);
  close(fd);
  int err = 0;
  // unshare() on a private thread: the new namespace is bound to the file, the thread exits, and no thread
  // of Node's ever leaves the namespace it started in.
  std::thread worker([&] {
    if (unshare(CLONE_NEWNET) < 0) {
      err = errno;
      return;
    }
    if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) < 0) err = errno;
  });
  worker.join();
  if (err != 0) {
    unlink(path.c_str());
    return ThrowNetlinkError(env, err, op, name);
  }
  return env.Undefined();
}

Napi::Value NsRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  std::string path = dir + "/" + name;
  const char* op = "remove network namespace";
  if (umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL) return ThrowNetlinkError(env, errno, op, name);
  if (unlink(path.c_str()) < 0) return ThrowNetlinkError(env, errno, op, name);
  return env.Undefined();
}

Napi::Value SysfsRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ns_fd = info[0].As<Napi::Number>().Int32Value();
  std::string path = info[1].As<Napi::String>();
  const char* op = "read sysfs in namespace";
  SysfsProbe probe{};
  probe.ns_fd = ns_fd;
  probe.path = path.c_str();
  constexpr size_t kStack = 64 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return ThrowNetlinkError(env, errno, op, path);
  // Block every signal around the clone so no handler of Node's runs on the child's borrowed stack.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(SysfsProbeChild, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &probe);
  int clone_errno = errno;
  int status = 0;
  if (pid > 0) {
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  munmap(stack, kStack);
  if (pid < 0) return ThrowNetlinkError(env, clone_errno, op, path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    int err = probe.error != 0 ? probe.error : EIO;
    std::string detail = std::string(probe.step != nullptr ? probe.step : "child failed") + ": " + strerror(err);
    return ThrowNetlinkError(env, err, op, path, "", detail);
  }
  return Napi::String::New(env, probe.data, static_cast<size_t>(probe.length));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

}  // namespace macvtap

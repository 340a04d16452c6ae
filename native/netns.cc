#include "netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <cstdint>
#include <string>

#include "addon_data.h"
#include "args.h"
#include "child.h"
#include "errors.h"
#include "unique_fd.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
// The new mount API (Linux 5.2). glibc wraps it only since 2.36 and <linux/mount.h> clashes with
// <sys/mount.h> on older glibc, so the syscalls are made raw; their numbers are the same on every architecture.
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif

namespace macvtap {

namespace {

constexpr unsigned kFsopenCloexec = 0x1;    // FSOPEN_CLOEXEC
constexpr unsigned kFsconfigCmdCreate = 6;  // FSCONFIG_CMD_CREATE
constexpr unsigned kFsmountCloexec = 0x1;   // FSMOUNT_CLOEXEC
constexpr unsigned kMountAttrRdonly = 0x1;  // MOUNT_ATTR_RDONLY
constexpr unsigned kMountAttrNosuid = 0x2;  // MOUNT_ATTR_NOSUID
constexpr unsigned kMountAttrNodev = 0x4;   // MOUNT_ATTR_NODEV
constexpr unsigned kMountAttrNoexec = 0x8;  // MOUNT_ATTR_NOEXEC

const char* KindOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFDIR:
      return "a directory";
    case S_IFLNK:
      return "a symbolic link";
    default:
      return "not a regular file";
  }
}

const char* NamespaceName(int type) {
  switch (type) {
    case CLONE_NEWNS:
      return "mount";
    case CLONE_NEWUTS:
      return "uts";
    case CLONE_NEWIPC:
      return "ipc";
    case CLONE_NEWUSER:
      return "user";
    case CLONE_NEWPID:
      return "pid";
    case CLONE_NEWCGROUP:
      return "cgroup";
    default:
      return "non-network";
  }
}

// statx (glibc 2.28) instead of fstat (whose plain symbol is GLIBC_2.33).
int StatFd(int fd, struct statx* st) { return statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO, st); }

struct CreateArgs {
  const char* path;
};

// Child of NsCreate: a new network namespace, bound to the file. The namespace lives as long as the mount.
int CreateChild(void* data, ChildStatus* status) {
  auto* args = static_cast<CreateArgs*>(data);
  if (unshare(CLONE_NEWNET) < 0) {
    status->error = errno;
    status->step = "unshare network namespace";
    return 1;
  }
  if (mount("/proc/self/ns/net", args->path, "none", MS_BIND, nullptr) < 0) {
    status->error = errno;
    status->step = "bind the namespace to its file";
    return 1;
  }
  return 0;
}

struct MountArgs {
  int ns_fd;
  int mount_fd;
};

// Child of SysfsMount. sysfs tags its superblock with the network namespace of the task calling fsopen(), so
// the task enters the namespace first; the detached mount belongs to no mount namespace and lands in our fd
// table (CLONE_FILES).
int MountChild(void* data, ChildStatus* status) {
  auto* args = static_cast<MountArgs*>(data);
  auto fail = [status](const char* step) {
    status->error = errno;
    status->step = step;
    return 1;
  };
  if (setns(args->ns_fd, CLONE_NEWNET) < 0) return fail("setns");
  int fs = static_cast<int>(syscall(SYS_fsopen, "sysfs", kFsopenCloexec));
  if (fs < 0) return fail("fsopen sysfs");
  if (syscall(SYS_fsconfig, fs, kFsconfigCmdCreate, nullptr, nullptr, 0) < 0) {
    int err = errno;
    close(fs);
    errno = err;
    return fail("create sysfs superblock");
  }
  int mnt = static_cast<int>(syscall(SYS_fsmount, fs, kFsmountCloexec,
                                     kMountAttrRdonly | kMountAttrNosuid | kMountAttrNodev | kMountAttrNoexec));
  int err = errno;
  close(fs);
  if (mnt < 0) {
    errno = err;
    return fail("fsmount sysfs");
  }
  args->mount_fd = mnt;
  return 0;
}

// State shared with the child that reads sysfs from inside another namespace the old way.
struct SysfsProbe {
  int ns_fd;
  const char* path;
  char data[4096];
  ssize_t length;
};

int SysfsProbeChild(void* arg, ChildStatus* status) {
  auto* probe = static_cast<SysfsProbe*>(arg);
  auto fail = [status](const char* step) {
    status->error = errno;
    status->step = step;
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
  return 0;
}

}  // namespace

int OpenNetns(const std::string& path, std::string* why) {
  // O_PATH first: it opens nothing (no FIFO wait, no tty, no device driver's open side effects) yet names the
  // inode, so the type can be judged before anything is really opened.
  int probe = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (probe < 0) return -errno;
  UniqueFd probe_fd(probe);
  struct statx st {};
  if (StatFd(probe, &st) < 0) return -errno;
  if (!S_ISREG(st.stx_mode)) {
    *why = std::string("is ") + KindOf(st.stx_mode) + ", not a network namespace";
    return -EINVAL;
  }
  struct statfs fs {};
  if (fstatfs(probe, &fs) < 0) return -errno;
  if (static_cast<uint64_t>(fs.f_type) != NSFS_MAGIC) {
    *why = "is a regular file, not a namespace (expected nsfs, e.g. /var/run/netns/NAME or /proc/PID/ns/net)";
    return -EINVAL;
  }
  // Reopen the same inode for real (setns and ioctl need a non-O_PATH fd). O_NONBLOCK and O_NOCTTY keep even a
  // file swapped in meanwhile from blocking or becoming our terminal; the identity check below catches a swap.
  const int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  std::string self = "/proc/self/fd/" + std::to_string(probe);
  int fd = open(self.c_str(), flags);
  if (fd < 0 && errno == ENOENT) fd = open(path.c_str(), flags);  // no /proc: by path, verified below
  if (fd < 0) return -errno;
  UniqueFd owned(fd);
  struct statx again {};
  if (StatFd(fd, &again) < 0) return -errno;
  if (again.stx_ino != st.stx_ino || again.stx_dev_major != st.stx_dev_major ||
      again.stx_dev_minor != st.stx_dev_minor) {
    *why = "changed while it was being opened";
    return -EINVAL;
  }
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return -errno;
  if (type != CLONE_NEWNET) {
    *why = std::string("is a ") + NamespaceName(type) + " namespace, not a network namespace";
    return -EINVAL;
  }
  return owned.release();
}

Napi::Value NsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgString(info, 0, "path", &path)) return env.Undefined();
  std::string why;
  int fd = OpenNetns(path, &why);
  if (fd < 0) return ThrowNetlinkError(env, -fd, "open network namespace", path, "", why);
  OwnFd(env, fd);
  return Napi::Number::New(env, fd);
}

Napi::Value NsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir;
  std::string name;
  if (!ArgString(info, 0, "dir", &dir) || !ArgString(info, 1, "name", &name)) return env.Undefined();
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
  CreateArgs args{path.c_str()};
  std::string why;
  if (int err = RunInChild(CreateChild, &args, 0, &why)) {
    unlink(path.c_str());
    return ThrowNetlinkError(env, err, op, name, "", why);
  }
  return env.Undefined();
}

Napi::Value NsRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir;
  std::string name;
  if (!ArgString(info, 0, "dir", &dir) || !ArgString(info, 1, "name", &name)) return env.Undefined();
  std::string path = dir + "/" + name;
  const char* op = "remove network namespace";
  if (umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL) return ThrowNetlinkError(env, errno, op, name);
  if (unlink(path.c_str()) < 0) return ThrowNetlinkError(env, errno, op, name);
  return env.Undefined();
}

Napi::Value SysfsMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ns_fd = 0;
  if (!ArgInt(info, 0, "nsFd", 0, INT32_MAX, &ns_fd)) return env.Undefined();
  MountArgs args{static_cast<int>(ns_fd), -1};
  std::string why;
  if (int err = RunInChild(MountChild, &args, CLONE_FILES, &why)) {
    return ThrowNetlinkError(env, err, "mount sysfs of namespace", "", "", why);
  }
  OwnFd(env, args.mount_fd);
  return Napi::Number::New(env, args.mount_fd);
}

Napi::Value SysfsRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t ns_fd = 0;
  std::string path;
  if (!ArgInt(info, 0, "nsFd", 0, INT32_MAX, &ns_fd) || !ArgString(info, 1, "path", &path)) return env.Undefined();
  SysfsProbe probe{};
  probe.ns_fd = static_cast<int>(ns_fd);
  probe.path = path.c_str();
  std::string why;
  if (int err = RunInChild(SysfsProbeChild, &probe, 0, &why)) {
    return ThrowNetlinkError(env, err, "read sysfs in namespace", path, "", why);
  }
  return Napi::String::New(env, probe.data, static_cast<size_t>(probe.length));
}

Napi::Value ReadAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t dir_fd = 0;
  std::string path;
  if (!ArgInt(info, 0, "dirFd", 0, INT32_MAX, &dir_fd) || !ArgString(info, 1, "path", &path)) return env.Undefined();
  const char* op = "read sysfs in namespace";
  int fd = openat(static_cast<int>(dir_fd), path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return ThrowNetlinkError(env, errno, op, path);
  UniqueFd owned(fd);
  char data[4096];
  ssize_t n = 0;
  do {
    n = read(fd, data, sizeof(data));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowNetlinkError(env, errno, op, path);
  return Napi::String::New(env, data, static_cast<size_t>(n));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  if (!ArgInt(info, 0, "fd", -1, INT32_MAX, &fd)) return info.Env().Undefined();
  if (fd >= 0) {
    ForgetFd(info.Env(), static_cast<int>(fd));
    close(static_cast<int>(fd));
  }
  return info.Env().Undefined();
}

}  // namespace macvtap

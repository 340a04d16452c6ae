#include "statefs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

#include <cstdint>
#include <string>

#include "args.h"
#include "errors.h"

namespace macvtap {

namespace {

constexpr int kAlways = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;

// Reads an fd argument (-1 allowed where it means "relative to the cwd") through the checked readers of args.h.
bool ReadInt(const Napi::CallbackInfo& info, size_t i, const char* what, int* out) {
  int64_t value;
  if (!ArgInt(info, i, what, -1, INT32_MAX, &value)) return false;
  *out = static_cast<int>(value);
  return true;
}

// A name is one path component: not empty, no '/', not "." or ".." (ArgString already refuses NUL).
// `allowPath` permits '/' for the state directory's own path; `allowEmpty` permits '' (the dir fd itself).
bool ReadName(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out, bool allowPath = false,
              bool allowEmpty = false) {
  if (!ArgString(info, i, what, out)) return false;
  bool bad = (!allowPath && out->find('/') != std::string::npos) || (!allowEmpty && out->empty()) || *out == "." ||
             *out == "..";
  if (bad) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a single file name").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

int DirOrCwd(int fd) { return fd < 0 ? AT_FDCWD : fd; }

const char* TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "char";
    case S_IFBLK:
      return "block";
    default:
      return "unknown";
  }
}

// fsync → renameat → fsync(dir) off the JS thread. Owns nothing: the caller keeps both fds open until the callback.
class CommitWorker : public Napi::AsyncWorker {
 public:
  CommitWorker(Napi::Function callback, int file_fd, int dir_fd, std::string from, std::string to)
      : Napi::AsyncWorker(callback, "macvtap:stateCommit"),
        file_fd_(file_fd),
        dir_fd_(dir_fd),
        from_(std::move(from)),
        to_(std::move(to)) {}

  void Execute() override {
    if (fsync(file_fd_) < 0) {
      Fail("fsync", from_);
    } else if (renameat(dir_fd_, from_.c_str(), dir_fd_, to_.c_str()) < 0) {
      Fail("rename", to_);
    } else if (fsync(dir_fd_) < 0) {
      Fail("fsync directory", ".");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (errno_ != 0) {
      Callback().Call({MakeNetlinkError(env, errno_, operation_, name_).Value()});
    } else {
      Callback().Call({env.Null()});
    }
  }

 private:
  void Fail(const char* operation, const std::string& name) {
    errno_ = errno;
    operation_ = operation;
    name_ = name;
  }

  int file_fd_;
  int dir_fd_;
  std::string from_;
  std::string to_;
  int errno_ = 0;
  std::string operation_;
  std::string name_;
};

}  // namespace

Napi::Value StateOpenDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  std::string path;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "path", &path, true)) return env.Undefined();
  int fd = openat(DirOrCwd(dir_fd), path.c_str(), O_RDONLY | O_DIRECTORY | kAlways);
  if (fd < 0) return ThrowNetlinkError(env, errno, "open directory", path);
  return Napi::Number::New(env, fd);
}

Napi::Value StateMkdir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  int mode;
  std::string name;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "name", &name) || !ReadInt(info, 2, "mode", &mode)) {
    return env.Undefined();
  }
  if (mkdirat(DirOrCwd(dir_fd), name.c_str(), static_cast<mode_t>(mode) & 07777) < 0) {
    if (errno == EEXIST) return Napi::Boolean::New(env, false);
    return ThrowNetlinkError(env, errno, "create directory", name);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value StateOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  int mode;
  std::string name;
  std::string how;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "name", &name) || !ReadName(info, 2, "how", &how) ||
      !ReadInt(info, 3, "mode", &mode)) {
    return env.Undefined();
  }
  int flags;
  if (how == "read") {
    flags = O_RDONLY;
  } else if (how == "create") {
    flags = O_RDWR | O_CREAT;
  } else if (how == "exclusive") {
    flags = O_WRONLY | O_CREAT | O_EXCL;
  } else {
    Napi::TypeError::New(env, "how must be 'read', 'create' or 'exclusive'").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = openat(DirOrCwd(dir_fd), name.c_str(), flags | kAlways, static_cast<mode_t>(mode) & 07777);
  if (fd < 0) return ThrowNetlinkError(env, errno, "open", name);
  return Napi::Number::New(env, fd);
}

Napi::Value StateStat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  std::string name;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "name", &name, false, true)) return env.Undefined();
  // statx (glibc 2.28), not fstatat: the fstatat symbol is glibc 2.33's.
  struct statx stx {};
  int flags = AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT | (name.empty() ? AT_EMPTY_PATH : 0);
  unsigned mask = STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID | STATX_SIZE | STATX_INO | STATX_NLINK;
  if (statx(DirOrCwd(dir_fd), name.c_str(), flags, mask, &stx) < 0) {
    if (errno == ENOENT) return env.Null();
    return ThrowNetlinkError(env, errno, "stat", name.empty() ? "." : name);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", TypeName(stx.stx_mode));
  out.Set("mode", Napi::Number::New(env, stx.stx_mode & 07777));
  out.Set("uid", Napi::Number::New(env, stx.stx_uid));
  out.Set("gid", Napi::Number::New(env, stx.stx_gid));
  out.Set("size", Napi::Number::New(env, static_cast<double>(stx.stx_size)));
  out.Set("nlink", Napi::Number::New(env, stx.stx_nlink));
  // Identity of the inode, for "is the file at this name still the one I hold open".
  out.Set("id", std::to_string(stx.stx_dev_major) + ":" + std::to_string(stx.stx_dev_minor) + ":" +
                    std::to_string(stx.stx_ino));
  return out;
}

Napi::Value StateRename(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  std::string from;
  std::string to;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "from", &from) || !ReadName(info, 2, "to", &to)) {
    return env.Undefined();
  }
  if (renameat(DirOrCwd(dir_fd), from.c_str(), DirOrCwd(dir_fd), to.c_str()) < 0) {
    return ThrowNetlinkError(env, errno, "rename", to);
  }
  return env.Undefined();
}

Napi::Value StateUnlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  std::string name;
  if (!ReadInt(info, 0, "dirFd", &dir_fd) || !ReadName(info, 1, "name", &name)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBoolean()) {
    Napi::TypeError::New(env, "isDir must be a boolean").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int flags = info[2].As<Napi::Boolean>().Value() ? AT_REMOVEDIR : 0;
  if (unlinkat(DirOrCwd(dir_fd), name.c_str(), flags) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    return ThrowNetlinkError(env, errno, "remove", name);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value StateList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dir_fd;
  if (!ReadInt(info, 0, "dirFd", &dir_fd)) return env.Undefined();
  // fdopendir takes ownership of its fd: give it a fresh description of the same directory (not a dup, which
  // would share — and move — the caller's directory offset).
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ThrowNetlinkError(env, errno, "list directory", ".");
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    close(fd);
    return ThrowNetlinkError(env, err, "list directory", ".");
  }
  Napi::Array names = Napi::Array::New(env);
  uint32_t n = 0;
  errno = 0;
  while (struct dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.Set(n++, name);
    errno = 0;
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return ThrowNetlinkError(env, err, "list directory", ".");
  return names;
}

Napi::Value StateLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadInt(info, 0, "fd", &fd)) return env.Undefined();
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    return ThrowNetlinkError(env, errno, "lock", "");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value StateCommit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int file_fd;
  int dir_fd;
  std::string from;
  std::string to;
  if (!ReadInt(info, 0, "fileFd", &file_fd) || !ReadInt(info, 1, "dirFd", &dir_fd) ||
      !ReadName(info, 2, "from", &from) || !ReadName(info, 3, "to", &to)) {
    return env.Undefined();
  }
  Napi::Function callback;
  if (!ArgFunction(info, 4, "callback", &callback)) return env.Undefined();
  auto* worker = new CommitWorker(callback, file_fd, dir_fd, from, to);
  worker->Queue();  // deletes itself after OnOK/OnError
  return env.Undefined();
}

}  // namespace macvtap

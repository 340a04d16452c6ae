#include "child.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <cstdint>

namespace macvtap {

namespace {

// The children call a handful of syscall wrappers and nothing else: their deepest frame chain is a few hundred
// bytes (several KiB under AddressSanitizer, whose redzones grow frames). 256 KiB leaves ample margin; it is
// reserved, not committed (MAP_NORESERVE: only touched pages cost memory), and a PROT_NONE guard page below it
// turns an overflow into the child's SIGSEGV, reported as an error, instead of a write into our memory.
constexpr size_t kChildStack = size_t{256} * 1024;

struct Trampoline {
  ChildFunction fn;
  void* arg;
  ChildStatus* status;
};

// Returning ends the task: glibc's clone() makes the exit system call with the child function's result. No
// _exit() here: a call to a noreturn function from this stack, which AddressSanitizer does not know (it shares
// the parent's thread state), makes ASan give up on its stack bookkeeping and warn of false reports.
int Enter(void* data) {
  auto* t = static_cast<Trampoline*>(data);
  return t->fn(t->arg, t->status);
}

}  // namespace

int RunInChild(ChildFunction fn, void* arg, int extra_flags, std::string* why) {
  const auto guard = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t total = guard + kChildStack;
  void* base =
      mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    *why = std::string("cannot map a stack for the namespace task: ") + strerror(err);
    return err;
  }
  if (mprotect(base, guard, PROT_NONE) < 0) {
    int err = errno;
    munmap(base, total);
    *why = std::string("cannot protect the namespace task's stack guard: ") + strerror(err);
    return err;
  }
  ChildStatus status;
  Trampoline trampoline{fn, arg, &status};
  // The stack grows down from the end of the mapping: a page boundary plus a multiple of 16 bytes, so the ABI's
  // 16-byte stack alignment holds without rounding.
  static_assert(kChildStack % 16 == 0, "the child stack size keeps the top 16-byte aligned");
  void* top = static_cast<char*>(base) + total;

  // Block every signal for the duration (the child inherits the mask), so no handler of Node's can run on the
  // child's stack. sigprocmask rather than pthread_sigmask: the latter's symbol is GLIBC_2.32 and the addon must
  // load on glibc 2.28; on Linux both set the calling thread's mask (rt_sigprocmask).
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  // Exit signal 0: the child must not raise SIGCHLD, which libuv's child-process machinery listens for.
  pid_t pid = clone(Enter, top, CLONE_VM | CLONE_VFORK | extra_flags, &trampoline);
  int clone_errno = errno;
  int wait_status = 0;
  if (pid > 0) {
    while (waitpid(pid, &wait_status, __WALL) < 0 && errno == EINTR) {
    }
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  munmap(base, total);

  if (pid < 0) {
    *why = std::string("cannot create a task to enter the namespace: ") + strerror(clone_errno);
    return clone_errno;
  }
  if (WIFSIGNALED(wait_status)) {
    *why = std::string("namespace task killed by signal ") + std::to_string(WTERMSIG(wait_status));
    return EIO;
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    int err = status.error != 0 ? status.error : EIO;
    *why = std::string(status.step != nullptr ? status.step : "namespace task failed") + ": " + strerror(err);
    return err;
  }
  return 0;
}

}  // namespace macvtap

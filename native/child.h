// Short-lived child tasks that do one thing in another namespace, instead of threads.
//
// setns(2) changes only the calling task, and no thread of Node's may ever leave its namespace. A
// clone(CLONE_VM | CLONE_VFORK) child shares our memory, enters the namespace, does its few syscalls and
// exits; with CLONE_FILES the fds it creates (a netlink socket, a detached sysfs mount) land in our fd table.
// Compared with std::thread this needs no pthread_create (whose default symbol is GLIBC_2.34), cannot abort
// the process under -fno-exceptions when the kernel refuses a task (EAGAIN is returned as an error), and costs
// one clone instead of a thread's stack and TLS set-up.
#pragma once

#include <string>

namespace macvtap {

// What a child function reports back through shared memory.
struct ChildStatus {
  int error = 0;               // positive errno of the failed step
  const char* step = nullptr;  // which step failed (a string literal)
};

// The child's entry point: returns 0 on success; on failure sets status->error/step and returns 1.
// It runs on a private stack with every signal blocked and must use only plain syscall wrappers (no malloc,
// no locks, no C++ exceptions), because it shares the memory of a process whose other threads keep running.
using ChildFunction = int (*)(void* arg, ChildStatus* status);

// Runs fn(arg) in a child created with CLONE_VM | CLONE_VFORK | extra_flags and waits for it. Returns 0, or a
// positive errno with *why describing the failure (the step that failed, or that the task could not be created).
int RunInChild(ChildFunction fn, void* arg, int extra_flags, std::string* why);

}  // namespace macvtap

// A NETLINK_ROUTE socket bound to one network namespace for its whole life.
//
// Invariants:
// - The socket is created by a short-lived child task that entered the target namespace (child.h); neither the
//   JS thread nor libuv's pool ever changes namespace.
// - Every socket requests NETLINK_EXT_ACK and NETLINK_CAP_ACK, so errors carry the kernel's text and acks
//   stay small; request sockets also NETLINK_GET_STRICT_CHK, so the kernel rejects malformed GET requests
//   instead of ignoring what it does not understand.
// - Only datagrams from the kernel (sender port id 0) carrying the request's sequence number are a reply.
// - An environment cleanup hook (worker_threads) stops polling and closes the socket without calling JS.
// - A socket either serves requests (groups == 0) or watches multicast groups, never both, and serves at
//   most one asynchronous request at a time (the TypeScript layer queues).
// - The uv_poll handle is closed before the fd; the fd is closed in the poll handle's close callback.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace macvtap {

class NetlinkSocket : public Napi::ObjectWrap<NetlinkSocket> {
 public:
  static Napi::Function Init(Napi::Env env);

  // JS: new NetlinkSocket(nsFd: number /* -1: current namespace */, groups: number)
  explicit NetlinkSocket(const Napi::CallbackInfo& info);
  ~NetlinkSocket() override;
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

 private:
  // One reply of the kernel to one request: the data messages, or an error.
  struct Reply {
    std::vector<std::string> messages;
    int error = 0;             // positive errno
    std::string extack;        // kernel's extended-ACK text
    bool interrupted = false;  // NLM_F_DUMP_INTR seen: the dump is inconsistent
    bool done = false;
  };

  struct PendingRequest {
    uint32_t seq = 0;
    std::string operation;
    std::string link;
    Reply reply;
    Napi::FunctionReference callback;
    std::unique_ptr<Napi::AsyncContext> context;
  };

  Napi::Value RequestSync(const Napi::CallbackInfo& info);
  Napi::Value Request(const Napi::CallbackInfo& info);
  Napi::Value Watch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetPortId(const Napi::CallbackInfo& info);

  bool CheckOpen(Napi::Env env, const char* operation);
  // Reads (request, operation, link) and checks the socket can take a request now.
  bool ReadRequestArgs(const Napi::CallbackInfo& info, Napi::Uint8Array* request, std::string* operation,
                       std::string* link);
  // Stamps a sequence number into the request and sends it. Returns 0 or a positive errno.
  int Send(Napi::Uint8Array request, uint32_t* seq);
  // Receives one datagram from the kernel (growing the buffer to fit; datagrams of other senders are dropped).
  // Returns its length, 0 when nothing is queued, or -errno.
  ssize_t ReceiveDatagram(int flags);
  // Folds the messages of one datagram into `reply` (only those carrying `seq`).
  void Absorb(size_t length, uint32_t seq, Reply* reply) const;
  static Napi::Value ReplyToJs(Napi::Env env, Reply& reply, const std::string& operation, const std::string& link);

  bool StartPoll(Napi::Env env);
  void StopPoll();
  void ClosePollAndFd();
  static void OnPoll(uv_poll_t* handle, int status, int events);
  void OnRequestReadable(int error);
  void OnWatchReadable(int error);
  // Environment teardown (worker exit): release the socket and poller, drop JS references, call nothing.
  static void OnEnvironmentCleanup(void* arg);

  UniqueFd fd_;
  uint32_t groups_ = 0;
  uint32_t next_seq_ = 1;
  std::vector<uint8_t> buffer_;
  uv_poll_t* poll_ = nullptr;  // owned; freed in its close callback
  std::unique_ptr<PendingRequest> pending_;
  Napi::FunctionReference watch_callback_;
  std::unique_ptr<Napi::AsyncContext> watch_context_;
  Napi::Env env_;
  int refs_ = 0;  // Ref()s taken for an in-flight request or a watch
  bool cleanup_registered_ = false;
};

}  // namespace macvtap

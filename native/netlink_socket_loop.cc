// The main-loop side of NetlinkSocket: asynchronous requests and multicast watches, read on the main loop by a
// uv_poll handle (never on a thread of libuv's pool), and the handle's life: started on demand, stopped between
// requests, closed before the fd it polls. The socket itself, its sync requests and reply parsing are in
// netlink_socket.cc.
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "args.h"
#include "errors.h"
#include "netlink_socket.h"

namespace macvtap {

namespace {

// What a closing poll handle's close callback frees: uv wants the handle closed before the fd it polls.
struct ClosingPoll {
  uv_poll_t* handle;
  UniqueFd fd;
};

// Datagrams read per readable event, so one busy socket cannot hold the main loop.
constexpr int kMaxDatagramsPerTick = 64;

}  // namespace

// request(request: Buffer, operation: string, link: string, callback: (err, messages) => void): void
Napi::Value NetlinkSocket::Request(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array request;
  std::string operation;
  std::string link;
  Napi::Function callback;
  if (!ReadRequestArgs(info, &request, &operation, &link) || !ArgFunction(info, 3, "callback", &callback)) {
    return env.Undefined();
  }
  auto pending = std::make_unique<PendingRequest>();
  if (int err = Send(request, &pending->seq)) return ThrowNetlinkError(env, err, operation, link);
  pending->operation = std::move(operation);
  pending->link = std::move(link);
  pending->callback = Napi::Persistent(callback);
  pending->context = std::make_unique<Napi::AsyncContext>(env, "NetlinkRequest");
  if (!StartPoll(env)) return env.Undefined();  // nothing kept: the late reply is skipped by its seq
  pending_ = std::move(pending);
  Ref();  // keep this object alive while the kernel owes us a reply
  refs_ += 1;
  return env.Undefined();
}

// watch(callback: (err, messages) => void): void — delivers multicast messages on the main loop.
Napi::Value NetlinkSocket::Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function callback;
  if (!ArgFunction(info, 0, "callback", &callback)) return env.Undefined();
  if (!CheckOpen(env, "watch links")) return env.Undefined();
  if (groups_ == 0 || !watch_callback_.IsEmpty()) {
    return ThrowNetlinkError(env, EINVAL, "watch links", "", "", "socket has no groups or is already watching");
  }
  if (!StartPoll(env)) return env.Undefined();
  watch_callback_ = Napi::Persistent(callback);
  watch_context_ = std::make_unique<Napi::AsyncContext>(env, "NetlinkWatch");
  Ref();  // a watcher lives until closed
  refs_ += 1;
  return env.Undefined();
}

bool NetlinkSocket::StartPoll(Napi::Env env) {
  if (poll_ == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowNetlinkError(env, EINVAL, "poll netlink socket", "", "", "no event loop");
      return false;
    }
    auto* handle = new uv_poll_t;
    int rc = uv_poll_init(loop, handle, fd_.get());
    if (rc != 0) {
      delete handle;  // an initialised-but-failed handle was never registered with the loop
      ThrowNetlinkError(env, -rc, "poll netlink socket", "");
      return false;
    }
    handle->data = this;
    poll_ = handle;
  }
  int rc = uv_poll_start(poll_, UV_READABLE, &NetlinkSocket::OnPoll);
  if (rc != 0) {
    // The handle stays owned by this object (closed with the fd); a later request may start it again.
    ThrowNetlinkError(env, -rc, "poll netlink socket", "");
    return false;
  }
  return true;
}

void NetlinkSocket::StopPoll() {
  if (poll_ != nullptr) uv_poll_stop(poll_);
}

void NetlinkSocket::ClosePollAndFd() {
  if (poll_ == nullptr) {
    fd_.reset();
    return;
  }
  // uv requires the handle to be closed before its fd: the close callback closes the fd.
  uv_poll_t* handle = poll_;
  poll_ = nullptr;
  uv_poll_stop(handle);
  handle->data = new ClosingPoll{handle, std::move(fd_)};
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) {
    auto* closing = static_cast<ClosingPoll*>(h->data);
    uv_poll_t* poll = closing->handle;
    delete closing;  // closes the fd, now that uv no longer polls it
    delete poll;
  });
}

void NetlinkSocket::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<NetlinkSocket*>(handle->data);
  if (self == nullptr) return;
  int error = 0;
  if (status < 0) {
    // libuv turns POLLERR into an error status and stops the handle. A netlink socket raises POLLERR for a
    // pending socket error, above all ENOBUFS when the kernel dropped multicast messages: recv() below
    // returns (and clears) that error, so the user hears of it, and polling resumes. If polling cannot resume,
    // the waiter is told so instead of waiting forever.
    int rc = uv_poll_start(handle, UV_READABLE, &NetlinkSocket::OnPoll);
    if (rc != 0) error = -rc;
  }
  if (self->pending_) {
    self->OnRequestReadable(error);
  } else if (!self->watch_callback_.IsEmpty()) {
    self->OnWatchReadable(error);
  } else {
    self->StopPoll();
  }
}

void NetlinkSocket::OnRequestReadable(int error) {
  PendingRequest& request = *pending_;
  for (int i = 0; i < kMaxDatagramsPerTick && !request.reply.done; ++i) {
    ssize_t got = ReceiveDatagram(MSG_DONTWAIT);
    if (got == 0) break;
    if (got < 0) {
      request.reply.error = static_cast<int>(-got);
      request.reply.done = true;
      break;
    }
    Absorb(static_cast<size_t>(got), request.seq, &request.reply);
  }
  if (!request.reply.done) {
    if (error == 0) return;  // wait for the next readable event
    request.reply.error = error;
  }
  StopPoll();
  std::unique_ptr<PendingRequest> finished = std::move(pending_);
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  Napi::Value result = ReplyToJs(env, finished->reply, finished->operation, finished->link);
  if (refs_ > 0) {
    refs_ -= 1;
    Unref();
  }
  if (result.IsArray()) {
    finished->callback.MakeCallback(env.Global(), {env.Null(), result}, *finished->context);
  } else {
    finished->callback.MakeCallback(env.Global(), {result}, *finished->context);
  }
}

void NetlinkSocket::OnWatchReadable(int poll_error) {
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  std::vector<std::string> messages;
  int error = 0;
  for (int i = 0; i < kMaxDatagramsPerTick; ++i) {
    ssize_t got = ReceiveDatagram(MSG_DONTWAIT);
    if (got == 0) break;
    if (got < 0) {
      error = static_cast<int>(-got);  // ENOBUFS: the kernel dropped events for us
      break;
    }
    const uint8_t* data = buffer_.data();
    auto left = static_cast<size_t>(got);
    while (left >= sizeof(nlmsghdr)) {
      const auto* header = reinterpret_cast<const nlmsghdr*>(data);
      if (header->nlmsg_len < sizeof(nlmsghdr) || header->nlmsg_len > left) break;
      if (header->nlmsg_type >= NLMSG_MIN_TYPE) {
        messages.emplace_back(reinterpret_cast<const char*>(data), header->nlmsg_len);
      }
      size_t step = NLMSG_ALIGN(header->nlmsg_len);
      if (step >= left) break;
      data += step;
      left -= step;
    }
  }
  if (error == 0) error = poll_error;
  if (!messages.empty()) {
    Reply reply;
    reply.messages = std::move(messages);
    Napi::Value batch = ReplyToJs(env, reply, "watch links", "");
    watch_callback_.MakeCallback(env.Global(), {env.Null(), batch}, *watch_context_);
  }
  // The callback may have closed the socket.
  if (error != 0 && !watch_callback_.IsEmpty()) {
    Napi::Value err = MakeNetlinkError(env, error, "watch links", "", "",
                                       error == ENOBUFS ? "events were lost (receive buffer overrun); resync"
                                                        : std::string(strerror(error)))
                          .Value();
    watch_callback_.MakeCallback(env.Global(), {err}, *watch_context_);
  }
}

}  // namespace macvtap

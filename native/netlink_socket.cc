#include "netlink_socket.h"

#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>

#include <thread>

#include "errors.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace macvtap {

namespace {

constexpr size_t kInitialBuffer = 64 * 1024;
constexpr int kMaxDatagramsPerTick = 64;
constexpr int kSocketReceiveBuffer = 4 * 1024 * 1024;

// Creates the socket in the namespace `ns_fd` (or the current one for -1). Returns fd or -errno.
int CreateSocketIn(int ns_fd, uint32_t groups) {
  auto create = [groups]() -> int {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0) return -errno;
    UniqueFd owned(fd);
    int one = 1;
    // Both are best effort: kernels before 4.12 / 4.3 lack them and still work, just with terser errors.
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    if (groups != 0) {
      int size = kSocketReceiveBuffer;
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    addr.nl_groups = groups;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return -errno;
    return owned.release();
  };
  if (ns_fd < 0) return create();
  int result = -EINVAL;
  // setns() changes only the calling thread, so a private thread enters the namespace, creates the socket
  // (which stays bound to that namespace) and exits.
  std::thread worker([&] {
    if (setns(ns_fd, CLONE_NEWNET) < 0) {
      result = -errno;
      return;
    }
    result = create();
  });
  worker.join();
  return result;
}

// Reads NLMSGERR_ATTR_MSG from the TLVs that follow an error/done payload.
std::string ParseExtack(const uint8_t* tlv, size_t length) {
  while (length >= NLA_HDRLEN) {
    const auto* attr = reinterpret_cast<const nlattr*>(tlv);
    if (attr->nla_len < NLA_HDRLEN || attr->nla_len > length) break;
    if ((attr->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* text = reinterpret_cast<const char*>(tlv + NLA_HDRLEN);
      return std::string(text, strnlen(text, attr->nla_len - NLA_HDRLEN));
    }
    size_t step = NLA_ALIGN(attr->nla_len);
    if (step >= length) break;
    tlv += step;
    length -= step;
  }
  return "";
}

}  // namespace

Napi::Function NetlinkSocket::Init(Napi::Env env) {
  return DefineClass(env, "NetlinkSocket",
                     {
                         InstanceMethod<&NetlinkSocket::RequestSync>("requestSync"),
                         InstanceMethod<&NetlinkSocket::Request>("request"),
                         InstanceMethod<&NetlinkSocket::Watch>("watch"),
                         InstanceMethod<&NetlinkSocket::Close>("close"),
                         InstanceAccessor<&NetlinkSocket::GetFd>("fd"),
                     });
}

NetlinkSocket::NetlinkSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkSocket>(info), env_(info.Env()) {
  int ns_fd = info[0].As<Napi::Number>().Int32Value();
  groups_ = info[1].As<Napi::Number>().Uint32Value();
  int fd = CreateSocketIn(ns_fd, groups_);
  if (fd < 0) {
    ThrowNetlinkError(info.Env(), -fd, "open netlink socket", "");
    return;
  }
  fd_.reset(fd);
  buffer_.resize(kInitialBuffer);
}

NetlinkSocket::~NetlinkSocket() {
  // A collected socket whose poll handle is still open hands the fd to the close callback.
  ClosePollAndFd();
}

bool NetlinkSocket::CheckOpen(Napi::Env env, const char* operation) {
  if (fd_.valid()) return true;
  ThrowNetlinkError(env, EBADF, operation, "", "", "netlink socket is closed");
  return false;
}

int NetlinkSocket::Send(Napi::Buffer<uint8_t> request, uint32_t* seq) {
  if (request.Length() < sizeof(nlmsghdr)) return EINVAL;
  auto* header = reinterpret_cast<nlmsghdr*>(request.Data());
  if (header->nlmsg_len != request.Length()) return EINVAL;
  *seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  header->nlmsg_seq = *seq;
  header->nlmsg_pid = 0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t sent =
        sendto(fd_.get(), request.Data(), request.Length(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
    if (sent >= 0) return 0;
    if (errno == EINTR) continue;
    return errno;
  }
}

ssize_t NetlinkSocket::ReceiveDatagram(int flags) {
  for (;;) {
    // Peek with MSG_TRUNC to learn the datagram's real size, so no message is ever cut short.
    ssize_t size = recv(fd_.get(), buffer_.data(), buffer_.size(), flags | MSG_PEEK | MSG_TRUNC);
    if (size < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -errno;
    }
    if (static_cast<size_t>(size) > buffer_.size()) buffer_.resize(static_cast<size_t>(size));
    ssize_t got = recv(fd_.get(), buffer_.data(), buffer_.size(), flags);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -errno;
    }
    return got;
  }
}

void NetlinkSocket::Absorb(size_t length, uint32_t seq, Reply* reply) const {
  const uint8_t* data = buffer_.data();
  size_t left = length;
  while (left >= sizeof(nlmsghdr)) {
    const auto* header = reinterpret_cast<const nlmsghdr*>(data);
    if (header->nlmsg_len < sizeof(nlmsghdr) || header->nlmsg_len > left) break;
    if (header->nlmsg_seq == seq && !reply->done) {
      if (header->nlmsg_flags & NLM_F_DUMP_INTR) reply->interrupted = true;
      const uint8_t* payload = data + NLMSG_HDRLEN;
      size_t payload_len = header->nlmsg_len - NLMSG_HDRLEN;
      if (header->nlmsg_type == NLMSG_ERROR && payload_len >= sizeof(nlmsgerr)) {
        const auto* err = reinterpret_cast<const nlmsgerr*>(payload);
        reply->error = -err->error;
        reply->done = true;
        if (err->error != 0 && (header->nlmsg_flags & NLM_F_ACK_TLVS)) {
          size_t offset = sizeof(nlmsgerr);
          if (!(header->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
          offset = NLMSG_ALIGN(offset);
          if (offset < payload_len) reply->extack = ParseExtack(payload + offset, payload_len - offset);
        }
      } else if (header->nlmsg_type == NLMSG_DONE) {
        reply->done = true;
        if (payload_len >= sizeof(int)) {
          int status = *reinterpret_cast<const int*>(payload);
          if (status < 0) {
            reply->error = -status;
            if (header->nlmsg_flags & NLM_F_ACK_TLVS) {
              size_t offset = NLMSG_ALIGN(sizeof(int));
              if (offset < payload_len) reply->extack = ParseExtack(payload + offset, payload_len - offset);
            }
          }
        }
      } else if (header->nlmsg_type >= NLMSG_MIN_TYPE) {
        reply->messages.emplace_back(reinterpret_cast<const char*>(data), header->nlmsg_len);
      }
    }
    size_t step = NLMSG_ALIGN(header->nlmsg_len);
    if (step >= left) break;
    data += step;
    left -= step;
  }
}

Napi::Value NetlinkSocket::ReplyToJs(Napi::Env env, Reply& reply, const std::string& operation,
                                     const std::string& link) {
  if (reply.error != 0) return MakeNetlinkError(env, reply.error, operation, link, reply.extack).Value();
  if (reply.interrupted) {
    return MakeNetlinkError(env, EINTR, operation, link, "", "dump interrupted by a concurrent change").Value();
  }
  Napi::Array out = Napi::Array::New(env, reply.messages.size());
  for (size_t i = 0; i < reply.messages.size(); ++i) {
    const std::string& m = reply.messages[i];
    out.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(m.data()), m.size()));
  }
  return out;
}

// requestSync(request: Buffer, operation: string, link: string): Buffer[]
Napi::Value NetlinkSocket::RequestSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "netlink request")) return env.Undefined();
  std::string operation = info[1].As<Napi::String>();
  std::string link = info[2].As<Napi::String>();
  if (groups_ != 0 || pending_) {
    return ThrowNetlinkError(env, EBUSY, operation, link, "", "socket is busy (watching or serving a request)");
  }
  uint32_t seq = 0;
  if (int err = Send(info[0].As<Napi::Buffer<uint8_t>>(), &seq)) return ThrowNetlinkError(env, err, operation, link);
  Reply reply;
  while (!reply.done) {
    ssize_t got = ReceiveDatagram(0);
    if (got == 0) {
      // The socket is non-blocking (it is shared with uv_poll users); wait for the kernel here.
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return ThrowNetlinkError(env, errno, operation, link);
      continue;
    }
    if (got < 0) return ThrowNetlinkError(env, static_cast<int>(-got), operation, link);
    Absorb(static_cast<size_t>(got), seq, &reply);
  }
  Napi::Value result = ReplyToJs(env, reply, operation, link);
  if (result.IsArray()) return result;
  Napi::Error(env, result).ThrowAsJavaScriptException();
  return env.Undefined();
}

// request(request: Buffer, operation: string, link: string, callback: (err, messages) => void): void
Napi::Value NetlinkSocket::Request(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "netlink request")) return env.Undefined();
  std::string operation = info[1].As<Napi::String>();
  std::string link = info[2].As<Napi::String>();
  if (groups_ != 0 || pending_) {
    return ThrowNetlinkError(env, EBUSY, operation, link, "", "socket is busy (watching or serving a request)");
  }
  auto pending = std::make_unique<PendingRequest>();
  if (int err = Send(info[0].As<Napi::Buffer<uint8_t>>(), &pending->seq)) {
    return ThrowNetlinkError(env, err, operation, link);
  }
  pending->operation = std::move(operation);
  pending->link = std::move(link);
  pending->callback = Napi::Persistent(info[3].As<Napi::Function>());
  pending->context = std::make_unique<Napi::AsyncContext>(env, "NetlinkRequest");
  pending_ = std::move(pending);
  if (!StartPoll(env)) {
    pending_.reset();
    return env.Undefined();
  }
  Ref();  // keep this object alive while the kernel owes us a reply
  return env.Undefined();
}

// watch(callback: (err, messages) => void): void — delivers multicast messages on the main loop.
Napi::Value NetlinkSocket::Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "watch links")) return env.Undefined();
  if (groups_ == 0 || !watch_callback_.IsEmpty()) {
    return ThrowNetlinkError(env, EINVAL, "watch links", "", "", "socket has no groups or is already watching");
  }
  watch_callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  watch_context_ = std::make_unique<Napi::AsyncContext>(env, "NetlinkWatch");
  if (!StartPoll(env)) {
    watch_callback_.Reset();
    watch_context_.reset();
    return env.Undefined();
  }
  Ref();  // a watcher lives until closed
  return env.Undefined();
}

Napi::Value NetlinkSocket::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool had_pending = pending_ != nullptr;
  bool had_watch = !watch_callback_.IsEmpty();
  std::unique_ptr<PendingRequest> pending = std::move(pending_);
  watch_callback_.Reset();
  watch_context_.reset();
  ClosePollAndFd();
  if (had_pending) {
    Unref();
    Napi::HandleScope scope(env);
    Napi::Value err =
        MakeNetlinkError(env, ECANCELED, pending->operation, pending->link, "", "socket closed before the reply")
            .Value();
    pending->callback.MakeCallback(env.Global(), {err}, *pending->context);
  }
  if (had_watch) Unref();
  return env.Undefined();
}

Napi::Value NetlinkSocket::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.get()); }

bool NetlinkSocket::StartPoll(Napi::Env env) {
  if (poll_ == nullptr) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, fd_.get());
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      ThrowNetlinkError(env, -rc, "poll netlink socket", "");
      return false;
    }
    poll_->data = this;
  }
  int rc = uv_poll_start(poll_, UV_READABLE, &NetlinkSocket::OnPoll);
  if (rc != 0) {
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
  handle->data = reinterpret_cast<void*>(static_cast<intptr_t>(fd_.release()));
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) {
    int fd = static_cast<int>(reinterpret_cast<intptr_t>(h->data));
    if (fd >= 0) ::close(fd);
    delete reinterpret_cast<uv_poll_t*>(h);
  });
}

void NetlinkSocket::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<NetlinkSocket*>(handle->data);
  if (self == nullptr) return;
  if (status < 0) {
    // libuv turns POLLERR into an error status and stops the handle. A netlink socket raises POLLERR for a
    // pending socket error, above all ENOBUFS when the kernel dropped multicast messages: recv() below
    // returns (and clears) that error, so the user hears of it, and polling resumes.
    if (uv_poll_start(handle, UV_READABLE, &NetlinkSocket::OnPoll) != 0) return;
  }
  if (self->pending_) {
    self->OnRequestReadable();
  } else if (!self->watch_callback_.IsEmpty()) {
    self->OnWatchReadable();
  } else {
    self->StopPoll();
  }
}

void NetlinkSocket::OnRequestReadable() {
  PendingRequest& request = *pending_;
  for (int i = 0; i < kMaxDatagramsPerTick && !request.reply.done; ++i) {
    ssize_t got = ReceiveDatagram(MSG_DONTWAIT);
    if (got == 0) return;  // wait for the next readable event
    if (got < 0) {
      request.reply.error = static_cast<int>(-got);
      request.reply.done = true;
      break;
    }
    Absorb(static_cast<size_t>(got), request.seq, &request.reply);
  }
  if (!request.reply.done) return;
  StopPoll();
  std::unique_ptr<PendingRequest> finished = std::move(pending_);
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  Napi::Value result = ReplyToJs(env, finished->reply, finished->operation, finished->link);
  Unref();
  if (result.IsArray()) {
    finished->callback.MakeCallback(env.Global(), {env.Null(), result}, *finished->context);
  } else {
    finished->callback.MakeCallback(env.Global(), {result}, *finished->context);
  }
}

void NetlinkSocket::OnWatchReadable() {
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
    size_t left = static_cast<size_t>(got);
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

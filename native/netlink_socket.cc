// NetlinkSocket: creating the socket in its namespace, synchronous requests, and folding datagrams into
// replies. The main-loop side (async requests, watches, the poll handle) is in netlink_socket_loop.cc.
#include "netlink_socket.h"

#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "args.h"
#include "child.h"
#include "errors.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace macvtap {

namespace {

constexpr size_t kInitialBuffer = size_t{64} * 1024;
constexpr int kWatchReceiveBuffer = 4 * 1024 * 1024;
constexpr int64_t kMaxTimeoutMs = 24LL * 3600 * 1000;

// Creates and configures the socket in the calling task's namespace. Returns fd or -errno. Plain syscalls only:
// it also runs in a child task (see child.h).
int CreateSocketHere(uint32_t groups) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  int one = 1;
  // All best effort: kernels before 4.12 / 4.3 / 4.20 lack them and still work, with terser errors and laxer
  // request checking.
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  if (groups == 0) {
    setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
  } else {
    // A watcher needs room for bursts (a mass delete emits one message per link). SO_RCVBUFFORCE passes
    // net.core.rmem_max with CAP_NET_ADMIN; without it, SO_RCVBUF gets what the limit allows.
    int size = kWatchReceiveBuffer;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = groups;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

struct SocketArgs {
  int ns_fd;
  uint32_t groups;
  int result;
};

// Child task: enter the namespace, create the socket (it stays bound to that namespace) in the shared fd table.
int SocketChild(void* data, ChildStatus* status) {
  auto* args = static_cast<SocketArgs*>(data);
  if (setns(args->ns_fd, CLONE_NEWNET) < 0) {
    status->error = errno;
    status->step = "setns";
    return 1;
  }
  args->result = CreateSocketHere(args->groups);
  if (args->result < 0) {
    status->error = -args->result;
    status->step = "create netlink socket";
    return 1;
  }
  return 0;
}

// Reads NLMSGERR_ATTR_MSG from the TLVs that follow an error/done payload.
std::string ParseExtack(const uint8_t* tlv, size_t length) {
  while (length >= NLA_HDRLEN) {
    const auto* attr = reinterpret_cast<const nlattr*>(tlv);
    if (attr->nla_len < NLA_HDRLEN || attr->nla_len > length) break;
    if ((attr->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* text = reinterpret_cast<const char*>(tlv + NLA_HDRLEN);
      return {text, strnlen(text, attr->nla_len - NLA_HDRLEN)};
    }
    size_t step = NLA_ALIGN(attr->nla_len);
    if (step >= length) break;
    tlv += step;
    length -= step;
  }
  return "";
}

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
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
                         InstanceAccessor<&NetlinkSocket::GetPortId>("portId"),
                     });
}

NetlinkSocket::NetlinkSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkSocket>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  int64_t ns_fd = 0;
  int64_t groups = 0;
  if (!ArgInt(info, 0, "nsFd", -1, INT32_MAX, &ns_fd) || !ArgInt(info, 1, "groups", 0, UINT32_MAX, &groups)) return;
  groups_ = static_cast<uint32_t>(groups);
  int fd = -1;
  std::string why;
  if (ns_fd < 0) {
    fd = CreateSocketHere(groups_);
    if (fd < 0) {
      ThrowNetlinkError(env, -fd, "open netlink socket", "");
      return;
    }
  } else {
    SocketArgs args{static_cast<int>(ns_fd), groups_, -1};
    if (int err = RunInChild(SocketChild, &args, CLONE_FILES, &why)) {
      ThrowNetlinkError(env, err, "open netlink socket", "", "", why);
      return;
    }
    fd = args.result;
  }
  fd_.reset(fd);
  buffer_.resize(kInitialBuffer);
  if (napi_add_env_cleanup_hook(env, &NetlinkSocket::OnEnvironmentCleanup, this) == napi_ok) {
    cleanup_registered_ = true;
  }
}

NetlinkSocket::~NetlinkSocket() {
  if (cleanup_registered_) napi_remove_env_cleanup_hook(env_, &NetlinkSocket::OnEnvironmentCleanup, this);
  // A collected socket whose poll handle is still open hands the fd to the close callback.
  ClosePollAndFd();
}

void NetlinkSocket::OnEnvironmentCleanup(void* arg) {
  auto* self = static_cast<NetlinkSocket*>(arg);
  self->cleanup_registered_ = false;  // hooks run once; removing it afterwards would be an error
  // The loop still runs once more for closing handles, so uv_close's callback (which closes the fd) runs.
  self->ClosePollAndFd();
  self->pending_.reset();
  self->watch_callback_.Reset();
  self->watch_context_.reset();
  while (self->refs_ > 0) {
    self->refs_ -= 1;
    self->Unref();
  }
}

bool NetlinkSocket::CheckOpen(Napi::Env env, const char* operation) {
  if (fd_.valid()) return true;
  ThrowNetlinkError(env, EBADF, operation, "", "", "netlink socket is closed");
  return false;
}

bool NetlinkSocket::ReadRequestArgs(const Napi::CallbackInfo& info, Napi::Uint8Array* request, std::string* operation,
                                    std::string* link) {
  Napi::Env env = info.Env();
  if (!ArgBuffer(info, 0, "request", request) || !ArgString(info, 1, "operation", operation) ||
      !ArgString(info, 2, "link", link)) {
    return false;
  }
  if (!CheckOpen(env, operation->c_str())) return false;
  if (groups_ != 0 || pending_) {
    ThrowNetlinkError(env, EBUSY, *operation, *link, "", "socket is busy (watching or serving a request)");
    return false;
  }
  if (request->ByteLength() < sizeof(nlmsghdr) ||
      reinterpret_cast<const nlmsghdr*>(request->Data())->nlmsg_len != request->ByteLength()) {
    Napi::RangeError::New(env, "request must be one netlink message whose nlmsg_len is its length")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

int NetlinkSocket::Send(Napi::Uint8Array request, uint32_t* seq) {
  auto* header = reinterpret_cast<nlmsghdr*>(request.Data());
  *seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  header->nlmsg_seq = *seq;
  header->nlmsg_pid = 0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t sent = sendto(fd_.get(), request.Data(), request.ByteLength(), 0, reinterpret_cast<sockaddr*>(&kernel),
                          sizeof(kernel));
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
    sockaddr_nl from{};
    socklen_t from_len = sizeof(from);
    ssize_t got =
        recvfrom(fd_.get(), buffer_.data(), buffer_.size(), flags, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -errno;
    }
    // Any process can unicast to our port id; only the kernel's word (port 0) counts.
    if (from_len >= sizeof(from) && from.nl_pid != 0) continue;
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
          int status = 0;
          memcpy(&status, payload, sizeof(status));
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

// requestSync(request: Buffer, operation: string, link: string, timeoutMs: number): Buffer[]
Napi::Value NetlinkSocket::RequestSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array request;
  std::string operation;
  std::string link;
  int64_t timeout_ms = 0;
  if (!ReadRequestArgs(info, &request, &operation, &link) ||
      !ArgInt(info, 3, "timeoutMs", 1, kMaxTimeoutMs, &timeout_ms)) {
    return env.Undefined();
  }
  uint32_t seq = 0;
  if (int err = Send(request, &seq)) return ThrowNetlinkError(env, err, operation, link);
  const int64_t deadline = NowMs() + timeout_ms;
  Reply reply;
  while (!reply.done) {
    ssize_t got = ReceiveDatagram(0);
    if (got == 0) {
      // The socket is non-blocking (it is shared with uv_poll users); wait for the kernel here, bounded. A
      // reply that arrives after the deadline carries a stale sequence number and is skipped by later requests.
      int64_t left = deadline - NowMs();
      if (left <= 0) {
        return ThrowNetlinkError(env, ETIMEDOUT, operation, link, "",
                                 "no reply from the kernel within " + std::to_string(timeout_ms) + " ms");
      }
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left)) < 0 && errno != EINTR) {
        return ThrowNetlinkError(env, errno, operation, link);
      }
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

Napi::Value NetlinkSocket::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unique_ptr<PendingRequest> pending = std::move(pending_);
  watch_callback_.Reset();
  watch_context_.reset();
  ClosePollAndFd();
  while (refs_ > 0) {
    refs_ -= 1;
    Unref();
  }
  if (pending) {
    Napi::HandleScope scope(env);
    Napi::Value err =
        MakeNetlinkError(env, ECANCELED, pending->operation, pending->link, "", "socket closed before the reply")
            .Value();
    pending->callback.MakeCallback(env.Global(), {err}, *pending->context);
  }
  return env.Undefined();
}

Napi::Value NetlinkSocket::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.get()); }

// The socket's netlink port id (what the kernel addresses replies to), or -1 once closed.
Napi::Value NetlinkSocket::GetPortId(const Napi::CallbackInfo& info) {
  sockaddr_nl self{};
  socklen_t len = sizeof(self);
  if (!fd_.valid() || getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&self), &len) < 0) {
    return Napi::Number::New(info.Env(), -1);
  }
  return Napi::Number::New(info.Env(), self.nl_pid);
}

}  // namespace macvtap

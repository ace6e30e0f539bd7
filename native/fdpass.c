/*
 * fdpass: the two ways to hand a file descriptor to another process that Node has no API for, so
 * that a FUSE connection (/dev/fuse) can outlive the daemon that serves it.
 *
 *   take(pid, fd) -> number
 *       A duplicate of process `pid`'s descriptor `fd` in this process, close-on-exec
 *       (pidfd_open(2) + pidfd_getfd(2), Linux >= 5.6; needs ptrace access to `pid`).
 *   notifyFds(socketPath, message, fds[]) -> undefined
 *       One datagram with `message` and `fds` as SCM_RIGHTS to the AF_UNIX socket at `socketPath`
 *       (systemd's sd_pid_notify_with_fds: "FDSTORE=1\nFDNAME=..." to $NOTIFY_SOCKET). A path
 *       starting with '@' is an abstract socket.
 *
 * Errors are thrown as Error with `code` set to the errno name's number text ("errno N: ...").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define MAX_FDS 253

static napi_value throw_errno(napi_env env, const char* what, int err) {
  char msg[256];
  char code[32];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  snprintf(code, sizeof code, "%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value take(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t pid = 0, fd = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &pid) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "take(pid, fd): two integers");
    return NULL;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) return throw_errno(env, "pidfd_open", errno);
  int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  if (got < 0) return throw_errno(env, "pidfd_getfd", err);
  napi_value out;
  napi_create_int32(env, got, &out);
  return out;
}

static napi_value notify_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[sizeof(((struct sockaddr_un*)0)->sun_path) + 1];
  size_t path_len = 0, msg_len = 0;
  uint32_t nfds = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], NULL, 0, &msg_len) != napi_ok || napi_is_array(env, argv[2], &is_array) != napi_ok ||
      !is_array || napi_get_array_length(env, argv[2], &nfds) != napi_ok || nfds > MAX_FDS || path_len == 0 ||
      path_len >= sizeof(((struct sockaddr_un*)0)->sun_path)) {
    napi_throw_type_error(env, NULL, "notifyFds(socketPath, message, fds): a socket path, a string and at most 253 fds");
    return NULL;
  }
  char msgbuf[4096];
  if (msg_len >= sizeof msgbuf) {
    napi_throw_range_error(env, NULL, "notifyFds: message too long");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[1], msgbuf, sizeof msgbuf, &msg_len);
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &fds[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "notifyFds: fds must be integers");
      return NULL;
    }
  }

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);

  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", errno);

  struct iovec iov = {.iov_base = msgbuf, .iov_len = msg_len};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_name = &addr;
  mh.msg_namelen = alen;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds > 0) {
    mh.msg_control = control.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n = sendmsg(s, &mh, MSG_NOSIGNAL);
  int err = errno;
  close(s);
  if (n < 0) return throw_errno(env, "sendmsg", err);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"take", NULL, take, NULL, NULL, NULL, napi_default, NULL},
      {"notifyFds", NULL, notify_fds, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

/*
 * fdpass: taking a file descriptor from another process, which Node has no API for, so that a
 * FUSE connection (/dev/fuse) kept open by a holder process can be served again by a new daemon.
 *
 *   take(pid, fd) -> number
 *       A duplicate of process `pid`'s descriptor `fd` in this process, close-on-exec
 *       (pidfd_open(2) + pidfd_getfd(2), Linux >= 5.6; needs ptrace access to `pid`).
 *
 *   notify(socketPath, message, fds) -> undefined
 *       One datagram with `message` and the descriptors `fds` (SCM_RIGHTS) to the AF_UNIX socket at
 *       `socketPath` ("@name": abstract namespace): sd_notify(3)'s protocol, which systemd's file
 *       descriptor store (FDSTORE=1) needs.
 *
 * Errors are thrown as Error with `code` set to the errno number as text.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
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

#define MAX_FDS 253

static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[sizeof(((struct sockaddr_un*)0)->sun_path) + 1];
  char msg[4096];
  size_t path_len = 0, msg_len = 0;
  uint32_t nfds = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &msg_len) != napi_ok ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &nfds) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(socketPath, message, fds): a string, a string and an array");
    return NULL;
  }
  if (path_len == 0 || path_len >= sizeof(((struct sockaddr_un*)0)->sun_path) || msg_len >= sizeof msg - 1 || nfds > MAX_FDS) {
    napi_throw_range_error(env, NULL, "notify: socket path, message or fd count too long");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    int32_t fd;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &fd) != napi_ok) {
      napi_throw_type_error(env, NULL, "notify: fds must be integers");
      return NULL;
    }
    fds[i] = fd;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, path_len);
  if (path[0] == '@') sa.sun_path[0] = 0;
  socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '@' ? 0 : 1));
  struct iovec iov = {.iov_base = msg, .iov_len = msg_len};
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_name = &sa;
  mh.msg_namelen = sa_len;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds > 0) {
    memset(control, 0, sizeof control);
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", errno);
  ssize_t n = sendmsg(s, &mh, MSG_NOSIGNAL);
  int err = errno;
  close(s);
  if (n < 0) return throw_errno(env, "sendmsg", err);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"take", NULL, take, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, notify, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

/*
 * fdpass: taking a file descriptor from another process, which Node has no API for, so that a
 * FUSE connection (/dev/fuse) kept open by a holder process can be served again by a new daemon.
 *
 *   take(pid, fd) -> number
 *       A duplicate of process `pid`'s descriptor `fd` in this process, close-on-exec
 *       (pidfd_open(2) + pidfd_getfd(2), Linux >= 5.6; needs ptrace access to `pid`).
 *
 * Errors are thrown as Error with `code` set to the errno number as text.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"take", NULL, take, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

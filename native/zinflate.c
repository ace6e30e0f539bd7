/*
 * zinflate: a thin N-API binding over the zlib inflate that Node itself ships (and re-exports for
 * addons). It exposes what node:zlib hides and the checkpoint indexer needs: inflate(Z_BLOCK) with
 * data_type, inflatePrime, inflateSetDictionary and inflateReset2.
 *
 * JS API (all synchronous; the CLI indexer calls it in a loop, the daemon never does):
 *   create(windowBits) -> handle (external; inflateEnd runs in its finalizer)
 *   inflate(handle, in, inOff, inLen, out, outOff, outLen, flush, info:Int32Array(4)) -> status
 *       info = [availIn left, availOut left, data_type, 0]
 *   prime(handle, bits, value) -> status
 *   setDictionary(handle, dict) -> status
 *   reset2(handle, windowBits) -> status
 *   message(handle) -> string | null   (zlib's msg after an error)
 * zlib keeps no pointer to the caller's buffers between calls (bits live in its hold register and
 * history in its own window), so passing fresh buffers on every call is safe.
 */
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
  z_stream strm;
  int live;
} zi_t;

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_ZINFLATE", "zinflate: bad argument"); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static void zi_finalize(napi_env env, void* data, void* hint) {
  zi_t* z = (zi_t*)data;
  (void)env;
  (void)hint;
  if (z->live) inflateEnd(&z->strm);
  free(z);
}

static napi_value int_value(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static zi_t* get_handle(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) return NULL;
  return (zi_t*)p;
}

static napi_value zi_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t wbits;
  napi_value ext;
  zi_t* z;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) CHECK(napi_invalid_arg);
  CHECK(napi_get_value_int32(env, argv[0], &wbits));
  z = (zi_t*)calloc(1, sizeof(zi_t));
  if (z == NULL) {
    napi_throw_error(env, "ERR_ZINFLATE", "zinflate: out of memory");
    return NULL;
  }
  if (inflateInit2(&z->strm, wbits) != Z_OK) {
    free(z);
    napi_throw_error(env, "ERR_ZINFLATE", "zinflate: inflateInit2 failed");
    return NULL;
  }
  z->live = 1;
  CHECK(napi_create_external(env, z, zi_finalize, NULL, &ext));
  return ext;
}

static napi_value zi_inflate(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  zi_t* z;
  void *inp, *outp, *infop;
  size_t inSize, outSize, infoLen;
  int32_t inOff, inLen, outOff, outLen, flush;
  napi_typedarray_type ttype;
  napi_value ab;
  size_t abOff;
  int ret;
  int32_t* res;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) CHECK(napi_invalid_arg);
  z = get_handle(env, argv[0]);
  if (z == NULL || !z->live) CHECK(napi_invalid_arg);
  CHECK(napi_get_buffer_info(env, argv[1], &inp, &inSize));
  CHECK(napi_get_value_int32(env, argv[2], &inOff));
  CHECK(napi_get_value_int32(env, argv[3], &inLen));
  CHECK(napi_get_buffer_info(env, argv[4], &outp, &outSize));
  CHECK(napi_get_value_int32(env, argv[5], &outOff));
  CHECK(napi_get_value_int32(env, argv[6], &outLen));
  CHECK(napi_get_value_int32(env, argv[7], &flush));
  CHECK(napi_get_typedarray_info(env, argv[8], &ttype, &infoLen, &infop, &ab, &abOff));
  if (ttype != napi_int32_array || infoLen < 4) CHECK(napi_invalid_arg);
  if (inOff < 0 || inLen < 0 || (size_t)inOff + (size_t)inLen > inSize) CHECK(napi_invalid_arg);
  if (outOff < 0 || outLen < 0 || (size_t)outOff + (size_t)outLen > outSize) CHECK(napi_invalid_arg);
  z->strm.next_in = (Bytef*)inp + inOff;
  z->strm.avail_in = (uInt)inLen;
  z->strm.next_out = (Bytef*)outp + outOff;
  z->strm.avail_out = (uInt)outLen;
  ret = inflate(&z->strm, flush);
  res = (int32_t*)infop;
  res[0] = (int32_t)z->strm.avail_in;
  res[1] = (int32_t)z->strm.avail_out;
  res[2] = (int32_t)z->strm.data_type;
  res[3] = 0;
  /* never leave dangling pointers into JS memory */
  z->strm.next_in = NULL;
  z->strm.next_out = NULL;
  return int_value(env, ret);
}

static napi_value zi_prime(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  zi_t* z;
  int32_t bits, value;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) CHECK(napi_invalid_arg);
  z = get_handle(env, argv[0]);
  if (z == NULL || !z->live) CHECK(napi_invalid_arg);
  CHECK(napi_get_value_int32(env, argv[1], &bits));
  CHECK(napi_get_value_int32(env, argv[2], &value));
  return int_value(env, inflatePrime(&z->strm, bits, value));
}

static napi_value zi_set_dictionary(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  zi_t* z;
  void* p;
  size_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) CHECK(napi_invalid_arg);
  z = get_handle(env, argv[0]);
  if (z == NULL || !z->live) CHECK(napi_invalid_arg);
  CHECK(napi_get_buffer_info(env, argv[1], &p, &len));
  return int_value(env, inflateSetDictionary(&z->strm, (const Bytef*)p, (uInt)len));
}

static napi_value zi_reset2(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  zi_t* z;
  int32_t wbits;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) CHECK(napi_invalid_arg);
  z = get_handle(env, argv[0]);
  if (z == NULL || !z->live) CHECK(napi_invalid_arg);
  CHECK(napi_get_value_int32(env, argv[1], &wbits));
  return int_value(env, inflateReset2(&z->strm, wbits));
}

static napi_value zi_message(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value r;
  zi_t* z;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) CHECK(napi_invalid_arg);
  z = get_handle(env, argv[0]);
  if (z == NULL || z->strm.msg == NULL) {
    napi_get_null(env, &r);
    return r;
  }
  CHECK(napi_create_string_utf8(env, z->strm.msg, NAPI_AUTO_LENGTH, &r));
  return r;
}

static napi_value zi_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, zi_create, NULL, NULL, NULL, napi_default, NULL},
      {"inflate", NULL, zi_inflate, NULL, NULL, NULL, napi_default, NULL},
      {"prime", NULL, zi_prime, NULL, NULL, NULL, napi_default, NULL},
      {"setDictionary", NULL, zi_set_dictionary, NULL, NULL, NULL, napi_default, NULL},
      {"reset2", NULL, zi_reset2, NULL, NULL, NULL, napi_default, NULL},
      {"message", NULL, zi_message, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value ver;
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  napi_create_string_utf8(env, zlibVersion(), NAPI_AUTO_LENGTH, &ver);
  napi_set_named_property(env, exports, "zlibVersion", ver);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, zi_init)

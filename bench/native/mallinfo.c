/*
 * glibc's malloc counters for the benchmarks: info() is mallinfo2() (bytes in use, free, in the
 * heap and in mmapped chunks), trim() is malloc_trim(0). Built by bench/lib/native-addon.mjs.
 */
#define NAPI_VERSION 8
#include <malloc.h>
#include <node_api.h>

static void put(napi_env env, napi_value o, const char *k, size_t v) {
  napi_value n;
  napi_create_double(env, (double)v, &n);
  napi_set_named_property(env, o, k, n);
}

static napi_value info(napi_env env, napi_callback_info i) {
  (void)i;
  struct mallinfo2 m = mallinfo2();
  napi_value o;
  napi_create_object(env, &o);
  put(env, o, "inUse", m.uordblks);
  put(env, o, "free", m.fordblks);
  put(env, o, "heap", m.arena);
  put(env, o, "mmapped", m.hblkhd);
  return o;
}

static napi_value trim(napi_env env, napi_callback_info i) {
  (void)i;
  napi_value r;
  napi_get_boolean(env, malloc_trim(0) == 1, &r);
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
    { "info", NULL, info, NULL, NULL, NULL, napi_default, NULL },
    { "trim", NULL, trim, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, 2, p);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

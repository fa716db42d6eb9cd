/*
 * glibc's malloc counters for the benchmarks: info() is mallinfo2() (bytes in use, free, in the
 * heap and in mmapped chunks, summed over every arena), arenas() is malloc_info()'s XML (one
 * <heap> per arena: which thread's arena keeps the free bytes), trim() is malloc_trim(0).
 * Built by bench/lib/native-addon.mjs.
 */
#define _GNU_SOURCE /* open_memstream */
#define NAPI_VERSION 8
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
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

static napi_value arenas(napi_env env, napi_callback_info i) {
  (void)i;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  napi_value r;
  if (f == NULL) { napi_get_null(env, &r); return r; }
  malloc_info(0, f);
  fclose(f);
  napi_create_string_utf8(env, buf, len, &r);
  free(buf);
  return r;
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
    { "arenas", NULL, arenas, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, 3, p);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

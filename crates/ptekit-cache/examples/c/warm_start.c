/* A C runtime plugging the ptekit cache into XNNPACK: one fully connected
 * layer with static weights, created with the cache, run once.
 *
 *   cc -I crates/ptekit-cache/include warm_start.c -L<target>/debug -L<xnnpack-lib> \
 *      -lptekit_cache -lexecutorch_backend_xnnpack -lexecutorch_threadpool -lexecutorch
 *   ./a.out cache.pwc      # first run packs, the second maps
 *
 * The wheel ships no xnnpack.h: the few XNNPACK declarations used are below,
 * matching include/xnnpack.h of the XNNPACK in ExecuTorch 1.5.1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#include "ptekit_cache.h"

enum { xnn_datatype_fp32 = 1 };
#define XNN_INVALID_VALUE_ID UINT32_MAX
#define XNN_VALUE_FLAG_EXTERNAL_INPUT 1u
#define XNN_VALUE_FLAG_EXTERNAL_OUTPUT 2u
typedef struct xnn_subgraph* xnn_subgraph_t;
typedef struct xnn_runtime* xnn_runtime_t;
struct xnn_external_value { uint32_t id; void* data; };
extern int xnn_initialize(const void* allocator);
extern int xnn_create_subgraph(uint32_t external_value_ids, uint32_t flags, xnn_subgraph_t* out);
extern int xnn_delete_subgraph(xnn_subgraph_t);
extern int xnn_define_tensor_value(xnn_subgraph_t, int datatype, size_t num_dims, const size_t* dims,
                                   const void* data, uint32_t external_id, uint32_t flags, uint32_t* id_out);
extern int xnn_define_fully_connected(xnn_subgraph_t, float output_min, float output_max, uint32_t input_id,
                                      uint32_t filter_id, uint32_t bias_id, uint32_t output_id, uint32_t flags);
extern int xnn_create_runtime_v4(xnn_subgraph_t, void* weights_cache, void* workspace, void* threadpool,
                                 uint32_t flags, xnn_runtime_t* out);
extern int xnn_reshape_runtime(xnn_runtime_t);
extern int xnn_setup_runtime_v2(xnn_runtime_t, size_t n, const struct xnn_external_value* values);
extern int xnn_invoke_runtime(xnn_runtime_t);
extern int xnn_delete_runtime(xnn_runtime_t);

#define IN 256
#define OUT 128
#define CHECK(call) do { int st_ = (call); if (st_ != 0) { fprintf(stderr, "%s failed: %d\n", #call, st_); return 1; } } while (0)

int main(int argc, char** argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s CACHE_FILE\n", argv[0]); return 2; }
  static float weights[OUT * IN], bias[OUT], input[IN + 4], output[OUT + 4];
  for (int i = 0; i < OUT * IN; i++) weights[i] = sinf((float)i * 0.37f) / 16.0f;
  for (int i = 0; i < OUT; i++) bias[i] = cosf((float)i) / 8.0f;
  for (int i = 0; i < IN; i++) input[i] = (float)(i % 7) - 3.0f;

  CHECK(xnn_initialize(NULL));
  PtekitCache* cache = ptekit_cache_open(argv[1], NULL);
  if (!cache) { fprintf(stderr, "ptekit_cache_open failed\n"); return 1; }
  /* Register the unpacked buffers before creating the runtime. */
  ptekit_cache_register(cache, weights, sizeof weights, "c-example/fc.weight", NULL);
  ptekit_cache_register(cache, bias, sizeof bias, "c-example/fc.bias", NULL);

  xnn_subgraph_t sg;
  CHECK(xnn_create_subgraph(2, 0, &sg));
  uint32_t in_id, w_id, b_id, out_id;
  size_t in_dims[2] = {1, IN}, w_dims[2] = {OUT, IN}, b_dims[1] = {OUT}, out_dims[2] = {1, OUT};
  CHECK(xnn_define_tensor_value(sg, xnn_datatype_fp32, 2, in_dims, NULL, 0, XNN_VALUE_FLAG_EXTERNAL_INPUT, &in_id));
  CHECK(xnn_define_tensor_value(sg, xnn_datatype_fp32, 2, w_dims, weights, XNN_INVALID_VALUE_ID, 0, &w_id));
  CHECK(xnn_define_tensor_value(sg, xnn_datatype_fp32, 1, b_dims, bias, XNN_INVALID_VALUE_ID, 0, &b_id));
  CHECK(xnn_define_tensor_value(sg, xnn_datatype_fp32, 2, out_dims, NULL, 1, XNN_VALUE_FLAG_EXTERNAL_OUTPUT, &out_id));
  CHECK(xnn_define_fully_connected(sg, -INFINITY, INFINITY, in_id, w_id, b_id, out_id, 0));

  xnn_runtime_t rt;
  CHECK(xnn_create_runtime_v4(sg, ptekit_cache_xnn_weights_cache(cache), NULL, NULL, 0, &rt));
  ptekit_cache_finalize(cache); /* operator setup requires a finalized cache */
  struct xnn_external_value ext[2] = {{in_id, input}, {out_id, output}};
  CHECK(xnn_reshape_runtime(rt));
  CHECK(xnn_setup_runtime_v2(rt, 2, ext));
  CHECK(xnn_invoke_runtime(rt));

  PtekitCacheStats s;
  ptekit_cache_get_stats(cache, &s);
  printf("hits=%llu misses=%llu heap_fallbacks=%llu file_bytes=%llu\n", (unsigned long long)s.hits,
         (unsigned long long)s.misses, (unsigned long long)s.heap_fallbacks, (unsigned long long)s.file_bytes);
  printf("y0=%.6f y1=%.6f\n", output[0], output[OUT - 1]);

  xnn_delete_runtime(rt);
  xnn_delete_subgraph(sg);
  ptekit_cache_free(cache);
  return 0;
}

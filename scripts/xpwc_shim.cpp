// Benchmark helper (not part of ptekit): turns on the reference runtime's own
// packed-weight cache (the XPWC file of executorch 1.5.1's XNNPACK backend)
// for every method a process loads.
//
// That cache is only read from the per-load options of the backend
// "XnnpackBackend" (`weight_cache_enabled`, `packed_cache_path`); the Python
// runtime passes no load options at all. This library defines
// `executorch::runtime::Program::load_method`, adds those two options to the
// caller's `LoadBackendOptionsMap` and calls the real function in
// libexecutorch.so. Loaded with global scope before the ExecuTorch Python
// extension, its definition is the one the extension binds to:
//
//   ctypes.CDLL("xpwc_shim.so", mode=os.RTLD_GLOBAL)   # before executorch.runtime
//   os.environ["PTEKIT_XPWC_PATH"] = "/tmp/model.xpwc"   # read at every load
//
// Built by scripts/bench-xnnpack-cache.py with g++ against the wheel's headers
// (site-packages/executorch/include) and libexecutorch.so. Without
// PTEKIT_XPWC_PATH every call is passed through unchanged.

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <executorch/runtime/backend/backend_options_map.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/executor/program.h>

namespace et = executorch::runtime;

namespace {

// The backend id and option keys the XNNPACK backend of the wheel looks up
// (strings in libexecutorch_backend_xnnpack.so; XNNPACKBackend.h upstream).
constexpr char kBackend[] = "XnnpackBackend";
constexpr char kEnabledKey[] = "weight_cache_enabled";
constexpr char kPathKey[] = "packed_cache_path";

// Itanium C++ ABI: a non-virtual member function is called like a free
// function whose first parameter (after the hidden return slot) is `this`.
using RealLoad = et::Result<et::Method> (*)(
    const et::Program*,
    const char*,
    et::MemoryManager*,
    et::EventTracer*,
    const et::NamedDataMap*,
    const et::LoadBackendOptionsMap*,
    et::Span<const et::Kernel>);

constexpr char kLoadMethodSymbol[] =
    "_ZNK10executorch7runtime7Program11load_methodEPKcPNS0_13MemoryManagerEPNS0_"
    "11EventTracerEPKNS0_12NamedDataMapEPKNS0_21LoadBackendOptionsMapENS0_"
    "4SpanIKNS0_6KernelEEE";

std::atomic<unsigned long> g_wrapped{0};

RealLoad real_load() {
  static RealLoad fn = [] {
    void* p = dlsym(RTLD_NEXT, kLoadMethodSymbol);
    if (p == nullptr) {
      void* h = dlopen("libexecutorch.so", RTLD_LAZY | RTLD_NOLOAD);
      if (h != nullptr) {
        p = dlsym(h, kLoadMethodSymbol);
      }
    }
    if (p == nullptr) {
      std::fprintf(stderr, "xpwc_shim: real Program::load_method not found\n");
      std::abort();
    }
    return reinterpret_cast<RealLoad>(p);
  }();
  return fn;
}

// Options of the current load; the map does not own them, so they live here
// (per thread) until that thread's next load.
thread_local et::BackendOptions<16> t_xnnpack;
thread_local et::LoadBackendOptionsMap t_map;

// The caller's options (other backends' as they are, the XNNPACK backend's
// copied) plus the two that turn the XPWC cache on.
const et::LoadBackendOptionsMap* with_xpwc(
    const et::LoadBackendOptionsMap* caller,
    const char* path) {
  using et::BackendOption;
  using et::Error;
  using et::kMaxOptionKeyLength;
  using et::kMaxOptionValueLength;
  if (std::strlen(path) >= kMaxOptionValueLength) {
    std::fprintf(stderr, "xpwc_shim: PTEKIT_XPWC_PATH is too long\n");
    std::abort();
  }
  t_xnnpack = et::BackendOptions<16>();
  t_map = et::LoadBackendOptionsMap();
  if (caller != nullptr) {
    for (size_t i = 0; i < caller->size(); ++i) {
      auto e = caller->entry_at(i);
      if (std::strcmp(e.backend_id, kBackend) == 0) {
        continue;
      }
      et::Span<BackendOption> opts(
          const_cast<BackendOption*>(e.options.data()), e.options.size());
      (void)t_map.set_options(e.backend_id, opts);
    }
    for (const BackendOption& o : caller->get_options(kBackend)) {
      if (std::strcmp(o.key, kEnabledKey) == 0 ||
          std::strcmp(o.key, kPathKey) == 0) {
        continue;
      }
      const auto& key =
          *reinterpret_cast<const char(*)[kMaxOptionKeyLength]>(o.key);
      if (auto* b = std::get_if<bool>(&o.value)) {
        (void)t_xnnpack.set_option(key, *b);
      } else if (auto* n = std::get_if<int>(&o.value)) {
        (void)t_xnnpack.set_option(key, *n);
      } else if (
          auto* s =
              std::get_if<std::array<char, kMaxOptionValueLength>>(&o.value)) {
        (void)t_xnnpack.set_option(key, s->data());
      }
    }
  }
  if (t_xnnpack.set_option(kEnabledKey, true) != Error::Ok ||
      t_xnnpack.set_option(kPathKey, path) != Error::Ok ||
      t_map.set_options(kBackend, t_xnnpack.view()) != Error::Ok) {
    std::fprintf(stderr, "xpwc_shim: cannot set the XNNPACK load options\n");
    std::abort();
  }
  return &t_map;
}

} // namespace

extern "C" unsigned long ptekit_xpwc_shim_wrapped_loads() {
  return g_wrapped.load();
}

namespace executorch {
namespace runtime {

Result<Method> Program::load_method(
    const char* method_name,
    MemoryManager* memory_manager,
    EventTracer* event_tracer,
    const NamedDataMap* named_data_map,
    const LoadBackendOptionsMap* backend_options,
    Span<const Kernel> kernel_registry) const {
  const char* path = std::getenv("PTEKIT_XPWC_PATH");
  const LoadBackendOptionsMap* options = backend_options;
  if (path != nullptr && path[0] != '\0') {
    options = with_xpwc(backend_options, path);
    g_wrapped.fetch_add(1);
  }
  return real_load()(
      this,
      method_name,
      memory_manager,
      event_tracer,
      named_data_map,
      options,
      kernel_registry);
}

} // namespace runtime
} // namespace executorch

// The buffers of a TorchScript module (BatchNorm's running statistics, a
// counter), which tch does not list: the engine copies them before forwards
// that the public algorithm does not run (load-time checks, the factorized
// meta step's repeated evaluations of its training batch) and puts them
// back after, so they move exactly as in a PyTorch loop; and after a
// skipped (non-finite) update's forwards.
//
// Errors are returned as malloc'd strings the caller frees with
// meltr_shim_free (shim.cpp).
#include <torch/script.h>

#include <cstring>
#include <exception>

extern "C" {

// Calls `each(data, name, tensor)` for every buffer of `module` (a
// torch::jit::Module*, the object tch's CModule handle points to), its
// submodules' included, in named_buffers() order; `tensor` is a new
// torch::Tensor* sharing the buffer's storage, owned by the callee.
void meltr_module_buffers(void *module, void *data,
                          void (*each)(void *, const char *, void *),
                          char **error) {
  try {
    const auto *m = static_cast<const torch::jit::Module *>(module);
    for (const auto &buffer : m->named_buffers(/*recurse=*/true)) {
      each(data, buffer.name.c_str(), new torch::Tensor(buffer.value));
    }
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  }
}

}  // extern "C"

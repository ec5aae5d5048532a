// Forward-mode AD entry points that tch does not expose: entering and
// leaving a dual level, and setting / reading the tangent of an existing
// tensor (the model's parameters, in place, so any model code — Rust or
// TorchScript — sees dual numbers without being rewritten).
//
// `at::Tensor*` is what tch's `C_tensor` points to. Errors are returned as
// malloc'd strings the caller frees with meltr_shim_free (shim.cpp).
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/forward_grad.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {
char *copy_message(const std::exception &e) { return strdup(e.what()); }
}  // namespace

extern "C" {

// The new level's index, or -1 with *error set.
int64_t meltr_fwad_enter(char **error) {
  try {
    return static_cast<int64_t>(
        torch::autograd::ForwardADLevel::get_next_idx());
  } catch (const std::exception &e) {
    *error = copy_message(e);
    return -1;
  }
}

// Leaves the level: every tangent set at it is dropped.
void meltr_fwad_exit(uint64_t level, char **error) {
  try {
    torch::autograd::ForwardADLevel::release_idx(level);
  } catch (const std::exception &e) {
    *error = copy_message(e);
  }
}

void meltr_fwad_set_tangent(at::Tensor *tensor, at::Tensor *tangent,
                            uint64_t level, char **error) {
  try {
    tensor->_set_fw_grad(*tangent, level, /*is_inplace_op=*/false);
  } catch (const std::exception &e) {
    *error = copy_message(e);
  }
}

// The tangent of `tensor` at `level` (a new tensor the caller owns), or
// null when it has none (the value does not depend on any dual input).
at::Tensor *meltr_fwad_tangent(at::Tensor *tensor, uint64_t level,
                               char **error) {
  try {
    const at::Tensor &tangent = tensor->_fw_grad(level);
    if (!tangent.defined()) return nullptr;
    return new at::Tensor(tangent);
  } catch (const std::exception &e) {
    *error = copy_message(e);
    return nullptr;
  }
}

}

// Global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ does it
// (foreach norms, one multiply per list), which tch does not expose: one
// pass over each gradient for its norm, none for temporaries.
//
// `at::Tensor*` is what tch's `C_tensor` points to. Errors are returned as
// malloc'd strings the caller frees with meltr_shim_free (shim.cpp).
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>

#include <cstring>
#include <exception>
#include <vector>

extern "C" {

// Scales the `count` gradients in place so that their global 2-norm is at
// most `max_norm`; returns that norm before clipping (a new 0-dim tensor
// the caller owns), or null with *error set.
at::Tensor *meltr_clip_grad_norm(at::Tensor **grads, int64_t count,
                                 double max_norm, char **error) {
  try {
    std::vector<at::Tensor> list;
    list.reserve(count);
    for (int64_t i = 0; i < count; ++i) list.push_back(*grads[i]);
    auto norms = at::_foreach_norm(list, 2);
    auto total = at::linalg_vector_norm(at::stack(norms), 2);
    // `max_norm / (total + 1e-6)` in Python is reciprocal times max_norm.
    auto scale = total.add(1e-6).reciprocal().mul(max_norm).clamp_max(1.0);
    at::_foreach_mul_(list, scale);
    return new at::Tensor(total);
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return nullptr;
  }
}
}

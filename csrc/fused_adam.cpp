// ATen's fused Adam/AdamW kernels (one pass over each parameter, CPU and
// CUDA), which tch does not expose. The caller owns the step count: the
// kernels read it but do not advance it. `found_inf` (0-dim float, 1 = skip)
// makes the kernel leave every tensor untouched, decided where the tensors
// live (no host sync on CUDA).
//
// `at::Tensor*` is what tch's `C_tensor` points to. Errors are returned as
// malloc'd strings the caller frees with meltr_shim_free (shim.cpp).
#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace {
std::vector<at::Tensor> list(at::Tensor **tensors, int64_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(*tensors[i]);
  return out;
}
}  // namespace

extern "C" {

// One update of `count` parameters. `steps`: each parameter's update
// number (0-dim float, already advanced; one tensor may be listed for
// all). `decoupled`:
// AdamW's decay (else Adam's L2 on the gradient). `found_inf`: null, or a
// 0-dim float tensor on the parameters' device.
void meltr_fused_adam(at::Tensor **params, at::Tensor **grads,
                      at::Tensor **exp_avgs, at::Tensor **exp_avg_sqs,
                      int64_t count, at::Tensor **steps, double lr, double beta1,
                      double beta2, double weight_decay, double eps,
                      int decoupled, at::Tensor *found_inf, char **error) {
  try {
    std::optional<at::Tensor> skip;
    if (found_inf != nullptr) skip = *found_inf;
    auto p = list(params, count), g = list(grads, count);
    auto step = list(steps, count);
    auto m = list(exp_avgs, count), v = list(exp_avg_sqs, count);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, {}, step, lr, beta1, beta2, weight_decay,
                        eps, /*amsgrad=*/false, /*maximize=*/false,
                        std::nullopt, skip);
    } else {
      at::_fused_adam_(p, g, m, v, {}, step, lr, beta1, beta2, weight_decay,
                       eps, /*amsgrad=*/false, /*maximize=*/false,
                       std::nullopt, skip);
    }
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  }
}
}

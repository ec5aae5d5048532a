// Which kernels scaled_dot_product_attention may pick (a process-wide
// setting of libtorch's global context). Its fused kernels (flash,
// memory-efficient, cuDNN, ...) have neither second derivatives nor
// forward-mode ones; its math path, plain matmuls and a softmax, has both.
// The meta step turns the fused ones off where a second-order or
// forward-mode pass through them failed (nn.TransformerEncoderLayer picks
// flash attention on the CPU whenever its dropout is 0).
//
// Errors are returned as malloc'd strings the caller frees with
// meltr_shim_free (shim.cpp).
#include <ATen/Context.h>

#include <cstdint>
#include <cstring>
#include <exception>

namespace {
constexpr int64_t kFlash = 1;
constexpr int64_t kMemEfficient = 2;
constexpr int64_t kCuDNN = 4;
constexpr int64_t kFA3 = 8;
constexpr int64_t kOverrideable = 16;
}  // namespace

extern "C" {

// The fused backends enabled now, as a bit mask (flash 1, memory-efficient
// 2, cuDNN 4, FA3 8, overrideable 16).
int64_t meltr_sdp_fused_enabled(char **error) {
  try {
    const auto &ctx = at::globalContext();
    return (ctx.userEnabledFlashSDP() ? kFlash : 0) |
           (ctx.userEnabledMemEfficientSDP() ? kMemEfficient : 0) |
           (ctx.userEnabledCuDNNSDP() ? kCuDNN : 0) |
           (ctx.userEnabledFA3SDP() ? kFA3 : 0) |
           (ctx.userEnabledOverrideableSDP() ? kOverrideable : 0);
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return 0;
  }
}

// Enables exactly the fused backends in `mask` (the math path stays on).
void meltr_sdp_set_fused(int64_t mask, char **error) {
  try {
    auto &ctx = at::globalContext();
    ctx.setSDPUseFlash((mask & kFlash) != 0);
    ctx.setSDPUseMemEfficient((mask & kMemEfficient) != 0);
    ctx.setSDPUseCuDNN((mask & kCuDNN) != 0);
    ctx.setSDPUseFA3((mask & kFA3) != 0);
    ctx.setSDPUseOverrideable((mask & kOverrideable) != 0);
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  }
}

}  // extern "C"

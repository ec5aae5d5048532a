// Which kernels libtorch may pick (process-wide settings of its global
// context). Some fused kernels have neither second derivatives nor
// forward-mode ones, while the plain kernels computing the same function
// have both: scaled_dot_product_attention's fused backends (flash,
// memory-efficient, cuDNN, ...) against its math path, oneDNN's CPU RNN
// layers (mkldnn_rnn_layer, what nn.LSTM takes in f32) against the native
// RNN cells, cuDNN's RNNs against the same. The meta step turns the fused
// ones off where a second-order or forward-mode pass through them failed
// (nn.TransformerEncoderLayer picks flash attention on the CPU whenever
// its dropout is 0; nn.LSTM picks oneDNN on the CPU).
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
constexpr int64_t kCuDNNAttention = 4;
constexpr int64_t kFA3 = 8;
constexpr int64_t kOverrideable = 16;
constexpr int64_t kMkldnn = 32;
constexpr int64_t kCuDNN = 64;
}  // namespace

extern "C" {

// The fused kernels enabled now, as a bit mask (attention: flash 1,
// memory-efficient 2, cuDNN 4, FA3 8, overrideable 16; oneDNN 32; cuDNN 64).
int64_t meltr_fused_enabled(char **error) {
  try {
    const auto &ctx = at::globalContext();
    return (ctx.userEnabledFlashSDP() ? kFlash : 0) |
           (ctx.userEnabledMemEfficientSDP() ? kMemEfficient : 0) |
           (ctx.userEnabledCuDNNSDP() ? kCuDNNAttention : 0) |
           (ctx.userEnabledFA3SDP() ? kFA3 : 0) |
           (ctx.userEnabledOverrideableSDP() ? kOverrideable : 0) |
           (ctx.userEnabledMkldnn() ? kMkldnn : 0) |
           (ctx.userEnabledCuDNN() ? kCuDNN : 0);
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return 0;
  }
}

// Enables exactly the fused kernels in `mask` (the plain ones stay on).
void meltr_set_fused(int64_t mask, char **error) {
  try {
    auto &ctx = at::globalContext();
    ctx.setSDPUseFlash((mask & kFlash) != 0);
    ctx.setSDPUseMemEfficient((mask & kMemEfficient) != 0);
    ctx.setSDPUseCuDNN((mask & kCuDNNAttention) != 0);
    ctx.setSDPUseFA3((mask & kFA3) != 0);
    ctx.setSDPUseOverrideable((mask & kOverrideable) != 0);
    ctx.setUserEnabledMkldnn((mask & kMkldnn) != 0);
    ctx.setUserEnabledCuDNN((mask & kCuDNN) != 0);
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  }
}

}  // extern "C"

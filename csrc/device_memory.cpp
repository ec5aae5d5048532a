// Peak memory of the accelerator's caching allocator (CUDA here), which tch
// does not expose: read through libtorch's device-generic accelerator API,
// so no CUDA header is needed to build it. On a machine without an
// accelerator both calls report an error instead.
//
// Errors are returned as malloc'd strings the caller frees with
// meltr_shim_free (shim.cpp).
#include <ATen/DeviceAccelerator.h>

#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {

// Bytes allocated at the peak since the last reset on device `index`
// (all pools), or -1 with *error set.
int64_t meltr_device_peak_allocated(int64_t index, char **error) {
  try {
    const auto stats =
        at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    const auto aggregate =
        static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return stats.allocated_bytes[aggregate].peak;
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return -1;
  }
}

// Starts a new peak from the current allocation on device `index`.
void meltr_device_reset_peak(int64_t index, char **error) {
  try {
    at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  }
}

}  // extern "C"

// torch's ProcessGroupNCCL for CUDA tensors (see process_group.cpp for the
// rendezvous and the collectives, which every backend shares). Compiled
// only where libtorch has CUDA (build.rs).
//
// As with Gloo, the class is declared here with just what is called (its
// header needs CUDA's and NCCL's headers): Options' and the group's
// constructors, exported by libtorch_cuda. Both objects are placed in
// generous storage and used only through their c10d base classes, whose
// headers are real; the declared destructors keep this file from emitting
// vtables of its own (tests/house.rs checks the binary).
#include "process_group.h"

#include <cstring>
#include <exception>
#include <new>

namespace c10d {
class ProcessGroupNCCL : public Backend {
 public:
  struct Options : public Backend::Options {
    explicit Options(bool is_high_priority_stream);
    ~Options() override;
  };
  ProcessGroupNCCL(c10::intrusive_ptr<Store> store, int rank, int size,
                   c10::intrusive_ptr<Options> options);
  ~ProcessGroupNCCL() override;
};
}  // namespace c10d

namespace {
// `new (storage) T(args...)` in fresh storage, adopted as make_intrusive
// would; freed through T's base's virtual destructor.
template <class T, class... Args>
c10::intrusive_ptr<T> place(Args &&...args) {
  void *storage = ::operator new(meltr::kObjectStorage);
  std::memset(storage, 0, meltr::kObjectStorage);
  T *object;
  try {
    object = new (storage) T(std::forward<Args>(args)...);
  } catch (...) {
    ::operator delete(storage);
    throw;
  }
  return c10::intrusive_ptr<T>::unsafe_steal_from_new(object);
}
}  // namespace

extern "C" {

// As meltr_pg_gloo_new, for CUDA tensors on this process's current CUDA
// device (the caller sets it from the local rank).
void *meltr_pg_nccl_new(const char *host, int port, int rank, int world,
                        int64_t timeout_ms, char **error) {
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = meltr::rendezvous(host, port, rank, world, timeout);
    auto options = place<c10d::ProcessGroupNCCL::Options>(false);
    options->timeout = timeout;
    auto group =
        place<c10d::ProcessGroupNCCL>(store, rank, world, std::move(options));
    return new meltr::Group{store,
                            c10::intrusive_ptr<c10d::Backend>(std::move(group)),
                            timeout};
  } catch (const std::exception &e) {
    *error = strdup(e.what());
    return nullptr;
  }
}
}

// c10d process groups for data-parallel training, which tch does not wrap:
// a TCPStore rendezvous (MASTER_ADDR / MASTER_PORT, as torchrun) and
// torch's own ProcessGroupGloo for CPU tensors (ProcessGroupNCCL for CUDA
// tensors: process_group_nccl.cpp); all-reduce, broadcast and barrier,
// each bounded by a timeout.
//
// The wheel's headers include ProcessGroupGloo.hpp but not the gloo headers
// it includes, so the class is declared here with just what is called: the
// constructor and Options::create_default, exported by libtorch_cpu. The
// object is placed in storage sized generously above the real class, and
// only used and destroyed through c10d::Backend's (real) virtual interface.
// The destructor is declared (never defined) so that it stays the key
// function: this file emits no vtable of its own for the class, which would
// otherwise take the place of libtorch's (tests/house.rs checks the binary).
//
// `at::Tensor*` is what tch's `C_tensor` points to. Errors are returned as
// malloc'd strings the caller frees with meltr_shim_free (shim.cpp).
#include "process_group.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace c10d {
class ProcessGroupGloo : public Backend {
 public:
  struct Options : public Backend::Options {
    ~Options() override;
    static c10::intrusive_ptr<Options> create_default(
        std::chrono::milliseconds timeout);
  };
  ProcessGroupGloo(const c10::intrusive_ptr<Store> &store, int rank, int size,
                   c10::intrusive_ptr<Options> options);
  ~ProcessGroupGloo() override;
};
}  // namespace c10d

namespace {
void fail(char **error, const std::exception &e) { *error = strdup(e.what()); }

void wait(meltr::Group *group, const c10::intrusive_ptr<c10d::Work> &work,
          const char *what) {
  if (!work->wait(group->timeout)) {
    throw std::runtime_error(std::string(what) + " did not complete within " +
                             std::to_string(group->timeout.count()) + " ms");
  }
}
}  // namespace

namespace meltr {
c10::intrusive_ptr<c10d::Work> start_collective(
    c10d::Backend &backend,
    const std::function<c10::intrusive_ptr<c10d::Work>(c10d::Backend &)>
        &start) {
  if (backend.getBackendName() == "nccl") return start(backend);
  static std::mutex starting;
  std::lock_guard<std::mutex> lock(starting);
  return start(backend);
}

c10::intrusive_ptr<c10d::Store> rendezvous(const char *host, int port,
                                           int rank, int world,
                                           std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = rank == 0;
  options.numWorkers = world;
  options.waitWorkers = true;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(host, options);
}
}  // namespace meltr

extern "C" {

// Joins the group of `world` ranks that meet at host:port (rank 0 listens
// there), with `timeout_ms` for the rendezvous and every collective.
// Returns the group, or null with *error set.
void *meltr_pg_gloo_new(const char *host, int port, int rank, int world,
                        int64_t timeout_ms, char **error) {
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = meltr::rendezvous(host, port, rank, world, timeout);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    void *storage = ::operator new(meltr::kObjectStorage);
    std::memset(storage, 0, meltr::kObjectStorage);
    c10d::ProcessGroupGloo *gloo;
    try {
      gloo = new (storage) c10d::ProcessGroupGloo(store, rank, world,
                                                  std::move(gloo_options));
    } catch (...) {
      ::operator delete(storage);
      throw;
    }
    // Adopt the new object as make_intrusive would; it is deleted through
    // Backend's virtual destructor, which frees `storage`.
    auto backend = c10::intrusive_ptr<c10d::Backend>::unsafe_steal_from_new(
        static_cast<c10d::Backend *>(gloo));
    return new meltr::Group{store, backend, timeout};
  } catch (const std::exception &e) {
    fail(error, e);
    return nullptr;
  }
}

void meltr_pg_free(void *group) { delete static_cast<meltr::Group *>(group); }

// Sums `tensor` (contiguous) over the ranks, in place.
void meltr_pg_all_reduce_sum(void *group, at::Tensor *tensor, char **error) {
  try {
    auto *g = static_cast<meltr::Group *>(group);
    std::vector<at::Tensor> list{*tensor};
    c10d::AllreduceOptions options;
    options.timeout = g->timeout;
    auto work = meltr::start_collective(*g->backend, [&](c10d::Backend &b) {
      return b.allreduce(list, options);
    });
    wait(g, work, "all-reduce");
  } catch (const std::exception &e) {
    fail(error, e);
  }
}

// Overwrites `tensor` on every rank with rank `root`'s.
void meltr_pg_broadcast(void *group, at::Tensor *tensor, int root,
                        char **error) {
  try {
    auto *g = static_cast<meltr::Group *>(group);
    std::vector<at::Tensor> list{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = g->timeout;
    auto work = meltr::start_collective(*g->backend, [&](c10d::Backend &b) {
      return b.broadcast(list, options);
    });
    wait(g, work, "broadcast");
  } catch (const std::exception &e) {
    fail(error, e);
  }
}

void meltr_pg_barrier(void *group, char **error) {
  try {
    auto *g = static_cast<meltr::Group *>(group);
    c10d::BarrierOptions options;
    options.timeout = g->timeout;
    auto work = meltr::start_collective(
        *g->backend, [&](c10d::Backend &b) { return b.barrier(options); });
    wait(g, work, "barrier");
  } catch (const std::exception &e) {
    fail(error, e);
  }
}
}

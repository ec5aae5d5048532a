// What the process-group shims share (process_group.cpp: rendezvous,
// Gloo, the collectives; process_group_nccl.cpp: NCCL).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstddef>

namespace meltr {

// Storage for a c10d object whose class the shims only declare (the
// wheel lacks the headers its definition needs): generously above the
// real size (about 1 KiB for ProcessGroupGloo, a few KiB for
// ProcessGroupNCCL in torch 2.11).
constexpr std::size_t kObjectStorage = 64 * 1024;

// One rank's membership: the store it met the others at, the backend, and
// the bound on every collective.
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// A TCPStore at host:port (rank 0 serves it), once all `world` ranks are in.
c10::intrusive_ptr<c10d::Store> rendezvous(const char *host, int port,
                                           int rank, int world,
                                           std::chrono::milliseconds timeout);

}  // namespace meltr

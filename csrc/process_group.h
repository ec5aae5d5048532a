// What the process-group shims share (process_group.cpp: rendezvous,
// Gloo, the collectives; process_group_nccl.cpp: NCCL).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstddef>
#include <functional>

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

// Starts a collective: `start(backend)`, which returns its pending work.
// torch 2.11's flight recorder files each group's first collective in a map
// it updates before taking its own lock, so groups of one process starting
// collectives at once can corrupt it (in-process Gloo ranks in tests
// crashed in the map's insert). Gloo's starts only enqueue, so they take
// one lock per process; NCCL's may wait for the peers (the first one sets
// up the communicator), and a process drives one NCCL rank.
c10::intrusive_ptr<c10d::Work> start_collective(
    c10d::Backend &backend,
    const std::function<c10::intrusive_ptr<c10d::Work>(c10d::Backend &)>
        &start);

// A TCPStore at host:port (rank 0 serves it), once all `world` ranks are in.
c10::intrusive_ptr<c10d::Store> rendezvous(const char *host, int port,
                                           int rank, int world,
                                           std::chrono::milliseconds timeout);

}  // namespace meltr

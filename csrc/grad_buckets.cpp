// Asynchronous all-reduces and gradient buckets for data-parallel
// training (issue 18), as DDP's reducer does it: θ's gradients are copied
// into flat buckets (in reverse parameter order, the order the backward
// produces them) by autograd hooks on the parameter leaves, and each
// bucket's all-reduce starts as soon as its last gradient arrives, while
// the backward computes the rest. Buckets start in index order on every
// rank (a ready bucket waits for the ones before it), so the ranks' c10d
// collectives always match.
//
// The hooks do nothing unless armed: only the inner step's θ backward arms
// them (meltr_buckets_arm ... meltr_buckets_finish); the meta step's and
// the gradient shares' backward passes leave them idle. They also fire
// under torch::autograd::grad (tch's run_backward): the engine runs a
// leaf's tensor pre-hooks before it captures the leaf's gradient.
//
// `at::Tensor*` is what tch's `C_tensor` points to. Errors are returned as
// malloc'd strings the caller frees with meltr_shim_free (shim.cpp).
#include "process_group.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {
void fail(char **error, const std::exception &e) { *error = strdup(e.what()); }

void wait_for(const c10::intrusive_ptr<c10d::Work> &work,
              std::chrono::milliseconds timeout, const std::string &what) {
  if (!work->wait(timeout)) {
    throw std::runtime_error(what + " did not complete within " +
                             std::to_string(timeout.count()) + " ms");
  }
}

// A started all-reduce and the bound on waiting for it.
struct Pending {
  c10::intrusive_ptr<c10d::Work> work;
  std::chrono::milliseconds timeout;
};

// Where one parameter's gradient lives in its bucket.
struct Slot {
  at::Tensor param;
  std::size_t bucket;
  int64_t offset;
  bool filled = false;
};

struct Bucket {
  at::Tensor flat;
  std::vector<std::size_t> slots;
  std::size_t missing = 0;  // gradients not yet copied in (this backward)
  c10::intrusive_ptr<c10d::Work> work;  // set once started
  bool started_in_backward = false;
};

struct State {
  std::mutex mutex;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  std::vector<Slot> slots;      // in parameter order
  std::vector<Bucket> buckets;  // bucket 0 holds the last parameters
  int64_t flag_offset = 0;      // the non-finite flag, in the last bucket
  bool armed = false;
  std::size_t next_to_start = 0;
  std::string error;  // the first failure to start a bucket's all-reduce

  // Starts every ready bucket from `next_to_start` on, in order (caller
  // holds the mutex).
  void start_ready(bool in_backward) {
    while (next_to_start < buckets.size() &&
           buckets[next_to_start].missing == 0) {
      Bucket &b = buckets[next_to_start];
      try {
        std::vector<at::Tensor> list{b.flat};
        c10d::AllreduceOptions options;
        options.timeout = timeout;
        b.work = meltr::start_collective(*backend, [&](c10d::Backend &pg) {
          return pg.allreduce(list, options);
        });
        b.started_in_backward = in_backward;
      } catch (const std::exception &e) {
        if (error.empty()) error = e.what();
      }
      ++next_to_start;
    }
  }

  // Copies `grad` (undefined: zeros) into slot `i`'s place (caller holds
  // the mutex).
  void deliver(std::size_t i, const at::Tensor &grad, bool in_backward) {
    Slot &s = slots[i];
    if (s.filled) return;
    Bucket &b = buckets[s.bucket];
    auto place = b.flat.narrow(0, s.offset, s.param.numel());
    if (grad.defined()) {
      place.view(s.param.sizes()).copy_(grad);
    } else {
      place.zero_();
    }
    s.filled = true;
    --b.missing;
    start_ready(in_backward);
  }
};

struct Buckets {
  std::shared_ptr<State> state;
  std::vector<unsigned> hooks;  // one per slot
};
}  // namespace

extern "C" {

// Starts summing `tensor` (contiguous) over the ranks in place; returns the
// pending work for meltr_pg_work_wait, or null with *error set.
void *meltr_pg_all_reduce_sum_start(void *group, at::Tensor *tensor,
                                    char **error) {
  try {
    auto *g = static_cast<meltr::Group *>(group);
    std::vector<at::Tensor> list{*tensor};
    c10d::AllreduceOptions options;
    options.timeout = g->timeout;
    auto work = meltr::start_collective(*g->backend, [&](c10d::Backend &b) {
      return b.allreduce(list, options);
    });
    return new Pending{work, g->timeout};
  } catch (const std::exception &e) {
    fail(error, e);
    return nullptr;
  }
}

// Waits (at most the group's timeout) until the work is done and frees it.
void meltr_pg_work_wait(void *work, char **error) {
  std::unique_ptr<Pending> pending(static_cast<Pending *>(work));
  try {
    wait_for(pending->work, pending->timeout, "all-reduce");
  } catch (const std::exception &e) {
    fail(error, e);
  }
}

// Gradient buckets of at most `bucket_bytes` over the `count` parameters
// (leaves that require grad, contiguous), with hooks registered on them.
// A bucket holds one dtype; a parameter larger than the bound is a bucket
// of its own. Returns null with *error set on failure.
void *meltr_buckets_new(void *group, at::Tensor **params, int64_t count,
                        int64_t bucket_bytes, char **error) {
  try {
    auto *g = static_cast<meltr::Group *>(group);
    if (count <= 0) throw std::runtime_error("no parameters to bucket");
    auto state = std::make_shared<State>();
    state->backend = g->backend;
    state->timeout = g->timeout;
    for (int64_t i = 0; i < count; ++i) {
      // Checked before any hook is registered (register_hook would throw
      // half-way through).
      if (!params[i]->requires_grad()) {
        throw std::runtime_error("parameter " + std::to_string(i) +
                                 " does not require grad");
      }
      state->slots.push_back(Slot{*params[i], 0, 0});
    }
    // Reverse parameter order: the backward's order, roughly.
    std::vector<int64_t> sizes;
    for (int64_t i = count - 1; i >= 0; --i) {
      Slot &s = state->slots[i];
      int64_t bytes = s.param.numel() * s.param.element_size();
      bool fresh = state->buckets.empty();
      if (!fresh) {
        const Slot &prev = state->slots[state->buckets.back().slots.back()];
        fresh = prev.param.scalar_type() != s.param.scalar_type() ||
                prev.param.device() != s.param.device() ||
                (sizes.back() + s.param.numel()) * s.param.element_size() >
                    bucket_bytes;
      }
      if (fresh) {
        state->buckets.emplace_back();
        sizes.push_back(0);
      }
      s.bucket = state->buckets.size() - 1;
      s.offset = sizes.back();
      sizes.back() += s.param.numel();
      state->buckets.back().slots.push_back(static_cast<std::size_t>(i));
    }
    // One more element in the last bucket (parameter 0's, done last): the
    // ranks' non-finite flag, set when the backward is armed.
    state->flag_offset = sizes.back();
    sizes.back() += 1;
    for (std::size_t b = 0; b < state->buckets.size(); ++b) {
      const Slot &first = state->slots[state->buckets[b].slots.front()];
      state->buckets[b].flat = at::zeros({sizes[b]}, first.param.options()
                                                         .requires_grad(false));
    }
    auto *buckets = new Buckets{state, {}};
    std::weak_ptr<State> weak = state;
    for (std::size_t i = 0; i < state->slots.size(); ++i) {
      buckets->hooks.push_back(state->slots[i].param.register_hook(
          [weak, i](const at::Tensor &grad) {
            if (auto s = weak.lock()) {
              std::lock_guard<std::mutex> lock(s->mutex);
              if (s->armed) {
                c10::NoGradGuard no_grad;
                s->deliver(i, grad, true);
              }
            }
          }));
    }
    return buckets;
  } catch (const std::exception &e) {
    fail(error, e);
    return nullptr;
  }
}

// Removes the hooks and frees the buckets.
void meltr_buckets_free(void *handle) {
  auto *buckets = static_cast<Buckets *>(handle);
  for (std::size_t i = 0; i < buckets->hooks.size(); ++i) {
    try {
      buckets->state->slots[i].param.remove_hook(buckets->hooks[i]);
    } catch (...) {
    }
  }
  delete buckets;
}

// The number of buckets.
int64_t meltr_buckets_count(void *handle) {
  return static_cast<int64_t>(
      static_cast<Buckets *>(handle)->state->buckets.size());
}

// Arms the hooks for the next backward; `bad` (a 0-dim number: 1 when
// this rank's losses are not finite) is summed along with the gradients.
// A bucket still referenced from the last step (its views alive) is
// replaced by a fresh one.
void meltr_buckets_arm(void *handle, at::Tensor *bad, char **error) {
  try {
    auto &s = *static_cast<Buckets *>(handle)->state;
    std::lock_guard<std::mutex> lock(s.mutex);
    c10::NoGradGuard no_grad;
    for (auto &b : s.buckets) {
      if (b.flat.storage().use_count() > 1) b.flat = at::empty_like(b.flat);
      b.missing = b.slots.size();
      b.work.reset();
      b.started_in_backward = false;
    }
    for (auto &slot : s.slots) slot.filled = false;
    s.buckets.back().flat.narrow(0, s.flag_offset, 1).copy_(bad->reshape({1}));
    s.next_to_start = 0;
    s.error.clear();
    s.armed = true;
  } catch (const std::exception &e) {
    fail(error, e);
  }
}

// Copies the `count` gradients `grads` (parameter order; null: zeros) into
// the armed buckets, starting their all-reduces: the path for gradients
// that a backward without the hooks computed (the gradient shares').
void meltr_buckets_deliver(void *handle, at::Tensor **grads, int64_t count,
                           char **error) {
  try {
    auto &s = *static_cast<Buckets *>(handle)->state;
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.armed) throw std::runtime_error("the buckets are not armed");
    if (count != static_cast<int64_t>(s.slots.size())) {
      throw std::runtime_error("expected " + std::to_string(s.slots.size()) +
                               " gradients, got " + std::to_string(count));
    }
    c10::NoGradGuard no_grad;
    for (int64_t i = count - 1; i >= 0; --i) {
      s.deliver(static_cast<std::size_t>(i),
                grads[i] ? *grads[i] : at::Tensor(), false);
    }
  } catch (const std::exception &e) {
    fail(error, e);
  }
}

// Disarms the hooks, starts the buckets still missing gradients (those
// gradients are zeros: the loss does not depend on them), waits for every
// all-reduce and divides by the world size. Fills `out` (`count` new
// tensors the caller owns, views of the buckets in parameter order, valid
// until the next arm), `*flag` (the ranks' summed non-finite flags, a new
// tensor) and `*in_backward` (buckets started during the backward); on
// failure sets *error and fills nothing.
void meltr_buckets_finish(void *handle, at::Tensor **out, int64_t count,
                          at::Tensor **flag, int64_t *in_backward,
                          char **error) {
  try {
    auto &s = *static_cast<Buckets *>(handle)->state;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.armed) throw std::runtime_error("the buckets are not armed");
      s.armed = false;
      c10::NoGradGuard no_grad;
      for (std::size_t i = s.slots.size(); i-- > 0;) {
        s.deliver(i, at::Tensor(), false);
      }
      if (!s.error.empty()) throw std::runtime_error(s.error);
    }
    if (count != static_cast<int64_t>(s.slots.size())) {
      throw std::runtime_error("expected room for " +
                               std::to_string(s.slots.size()) + " gradients");
    }
    int64_t started = 0;
    for (std::size_t b = 0; b < s.buckets.size(); ++b) {
      wait_for(s.buckets[b].work, s.timeout,
               "all-reduce of gradient bucket " + std::to_string(b + 1) +
                   " of " + std::to_string(s.buckets.size()));
      started += s.buckets[b].started_in_backward ? 1 : 0;
    }
    c10::NoGradGuard no_grad;
    double world = static_cast<double>(s.backend->getSize());
    for (auto &b : s.buckets) b.flat.div_(world);
    for (std::size_t i = 0; i < s.slots.size(); ++i) {
      const Slot &slot = s.slots[i];
      out[i] = new at::Tensor(s.buckets[slot.bucket]
                                  .flat.narrow(0, slot.offset, slot.param.numel())
                                  .view(slot.param.sizes()));
    }
    *flag = new at::Tensor(
        s.buckets.back().flat.narrow(0, s.flag_offset, 1).mul(world));
    *in_backward = started;
  } catch (const std::exception &e) {
    fail(error, e);
  }
}
}

// Collectives over Gloo's TCP transport (CPU ranks) and the common entry points.
// Gloo bootstraps through its rendezvous::Store interface; StoreAdapter implements it
// over the C callbacks (runner/coord gives an authenticated Redis store), wrapped in a
// PrefixStore so that each job, attempt and group has its own keys.
#include "kernels/collectives/collectives_impl.h"

// runner/error.h is C17; its exitcode.h spells noreturn the C way.
#define _Noreturn [[noreturn]]
extern "C" {
#include "runner/error.h"
}
#undef _Noreturn

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A failed store callback: the reason is already in error_message().
struct StoreError : std::runtime_error {
    int code;
    StoreError(int c, const char *what) : std::runtime_error(what), code(c) {}
};

class StoreAdapter : public gloo::rendezvous::Store {
  public:
    explicit StoreAdapter(const collective_store_ops &ops) : ops_(ops) {}

    void set(const std::string &key, const std::vector<char> &data) override {
        int code = ops_.set(ops_.ctx, key.c_str(), data.data(), data.size());
        if (code)
            throw StoreError(code, error_message());
    }

    std::vector<char> get(const std::string &key) override {
        void *data = nullptr;
        size_t len = 0;
        int code = ops_.get(ops_.ctx, key.c_str(), &data, &len);
        if (code)
            throw StoreError(code, error_message());
        std::vector<char> out(static_cast<char *>(data), static_cast<char *>(data) + len);
        std::free(data);
        return out;
    }

    void wait(const std::vector<std::string> &keys) override {
        wait(keys, Store::kDefaultTimeout);
    }

    void wait(const std::vector<std::string> &keys,
              const std::chrono::milliseconds &timeout) override {
        std::vector<const char *> names;
        names.reserve(keys.size());
        for (const auto &k : keys)
            names.push_back(k.c_str());
        int code = ops_.wait(ops_.ctx, names.data(), names.size(),
                             static_cast<int>(timeout.count()));
        if (code)
            throw StoreError(code, error_message());
    }

  private:
    collective_store_ops ops_;
};

// Run a Gloo call; exceptions become exit codes (a peer gone: 83).
template <typename F> int guarded(const char *what, F &&f) {
    try {
        f();
        return 0;
    } catch (const StoreError &e) {
        return error_set(e.code, "collective %s: %s", what, e.what());
    } catch (const std::bad_alloc &) {
        return error_set(EXIT_RESOURCES, "collective %s: out of memory", what);
    } catch (const std::exception &e) {
        return error_set(EXIT_PEER_LOST, "collective %s failed (a peer died or timed out): %s",
                         what, e.what());
    }
}

} // namespace

extern "C" int collective_store_fetch(const collective_store_ops *store, const char *key,
                                      int timeout_ms, void **data, size_t *len) {
    const char *keys[1] = {key};
    int code = store->wait(store->ctx, keys, 1, timeout_ms);
    if (code)
        return code;
    return store->get(store->ctx, key, data, len);
}

extern "C" int collective_init_cpu(const collective_store_ops *store, const char *prefix,
                                   const char *hostname, int rank, int world, int timeout_ms,
                                   collective **out) {
    *out = nullptr;
    if (world < 1 || rank < 0 || rank >= world)
        return error_set(EXIT_INTERNAL, "collective_init_cpu: rank %d of world %d", rank, world);
    auto *c = new (std::nothrow) collective();
    if (!c)
        return error_set(EXIT_RESOURCES, "collective_init_cpu: out of memory");
    c->kind = COLLECTIVE_GLOO;
    c->rank = rank;
    c->world = world;
    c->timeout_ms = timeout_ms;
    int code = guarded("init", [&] {
        gloo::transport::tcp::attr attr(hostname);
        auto device = gloo::transport::tcp::CreateDevice(attr);
        auto context = std::make_shared<gloo::rendezvous::Context>(rank, world);
        context->setTimeout(std::chrono::milliseconds(timeout_ms));
        StoreAdapter adapter(*store);
        gloo::rendezvous::PrefixStore prefixed(prefix, adapter);
        context->connectFullMesh(prefixed, device);
        c->gloo = context;
    });
    if (code) {
        delete c;
        return code;
    }
    *out = c;
    return 0;
}

extern "C" int collective_rank(const collective *c) { return c->rank; }
extern "C" int collective_world(const collective *c) { return c->world; }

#ifdef RUNNER_HAVE_NCCL
int collective_nccl_allreduce_sum_f32(collective *c, float *buf, size_t n);
int collective_nccl_allreduce_async(collective *c, float *buf, size_t n, void *stream);
int collective_nccl_check(collective *c);
int collective_nccl_broadcast_f32(collective *c, float *buf, size_t n, int root);
int collective_nccl_barrier(collective *c);
void collective_nccl_destroy(collective *c);
#endif

extern "C" int collective_allreduce_sum_f32(collective *c, float *buf, size_t n) {
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        return collective_nccl_allreduce_sum_f32(c, buf, n);
#endif
    if (c->world == 1 || n == 0)
        return 0;
    return guarded("allreduce", [&] {
        gloo::AllreduceOptions opts(c->gloo);
        opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
        opts.setOutput(buf, n);
        opts.setReduceFunction(
            static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<float>));
        opts.setTag(c->tag++);
        opts.setTimeout(std::chrono::milliseconds(c->timeout_ms));
        gloo::allreduce(opts);
    });
}

extern "C" int collective_allreduce_sum_f32_async(collective *c, float *buf, size_t n,
                                                  void *stream) {
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        return collective_nccl_allreduce_async(c, buf, n, stream);
#endif
    (void)stream;
    return collective_allreduce_sum_f32(c, buf, n);
}

extern "C" int collective_check(collective *c) {
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        return collective_nccl_check(c);
#endif
    (void)c;
    return 0;
}

extern "C" int collective_broadcast_f32(collective *c, float *buf, size_t n, int root) {
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        return collective_nccl_broadcast_f32(c, buf, n, root);
#endif
    if (c->world == 1 || n == 0)
        return 0;
    return guarded("broadcast", [&] {
        gloo::BroadcastOptions opts(c->gloo);
        if (c->rank == root)
            opts.setInput(buf, n);
        opts.setOutput(buf, n);
        opts.setRoot(root);
        opts.setTag(c->tag++);
        opts.setTimeout(std::chrono::milliseconds(c->timeout_ms));
        gloo::broadcast(opts);
    });
}

extern "C" int collective_barrier(collective *c) {
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        return collective_nccl_barrier(c);
#endif
    if (c->world == 1)
        return 0;
    return guarded("barrier", [&] {
        gloo::BarrierOptions opts(c->gloo);
        opts.setTag(c->tag++);
        opts.setTimeout(std::chrono::milliseconds(c->timeout_ms));
        gloo::barrier(opts);
    });
}

extern "C" void collective_destroy(collective *c) {
    if (!c)
        return;
#ifdef RUNNER_HAVE_NCCL
    if (c->kind == COLLECTIVE_NCCL)
        collective_nccl_destroy(c);
#endif
    delete c;
}

#ifndef RUNNER_HAVE_NCCL
extern "C" int collective_init_gpu(const collective_store_ops *store, const char *prefix,
                                   int rank, int world, int device, int timeout_ms,
                                   collective **out) {
    (void)store, (void)prefix, (void)rank, (void)world, (void)device, (void)timeout_ms;
    *out = nullptr;
    return error_set(EXIT_GPU_FAULT, "collective_init_gpu: this build has no CUDA/NCCL");
}
#endif

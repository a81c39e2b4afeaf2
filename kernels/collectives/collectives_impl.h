#pragma once
// The collective handle shared by the Gloo and NCCL halves of the shim (C++ only).
#include "kernels/collectives/collectives.h"

#include <memory>

namespace gloo {
class Context;
}

enum collective_kind { COLLECTIVE_GLOO, COLLECTIVE_NCCL };

struct collective {
    collective_kind kind;
    int rank;
    int world;
    int timeout_ms;
    uint32_t tag; // one per operation, the same sequence on every rank
    std::shared_ptr<gloo::Context> gloo;
    void *nccl_comm;   // ncclComm_t
    void *nccl_stream; // cudaStream_t
};

extern "C" {
// Wait for `key` in the store, then read it (a malloc'd copy in *data).
int collective_store_fetch(const collective_store_ops *store, const char *key, int timeout_ms,
                           void **data, size_t *len);
}

// Gradient synchronisation for data-parallel training (see data_parallel.h).
#include "runner/coord/data_parallel.h"

// The model's one gradient buffer (model internals: the collectives need the device
// pointer, which bert.h does not expose).
#include "runner/model/bert_internal.h"

#include "runner/coord/coord.h"
#include "runner/coord/coord_store.h"
#include "runner/error.h"

#include <stdlib.h>
#include <string.h>

enum { GROUP_TIMEOUT_MS = 120000 };

// The store lives as long as the group: the handle keeps both.
typedef struct {
    collective *group;
    collective_store_ops store;
} open_group;

static open_group groups[8];

int data_parallel_open(int rank, int world, bool gpu, int device, collective **out) {
    *out = NULL;
    if (world <= 1)
        return 0;
    open_group *g = NULL;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0] && !g; i++)
        if (!groups[i].group)
            g = &groups[i];
    if (!g)
        return error_set(EXIT_INTERNAL, "data_parallel_open: too many groups");
    int code = coord_store_open(&g->store);
    if (code)
        return code;
    char prefix[COORD_PREFIX_MAX + 32];
    coord_store_prefix("dp", prefix, sizeof prefix);
    code = gpu ? collective_init_gpu(&g->store, prefix, rank, world, device, GROUP_TIMEOUT_MS,
                                     &g->group)
               : collective_init_cpu(&g->store, prefix, coord_self()->node_address, rank, world,
                                     GROUP_TIMEOUT_MS, &g->group);
    if (code) {
        coord_store_close(&g->store);
        g->group = NULL;
        return code;
    }
    *out = g->group;
    return 0;
}

void data_parallel_close(collective *group) {
    if (!group)
        return;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i].group == group) {
            collective_destroy(group);
            coord_store_close(&groups[i].store);
            groups[i].group = NULL;
        }
}

int data_parallel_sync(collective *c, bert_model *m, long labelled, float *loss) {
    if (collective_world(c) == 1)
        return 0;
    // (labelled, loss * labelled) summed over ranks: the global denominator and loss.
    // The buffer lives where the group reduces: backend memory (the GPU for NCCL).
    float totals[2] = {(float)labelled, *loss * (float)labelled};
    float *dev = m->be->alloc(m->be, sizeof totals);
    if (!dev)
        return error_code() ? error_code() : EXIT_RESOURCES;
    int code = m->be->copy_to_device(m->be, dev, totals, sizeof totals);
    if (code == 0)
        code = collective_allreduce_sum_f32(c, dev, 2);
    if (code == 0)
        code = m->be->copy_to_host(m->be, totals, dev, sizeof totals);
    m->be->free(m->be, dev);
    if (code)
        return code;
    if (!m->grads)
        return error_set(EXIT_INTERNAL, "data_parallel_sync: no gradients (call after bert_backward)");
    // d(global mean)/dw = sum_r (n_r / N) d(mean_r)/dw: weight, then sum.
    float weight = totals[0] > 0 ? (float)labelled / totals[0] : 0.0f;
    m->be->scale(m->be, m->grads, m->num_params, weight);
    if ((code = m->be->synchronize(m->be)))
        return code;
    if ((code = collective_allreduce_sum_f32(c, m->grads, m->num_params)))
        return code;
    *loss = totals[0] > 0 ? totals[1] / totals[0] : 0.0f;
    return 0;
}

int data_parallel_allreduce_host(collective *c, backend *be, float *values, size_t n) {
    if (!be || strcmp(be->name, "cpu") == 0) return collective_allreduce_sum_f32(c, values, n);
    float *dev = be->alloc(be, n * sizeof *values);
    if (!dev) return error_code() ? error_code() : EXIT_GPU_OOM;
    int code = be->copy_to_device(be, dev, values, n * sizeof *values);
    if (code == 0) code = collective_allreduce_sum_f32(c, dev, n);
    if (code == 0) code = be->copy_to_host(be, values, dev, n * sizeof *values);
    be->free(be, dev);
    return code;
}

// 24 bits a float: an fp32 holds every integer below 2^24 exactly, and adding zeros
// to it changes nothing, so the sum over ranks is exactly each rank's own slot.
static const long HALF_BITS = 24, HALF_MASK = (1L << 24) - 1;

int data_parallel_gather_long(collective *c, backend *be, long mine, long *all) {
    int world = collective_world(c);
    if (mine < -1 || mine + 1 > (1L << 48) - 1)
        return error_set(EXIT_INTERNAL, "data_parallel_gather_long: %ld out of range", mine);
    float *slots = calloc(2 * (size_t)world, sizeof *slots);
    if (!slots) return error_set(EXIT_RESOURCES, "out of memory");
    int rank = collective_rank(c);
    long v = mine + 1; // -1 (none) travels as 0
    slots[2 * rank] = (float)(v >> HALF_BITS);
    slots[2 * rank + 1] = (float)(v & HALF_MASK);
    int code = data_parallel_allreduce_host(c, be, slots, 2 * (size_t)world);
    for (int k = 0; code == 0 && k < world; k++)
        all[k] = ((long)slots[2 * k] << HALF_BITS) + (long)slots[2 * k + 1] - 1;
    free(slots);
    return code;
}

void data_parallel_slice(int global_batch, int rank, int world, int *first, int *count) {
    int base = global_batch / world, extra = global_batch % world;
    *count = base + (rank < extra ? 1 : 0);
    *first = rank * base + (rank < extra ? rank : extra);
}

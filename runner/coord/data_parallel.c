// Gradient synchronisation for data-parallel training (see data_parallel.h).
#include "runner/coord/data_parallel.h"

// The model's one gradient buffer (model internals: the collectives need the device
// pointer, which bert.h does not expose).
#include "runner/model/bert_internal.h"

#include "runner/error.h"

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

void data_parallel_slice(int global_batch, int rank, int world, int *first, int *count) {
    int base = global_batch / world, extra = global_batch % world;
    *count = base + (rank < extra ? 1 : 0);
    *first = rank * base + (rank < extra ? rank : extra);
}

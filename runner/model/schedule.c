#include "runner/model/schedule.h"

// Same arithmetic as transformers.get_linear_schedule_with_warmup's lr_lambda:
//   step < warmup: step / max(1, warmup)
//   else:          max(0, (total - step) / max(1, total - warmup))
float schedule_lr(float base_lr, long step, long warmup_steps, long total_steps) {
    if (step < 0) step = 0;
    if (warmup_steps > 0 && step < warmup_steps)
        return base_lr * (float)((double)step / (double)warmup_steps);
    if (total_steps <= 0) return base_lr;
    long span = total_steps - warmup_steps;
    if (span < 1) span = 1;
    double factor = (double)(total_steps - step) / (double)span;
    if (factor < 0) factor = 0;
    return base_lr * (float)factor;
}

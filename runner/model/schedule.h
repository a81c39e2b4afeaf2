#pragma once
// Learning-rate schedule of the original job (transformers' get_linear_schedule_with_warmup):
// linear warm-up from 0 to base_lr over warmup_steps, then linear decay to 0 at total_steps.

// The learning rate for optimiser step `step` (0-based, as the scheduler's counter: the
// first update uses step 0). Never negative; base_lr when total_steps <= 0 and no warm-up.
float schedule_lr(float base_lr, long step, long warmup_steps, long total_steps);

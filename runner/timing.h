#pragma once
// Monotonic time and sleeping, for timeouts, backoff and rates (never for timestamps
// that leave the process: those are wall-clock, in log.c and the exporters).

// Seconds since an arbitrary fixed point (CLOCK_MONOTONIC).
double timing_now_s(void);
// Milliseconds since the same point.
long long timing_now_ms(void);
// Sleep `ms` milliseconds, resuming after a signal handler interrupts it.
void timing_sleep_ms(long ms);

#pragma once
// The trial queue of a search shared by several workers (GPUs or nodes), behind the
// trial_source interface of runner/job/trials.h (DESIGN §7):
//   {prefix}trials          a stream, one entry per trial id, consumer group "workers";
//                           a worker takes a trial with XREADGROUP, and a trial whose
//                           worker died (its claim not refreshed for claim_ms) is taken
//                           over with XAUTOCLAIM: no trial is lost;
//   {prefix}trials:results  a hash id -> result; complete() is HSETNX + XACK in one
//                           script, so a trial is recorded complete once, never twice;
//   {prefix}trials:rungs    a hash "id:epoch" -> eval loss, the ASHA records.
// Every worker samples the same specs (trials_sample() with the job's seed), so the
// stream carries only ids; the first worker to arrive seeds it. While a worker runs a
// trial, a thread of the source refreshes its claim (XCLAIM with min-idle 0) every
// claim_ms / 6.
//
// Through a Redis outage (the data kept, as a failover to a replica keeps it) no trial
// is lost or run twice: a command whose reply was lost with the connection is sent
// again, so an entry delivered to this worker but never seen by it is taken up from
// the worker's own pending list at its next take; completing is idempotent (the same
// result twice counts once, silently); and nobody takes over another worker's trial
// until it has seen Redis answer for claim_ms without interruption, since the outage
// kept every worker from refreshing its claims (their idle times grew meanwhile).
#include "runner/coord/redis_client.h"
#include "runner/job/trials.h"

typedef struct {
    int claim_ms;        // a trial unclaimed this long belongs to a dead worker (30000)
    int poll_ms;         // how often an idle worker looks again while others run (500)
    // The search state file of runner/job (trials_local_create's format), or NULL. The
    // worker that seeds the stream skips the trials completed there (a retried attempt
    // has new keys but the same output), and every completion rewrites it atomically
    // with everything Redis knows, so the next attempt starts where this one stopped.
    const char *state_path;
    // How long one command of the job thread waits for a Redis that went away (10000;
    // the job's: --redis-outage-timeout): the search waits through an outage, and a
    // stop request (signals_stop_requested) ends the wait.
    int retry_ms;
} trials_redis_options;

// A source over `ep` with keys under `prefix` ("runner:{job}:{attempt}:"), consumer
// name `consumer` (unique per worker process). `options` may be NULL (defaults, or
// RUNNER_TRIAL_CLAIM_MS). 0 or an exit code (EXIT_COORDINATION when Redis fails).
int trials_redis_create(trial_source **out, const trial_spec *specs, int n,
                        const asha_config *asha, const redis_endpoint *ep, const char *prefix,
                        const char *consumer, const trials_redis_options *options);
// The same for this job: the endpoint and prefix of coord_start() (inherited by a
// worker across fork), consumer "node<N>-rank<R>-pid<P>", `state_path` as above (may be
// NULL). EXIT_USAGE when Redis is off.
int trials_redis_create_for_job(trial_source **out, const trial_spec *specs, int n,
                                const asha_config *asha, const char *state_path, int rank);

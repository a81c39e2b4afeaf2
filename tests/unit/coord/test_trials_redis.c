// The Redis-stream trial queue with a real redis-server: three worker processes share
// eight trials, one is killed (SIGKILL) while it holds a trial; the trial is taken over
// and finished by another; every trial is completed exactly once and none is pending.
#include "check.h"
#include "coord/redis_keeper.h"
#include "runner/coord/trials_redis.h"
#include "runner/error.h"
#include "runner/timing.h"

#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { N_TRIALS = 8, WORKERS = 3 };

static redis_endpoint endpoint;
static trial_spec specs[N_TRIALS];
static const asha_config asha = {.min_epochs = 1, .eta = 2};
static const trials_redis_options fast = {.claim_ms = 600, .poll_ms = 50};

static void nap_ms(int ms) {
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

// A worker: takes trials until none is left; writes "<id>\n" to `report_fd` for every
// trial it completed. The victim writes "took <id>\n" and hangs on its first trial.
static int worker(int index, int report_fd, bool victim) {
    char consumer[32];
    snprintf(consumer, sizeof consumer, "worker-%d", index);
    trial_source *src;
    if (trials_redis_create(&src, specs, N_TRIALS, &asha, &endpoint, "runner:t:1:", consumer,
                            &fast) != 0)
        return 10;
    for (;;) {
        trial_spec t;
        bool have;
        if (src->next(src, &t, &have) != 0)
            return 11;
        if (!have)
            break;
        char line[32];
        if (victim) {
            int len = snprintf(line, sizeof line, "took %d\n", t.id);
            if (write(report_fd, line, (size_t)len) != len)
                return 12;
            for (;;)
                pause(); // killed here, holding trial t
        }
        nap_ms(60); // "train"
        bool stop;
        if (src->report(src, t.id, 1, 1.0 + t.id, &stop) != 0)
            return 13;
        trial_result r = {.id = t.id, .epochs_run = 1, .best_eval_loss = 1.0 + t.id,
                          .best_eval_f1 = 0.5};
        if (src->complete(src, &r) != 0)
            return 14;
        int len = snprintf(line, sizeof line, "%d\n", t.id);
        if (write(report_fd, line, (size_t)len) != len)
            return 15;
    }
    src->destroy(src);
    return 0;
}

static void test_shared_queue_survives_a_dead_worker(void) {
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    pid_t pids[WORKERS];
    // The victim starts first so that it surely holds a trial.
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            close(fds[0]);
            alarm(25);
            _exit(worker(w, fds[1], w == 0));
        }
        if (w == 0) {
            char buf[32] = "";
            ssize_t got = read(fds[0], buf, sizeof buf - 1);
            CHECK(got > 5 && strncmp(buf, "took ", 5) == 0);
            kill(pids[0], SIGKILL);
        }
    }
    close(fds[1]);
    int count[N_TRIALS] = {0};
    FILE *in = fdopen(fds[0], "r");
    int id;
    while (fscanf(in, "%d", &id) == 1)
        if (id >= 0 && id < N_TRIALS)
            count[id]++;
    fclose(in);
    for (int w = 0; w < WORKERS; w++) {
        int st;
        waitpid(pids[w], &st, 0);
        if (w == 0)
            CHECK(WIFSIGNALED(st));
        else
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int i = 0; i < N_TRIALS; i++)
        CHECK_INT(count[i], 1); // each completed once, the dead worker's one included

    trial_source *src;
    CHECK_INT(trials_redis_create(&src, specs, N_TRIALS, &asha, &endpoint, "runner:t:1:",
                                  "checker", &fast), 0);
    trial_result results[N_TRIALS + 2];
    CHECK_INT(src->results(src, results, N_TRIALS + 2), N_TRIALS);
    trial_spec t;
    bool have = true;
    CHECK_INT(src->next(src, &t, &have), 0); // nothing left, nothing pending
    CHECK(!have);
    // A second completion of a finished trial does not replace the first result.
    trial_result again = {.id = 3, .epochs_run = 9, .best_eval_loss = 0.001};
    CHECK_INT(src->complete(src, &again), 0);
    CHECK_INT(src->results(src, results, N_TRIALS + 2), N_TRIALS);
    for (int i = 0; i < N_TRIALS; i++)
        if (results[i].id == 3) {
            CHECK_INT(results[i].epochs_run, 1);
            CHECK_CLOSE(results[i].best_eval_loss, 4.0, 0, 0);
        }
    src->destroy(src);
}

static void test_asha_records_are_shared(void) {
    trial_source *a, *b;
    CHECK_INT(trials_redis_create(&a, specs, N_TRIALS, &asha, &endpoint, "runner:t:2:", "a", &fast), 0);
    CHECK_INT(trials_redis_create(&b, specs, N_TRIALS, &asha, &endpoint, "runner:t:2:", "b", &fast), 0);
    bool stop = true;
    CHECK_INT(a->report(a, 0, 1, 0.5, &stop), 0);
    CHECK(!stop); // first at the rung
    CHECK_INT(b->report(b, 1, 1, 0.9, &stop), 0);
    CHECK(stop); // worse than the median of what a recorded
    CHECK_INT(b->report(b, 2, 1, 0.1, &stop), 0);
    CHECK(!stop);
    CHECK_INT(a->report(a, 3, 2, 5.0, &stop), 0);
    CHECK(!stop); // epoch 2 is a rung with nothing recorded yet
    a->destroy(a);
    b->destroy(b);
}

// A retried attempt (new key prefix, same output) takes over what the state file says
// was completed and runs only the rest; every completion rewrites the file.
static void test_state_file_carries_over_attempts(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/trials-state-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs("{\"completed\": [{\"id\": 1, \"epochs_run\": 2, \"best_eval_loss\": 0.25, "
          "\"best_eval_f1\": 0.5, \"halted\": false}, {\"id\": 6, \"epochs_run\": 1, "
          "\"best_eval_loss\": 0.75, \"best_eval_f1\": 0.1, \"halted\": true}], "
          "\"rungs\": [{\"id\": 1, \"epoch\": 1, \"eval_loss\": 0.3}]}", f);
    fclose(f);
    trials_redis_options opt = fast;
    opt.state_path = path;
    trial_source *src;
    CHECK_INT(trials_redis_create(&src, specs, N_TRIALS, &asha, &endpoint, "runner:t:4:", "w",
                                  &opt), 0);
    trial_result results[N_TRIALS];
    CHECK_INT(src->results(src, results, N_TRIALS), 2);
    int ran = 0;
    for (;;) {
        trial_spec t;
        bool have;
        CHECK_INT(src->next(src, &t, &have), 0);
        if (!have)
            break;
        CHECK(t.id != 1 && t.id != 6);
        trial_result r = {.id = t.id, .epochs_run = 1, .best_eval_loss = 2.0 + t.id};
        CHECK_INT(src->complete(src, &r), 0);
        ran++;
    }
    CHECK_INT(ran, N_TRIALS - 2);
    // The ASHA record of the earlier attempt counts: trial 0 is worse at rung 1.
    bool stop = false;
    CHECK_INT(src->report(src, 0, 1, 0.9, &stop), 0);
    CHECK(stop);
    src->destroy(src);
    // The file now holds all eight, readable by the local source of runner/job.
    trial_source *local;
    CHECK_INT(trials_local_create(&local, specs, N_TRIALS, &asha, path), 0);
    CHECK_INT(local->results(local, results, N_TRIALS), N_TRIALS);
    int best = trials_best(results, N_TRIALS);
    CHECK(best >= 0 && results[best].id == 1);
    local->destroy(local);
    unlink(path);
}

// The embedded server dies mid-search (its supervisor starts it again, empty): the
// workers queue the trials again from the state file and finish every one.
static void test_search_survives_a_redis_restart(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/trials-restart-%d.json", (int)getpid());
    unlink(path);
    trials_redis_options opt = fast;
    opt.state_path = path;
    trial_source *a, *b;
    CHECK_INT(trials_redis_create(&a, specs, N_TRIALS, &asha, &endpoint, "runner:t:5:", "a", &opt), 0);
    CHECK_INT(trials_redis_create(&b, specs, N_TRIALS, &asha, &endpoint, "runner:t:5:", "b", &opt), 0);
    int done = 0, count[N_TRIALS] = {0};
    bool killed = false;
    for (int turn = 0; turn < 100; turn++) {
        trial_source *s = turn % 2 ? b : a;
        trial_spec t;
        bool have;
        CHECK_INT(s->next(s, &t, &have), 0);
        if (!have)
            break;
        if (done == 3 && !killed) {
            kill(redis_keeper_server, SIGKILL); // trial t is in flight; the keeper restarts it
            killed = true;
            nap_ms(400);
        }
        trial_result r = {.id = t.id, .epochs_run = 1, .best_eval_loss = 1.0 + t.id};
        CHECK_INT(s->complete(s, &r), 0);
        count[t.id]++;
        done++;
    }
    CHECK(killed);
    trial_result results[N_TRIALS];
    CHECK_INT(a->results(a, results, N_TRIALS), N_TRIALS);
    for (int i = 0; i < N_TRIALS; i++)
        CHECK(count[i] >= 1);
    CHECK(done <= N_TRIALS + 2); // at most the in-flight trials ran again
    a->destroy(a);
    b->destroy(b);
    unlink(path);
}

// Redis 7's XAUTOCLAIM looks at no more than 10 x COUNT pending entries per call: a dead
// worker's trial behind eleven live claims is still taken over (the cursor is followed).
static void test_takeover_behind_live_claims(void) {
    enum { MANY = 14, LIVE = 11 };
    trial_spec many[MANY];
    for (int i = 0; i < MANY; i++)
        many[i] = (trial_spec){.id = i, .seed = 200u + (unsigned)i, .learning_rate = 1e-4,
                               .batch_size = 8, .max_epochs = 1};
    const char *prefix = "runner:t:6:";
    trial_source *live, *rescuer;
    CHECK_INT(trials_redis_create(&live, many, MANY, &asha, &endpoint, prefix, "live", &fast), 0);
    CHECK_INT(trials_redis_create(&rescuer, many, MANY, &asha, &endpoint, prefix, "rescuer", &fast), 0);
    for (int i = 0; i < LIVE; i++) { // held and kept fresh by live's claim keeper
        trial_spec t;
        bool have = false;
        CHECK_INT(live->next(live, &t, &have), 0);
        CHECK(have && t.id == i);
    }
    // A worker that takes the next trial and dies: its claim is never refreshed.
    redis_client *ghost = redis_client_new(&endpoint, 1000);
    redisReply *r = redis_client_command(ghost, "XREADGROUP GROUP workers ghost COUNT 1 "
                                                "STREAMS %strials >", prefix);
    CHECK(r && r->type == REDIS_REPLY_ARRAY);
    if (r)
        freeReplyObject(r);
    redis_client_free(ghost);
    nap_ms(fast.claim_ms + 300); // nap_ms: under 1 s
    trial_spec t;
    bool have = false;
    CHECK_INT(rescuer->next(rescuer, &t, &have), 0);
    CHECK(have);
    CHECK_INT(t.id, LIVE); // the ghost's, not a fresh one
    rescuer->destroy(rescuer);
    live->destroy(live);
}

// A trial delivered to a worker whose connection dropped before the reply came (the
// XREADGROUP ran; the client's retry asked again and got the next trial): the worker
// runs it at its next take, from its own pending list, instead of leaving it to be
// taken over after claim_ms. Completing twice (a completion whose reply was lost and
// which was sent again) records one result and is no error.
static void test_lost_delivery_and_repeated_completion(void) {
    const char *prefix = "runner:t:7:";
    trials_redis_options slow = {.claim_ms = 60000, .poll_ms = 50};
    trial_source *w;
    CHECK_INT(trials_redis_create(&w, specs, N_TRIALS, &asha, &endpoint, prefix, "w", &slow), 0);
    redis_client *rc = redis_client_new(&endpoint, 1000);
    redisReply *r = redis_client_command(rc, "XREADGROUP GROUP workers w COUNT 1 STREAMS %strials >",
                                         prefix); // trial 0 to "w", its reply never seen by w
    CHECK(r && r->type == REDIS_REPLY_ARRAY);
    if (r)
        freeReplyObject(r);
    int count[N_TRIALS] = {0}, taken = 0;
    long long t0 = timing_now_ms();
    for (;;) {
        trial_spec t;
        bool have = false;
        CHECK_INT(w->next(w, &t, &have), 0);
        if (!have)
            break;
        if (taken++ == 0)
            CHECK_INT(t.id, 0); // the lost delivery first
        trial_result res = {.id = t.id, .epochs_run = 1, .best_eval_loss = 2.0 + t.id};
        CHECK_INT(w->complete(w, &res), 0);
        CHECK_INT(w->complete(w, &res), 0); // again, as a retry would: counts once
        count[t.id]++;
    }
    CHECK(timing_now_ms() - t0 < slow.claim_ms / 2); // nothing waited for a takeover
    for (int i = 0; i < N_TRIALS; i++)
        CHECK_INT(count[i], 1);
    trial_result results[N_TRIALS + 1];
    CHECK_INT(w->results(w, results, N_TRIALS + 1), N_TRIALS);
    r = redis_client_command(rc, "XPENDING %strials workers", prefix);
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->element[0]->integer == 0);
    if (r)
        freeReplyObject(r);
    redis_client_free(rc);
    w->destroy(w);
}

// Right after an outage every running trial looks abandoned (nobody could refresh a
// claim meanwhile, so their idle times grew). A worker that has just seen Redis fail
// takes a new trial, not a live worker's; after claim_ms of service it would.
static void test_no_takeover_right_after_an_outage(void) {
    const char *prefix = "runner:t:8:";
    trials_redis_options opt = {.claim_ms = 4000, .poll_ms = 50};
    trial_source *a, *b;
    CHECK_INT(trials_redis_create(&a, specs, N_TRIALS, &asha, &endpoint, prefix, "a", &opt), 0);
    CHECK_INT(trials_redis_create(&b, specs, N_TRIALS, &asha, &endpoint, prefix, "b", &opt), 0);
    trial_spec t;
    bool have = false;
    CHECK_INT(a->next(a, &t, &have), 0);
    CHECK(have && t.id == 0);
    // The outage as the workers see it: every connection cut; and as Redis sees it: a's
    // trial idle far beyond claim_ms (a's keeper refreshes it within claim_ms / 6).
    redis_client *admin = redis_client_new(&endpoint, 1000);
    redisReply *r = redis_client_command(admin, "CLIENT KILL TYPE normal SKIPME yes");
    if (r)
        freeReplyObject(r);
    r = redis_client_command(admin, "XPENDING %strials workers - + 1 a", prefix);
    char entry[48] = "";
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        snprintf(entry, sizeof entry, "%s", r->element[0]->element[0]->str);
    if (r)
        freeReplyObject(r);
    CHECK(entry[0]);
    r = redis_client_command(admin, "XCLAIM %strials workers a 0 %s IDLE 100000 JUSTID", prefix,
                             entry);
    if (r)
        freeReplyObject(r);
    redis_client_free(admin);
    have = false;
    CHECK_INT(b->next(b, &t, &have), 0); // its first command fails: the connection was cut
    CHECK(have);
    CHECK_INT(t.id, 1); // a new one, not a's
    b->destroy(b);
    a->destroy(a);
}

int main(void) {
    for (int i = 0; i < N_TRIALS; i++)
        specs[i] = (trial_spec){.id = i, .seed = 100u + (unsigned)i, .learning_rate = 1e-4,
                                .batch_size = 8, .max_epochs = 1};
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "trials-pw"), 0);
    snprintf(endpoint.host, sizeof endpoint.host, "127.0.0.1");
    endpoint.port = port;
    snprintf(endpoint.password, sizeof endpoint.password, "trials-pw");
    test_shared_queue_survives_a_dead_worker();
    test_asha_records_are_shared();
    test_state_file_carries_over_attempts();
    test_takeover_behind_live_claims();
    test_lost_delivery_and_repeated_completion();
    test_no_takeover_right_after_an_outage();
    test_search_survives_a_redis_restart();
    redis_keeper_stop();
    return check_summary();
}

// Fork safety for background threads (see fork_guard.h).
#include "runner/fork_guard.h"

#include "runner/log.h"

#include <stdbool.h>

enum { CHILD_HOOKS_MAX = 8 };

// Readers: background threads in a guarded stretch. Writer: fork(), in the prepare hook.
// Writer-preferring: a fork waiting for the guard is not starved by threads re-entering.
static pthread_rwlock_t guard = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*child_hooks[CHILD_HOOKS_MAX])(void);
static int child_hook_count;
static bool installed;

static void prepare(void) {
    pthread_rwlock_wrlock(&guard);
}
static void parent(void) {
    pthread_rwlock_unlock(&guard);
}
static void child(void) {
    // The forking thread took the write lock: it is this child's only thread, so it may
    // release it.
    pthread_rwlock_unlock(&guard);
    for (int i = 0; i < child_hook_count; i++)
        child_hooks[i]();
}

void fork_guard_install(void (*child_hook)(void)) {
    pthread_mutex_lock(&hooks_lock);
    if (!installed) {
        // Prepare handlers run in the reverse order of registration: the logger's are
        // registered first so that ours runs before it. A guarded thread may be waiting
        // for the log lock; fork must not hold that lock while it waits for the thread.
        log_install_fork_handlers();
        installed = pthread_atfork(prepare, parent, child) == 0;
    }
    bool known = false;
    for (int i = 0; i < child_hook_count; i++)
        known = known || child_hooks[i] == child_hook;
    if (child_hook && !known && child_hook_count < CHILD_HOOKS_MAX)
        child_hooks[child_hook_count++] = child_hook;
    pthread_mutex_unlock(&hooks_lock);
}

void fork_guard_enter(void) {
    pthread_rwlock_rdlock(&guard);
}
void fork_guard_leave(void) {
    pthread_rwlock_unlock(&guard);
}

typedef struct {
    void *(*main)(void *);
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t started_cond;
    bool started;
} thread_start;

static void *trampoline(void *p) {
    thread_start *start = p;
    void *(*main)(void *) = start->main;
    void *arg = start->arg;
    pthread_mutex_lock(&start->lock);
    start->started = true;
    pthread_cond_signal(&start->started_cond);
    pthread_mutex_unlock(&start->lock); // `start` lives on the creator's stack: not used after
    return main(arg);
}

int fork_guard_thread_start(pthread_t *thread, void *(*main)(void *), void *arg) {
    fork_guard_install(NULL);
    thread_start start = {.main = main, .arg = arg};
    pthread_mutex_init(&start.lock, NULL);
    pthread_cond_init(&start.started_cond, NULL);
    int rc = pthread_create(thread, NULL, trampoline, &start);
    if (rc == 0) {
        pthread_mutex_lock(&start.lock);
        while (!start.started)
            pthread_cond_wait(&start.started_cond, &start.lock);
        pthread_mutex_unlock(&start.lock);
    }
    pthread_cond_destroy(&start.started_cond);
    pthread_mutex_destroy(&start.lock);
    return rc;
}

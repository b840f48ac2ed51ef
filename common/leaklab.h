/* leaklab.h - the harness a scenario is written against.
 *
 * A scenario is data (an ll_scenario descriptor: options table, variants,
 * payload, counters) plus its variant functions. The harness owns main():
 * it parses and validates the command line, arms the watchdog, prints the
 * JSON-lines events, takes the snapshots, and turns failures into the exit
 * codes of DESIGN.md. A scenario never parses argv, never prints, never sleeps
 * to synchronise and never exits on its own: it calls ll_phase() at each point
 * worth observing and ll_refuse() when the system refuses it a resource.
 */
#ifndef LEAKLAB_H
#define LEAKLAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes, the same everywhere (DESIGN.md). */
enum {
    LL_EXIT_OK = 0,       /* ran as designed (a leaky variant that leaked too) */
    LL_EXIT_FAILED = 1,   /* an expectation failed */
    LL_EXIT_USAGE = 2,    /* bad usage; the message names option and range */
    LL_EXIT_SKIP = 77,    /* a tool or allocator is missing */
    LL_EXIT_SYSTEM = 99,  /* refused resource, timeout, harness failure */
};

/* One row of a scenario's options table. Values are integers; `seed` is the
 * default (the seed incident's scale), `quick` the value under --scale quick.
 * Accepted range is [min, max]; anything else exits 2 naming both. */
typedef struct ll_option {
    const char *name;   /* long option, e.g. "workers" -> --workers N */
    const char *unit;   /* shown in --help: "threads", "int64", "ms" */
    long long seed;     /* default at --scale seed (the default scale) */
    long long quick;    /* default at --scale quick */
    long long min, max; /* accepted range, inclusive */
    const char *help;
} ll_option;

/* A named counter the scenario keeps up to date; every snapshot reports it
 * (e.g. sessions still allocated, connections accepted). */
typedef struct ll_counter {
    const char *name;
    atomic_llong *value;
} ll_counter;

typedef struct ll_run ll_run;

typedef struct ll_variant {
    const char *name;    /* "leaky", "fixed", ... */
    const char *summary; /* one line for --help */
    void (*run)(ll_run *run);
} ll_variant;

/* What the scenario declares it holds: expected files are written as ratios
 * of these, so one file holds at every scale. */
typedef struct ll_payload {
    uint64_t bytes;   /* payload_bytes: what the pattern is meant to hold */
    uint64_t workers; /* the unit the payload is spread over (threads, connections) */
} ll_payload;

typedef struct ll_scenario {
    const char *name;
    const char *summary;
    const ll_variant *variants;  /* terminated by {0}; the first is the default */
    const ll_option *options;    /* terminated by {0} */
    const ll_counter *counters;  /* terminated by {0}; may be NULL */
    /* Computes the payload from validated options. Returns false (and a
     * message in `why`) when the options multiply past what fits, so the
     * harness can exit 2 instead of overflowing. */
    bool (*payload)(const ll_run *run, ll_payload *out, char *why, size_t why_len);
    size_t thread_stack_bytes;   /* stack for ll_thread_start(); 0 = system default */
} ll_scenario;

/* Fills `out` with workers x per_worker bytes for a scenario's payload
 * callback; false with a message naming the options when the product
 * overflows or can never fit in this machine's memory. */
bool ll_payload_of(ll_payload *out, uint64_t workers, uint64_t per_worker_bytes, const char *options,
                   char *why, size_t why_len);

/* The harness's main(); a scenario file ends with
 *   int main(int argc, char **argv) { return ll_main(&scenario, argc, argv); } */
int ll_main(const ll_scenario *scenario, int argc, char **argv);

/* The validated value of option `name` (a typo in `name` is a harness
 * failure, exit 99, so it is caught by the first run). */
long long ll_opt(const ll_run *run, const char *name);
const ll_payload *ll_run_payload(const ll_run *run);

/* Emits a `phase` event with a full snapshot; under --heap-profile also dumps
 * the heap profile named after the phase. Thread-safe. */
void ll_phase(ll_run *run, const char *phase);

/* Emits a free-form event: `fields_json` is a JSON object body without the
 * braces, e.g. "\"port\":4242" (the caller formats it; no user strings). */
void ll_event(ll_run *run, const char *event, const char *fields_json);

/* Blocks until the driver (the runner) writes the line `word` on stdin: how
 * a scenario waits for something outside the process, such as a load client
 * finishing. End of input or another word is a harness failure (exit 99);
 * the watchdog bounds the wait. */
void ll_await_driver(ll_run *run, const char *word);

/* Starts a thread with the scenario's stack size (and guard page policy).
 * On refusal it does not return: it prints how many threads this run had
 * started, the errno text and what limit to raise, and exits 99. */
void ll_thread_start(ll_run *run, pthread_t *thread, void *(*fn)(void *), void *arg);

/* The system refused a resource: emit `end`, print the remedy, exit 99.
 * `what` names the call, `remedy` says what to change. */
_Noreturn void ll_refuse(ll_run *run, const char *what, int err, const char *remedy);

/* The run cannot mean what it claims on this system (e.g. the C library
 * does not give a primitive the semantics the scenario ports): emit `end`,
 * print the reason, exit 77, shown as skipped, never as a pass. */
_Noreturn void ll_skip(ll_run *run, const char *reason);

/* Initialises `rw` as a writer-preferring rwlock, Go's sync.RWMutex
 * semantics (a waiting writer blocks new readers), and checks at run time
 * that the C library honours it: glibc does with
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP; a C library that accepts
 * the attribute but prefers readers would silently port a different bug,
 * so the run skips (exit 77) with the reason instead. */
void ll_rwlock_init_writer_preferring(ll_run *run, pthread_rwlock_t *rw);

/* Whether an rwlock of `kind` (PTHREAD_RWLOCK_PREFER_*_NP) refuses a new
 * reader while a writer waits: the check behind the function above. */
bool ll_rwlock_kind_prefers_writers(ll_run *run, int kind);

/* Allocation that must succeed: exits 99 with the remedy when refused. */
void *ll_xmalloc(ll_run *run, size_t bytes);
void *ll_xrealloc(ll_run *run, void *old, size_t bytes);

/* A tiny per-thread random generator (splitmix64): random() takes a global
 * lock, and 10,000 threads drawing from it spend their time queuing. */
static inline uint64_t ll_rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- Allocator statistics: one interface, one file per allocator ---- */

typedef struct ll_alloc_stats {
    const char *allocator;     /* "glibc", "tcmalloc", "jemalloc" */
    int64_t in_use_bytes;      /* handed out to the program (Go: HeapInuse/HeapAlloc) */
    int64_t free_held_bytes;   /* freed, kept by the allocator, still mapped (Go: HeapIdle - HeapReleased) */
    int64_t released_bytes;    /* freed and given back to the OS, still reserved; -1 = not known */
    int64_t arenas;            /* arenas / heaps; -1 = not meaningful */
} ll_alloc_stats;

void ll_alloc_read(ll_alloc_stats *out);
/* Gives free memory back to the OS (glibc malloc_trim(0), tcmalloc
 * ReleaseFreeMemory, jemalloc arena purge): Go's debug.FreeOSMemory(). */
void ll_alloc_release(void);

/* ---- ll_chan: a Go-like channel of pointers (chan.c) ----
 *
 * Every blocking wait below is a futex wait on an object in the heap that
 * the waited-on channel reaches: the channel's own condition variables, or
 * (ll_select) a waiter the channel links to. So a reachability analysis
 * (issue 12) that finds a channel unreachable from every runnable thread and
 * every global has proved that its waiters can never be woken. */

typedef struct ll_chan ll_chan;

/* capacity >= 1: a buffered channel (Go's make(chan T, n)). capacity 0: a
 * rendezvous channel (Go's make(chan T)): a send completes only when a
 * receiver has taken the item; until then the sender blocks. */
ll_chan *ll_chan_new(ll_run *run, size_t capacity);
/* Blocks while full (rendezvous: until a receiver takes the item). Returns
 * false if the channel is closed, or closes before the item is taken
 * (nothing sent; Go would panic). */
bool ll_chan_send(ll_chan *ch, void *item);
/* Blocks while empty and open. Returns false once closed and drained:
 * like Go's `v, ok := <-c`. */
bool ll_chan_recv(ll_chan *ch, void **item);
/* Blocks until `n` receivers are waiting on the empty channel: each has
 * counted itself and is entering its wait. (A barrier only says they are on
 * their way: measured, 2 of 1,000 were still running when the census read
 * them.) Counted is not yet asleep: the last ones may still be between the
 * count and pthread_cond_wait's futex (measured: the last of 20 was still
 * running at the census in 8 of 30 runs on a busy machine), so a snapshot
 * that must find them asleep then calls ll_chan_await_parked for each.
 * Only one thread may await at a time. */
void ll_chan_await_receivers(ll_chan *ch, size_t n);
/* Wakes every sender and receiver; idempotent. An item a rendezvous sender
 * still offers is withdrawn (its send returns false). */
void ll_chan_close(ll_chan *ch);
/* The channel closes itself `ms` milliseconds from now: Go's time.After(d)
 * (a receive then succeeds, with ok false) and a context's deadline. Every
 * wait on it becomes a timed wait that ends then; nothing else runs a timer. */
void ll_chan_close_after(ll_chan *ch, long long ms);
/* Frees the channel; no thread may be waiting on it any more. */
void ll_chan_free(ll_chan *ch);

/* Go's select: one of `cases` fires. A case with chan == NULL is never ready
 * (Go's nil channel). A send case on a closed channel fires with ok false
 * (Go would panic); a receive case on a closed, drained channel fires with
 * ok false and item NULL. With `has_default`, returns LL_SELECT_DEFAULT when
 * no case is ready now; without it, blocks until one is (no cases and no
 * default: blocks forever, Go's `select {}`).
 *
 * One difference from Go, for determinism: when several cases are ready,
 * the FIRST in `cases` fires (Go picks at random; a kernel writes its cases
 * in the order its bug needs and says so). A rendezvous send case fires at
 * once when a receiver is blocked in ll_chan_recv; otherwise the select
 * offers the item, and the case fires when a receiver takes it (a plain
 * one, or another select's receive case: two selects do meet); an offer
 * still untaken when another case fires is withdrawn.
 *
 * A blocked select waits on a waiter of its own, malloc'ed for that call and
 * freed on return, linked from every channel of its cases: it is reachable
 * exactly when one of those channels is, which is when the select can fire. */
enum { LL_SELECT_DEFAULT = -1, LL_SELECT_MAX_CASES = 8 };

typedef struct ll_select_case {
    ll_chan *chan;  /* NULL: never ready */
    bool send;      /* true: send `item`; false: receive into `item` */
    void *item;
    bool ok;        /* out: the operation happened (false: the channel was closed) */
} ll_select_case;

int ll_select(ll_select_case *cases, size_t n, bool has_default);

/* ---- Go's sync and context (sync.c), and watching a thread park (park.c) ---- */

/* sync.WaitGroup: a counter and a condition variable. Embed it in a heap
 * object (as Go code embeds it in a struct) so that what a blocked Wait()
 * waits on is reachable exactly when that object is. */
typedef struct ll_waitgroup {
    pthread_mutex_t lock;
    pthread_cond_t zero;
    long long count;
    ll_run *run;
} ll_waitgroup;

void ll_waitgroup_init(ll_waitgroup *wg, ll_run *run);
/* Adds `delta` (may be negative). A counter below zero is a harness failure
 * (exit 99), as Go panics: "sync: negative WaitGroup counter". */
void ll_waitgroup_add(ll_waitgroup *wg, long long delta);
void ll_waitgroup_done(ll_waitgroup *wg);
/* Blocks until the counter is zero. */
void ll_waitgroup_wait(ll_waitgroup *wg);
void ll_waitgroup_destroy(ll_waitgroup *wg);

/* context.Context: a done channel that cancel closes. With a timeout the
 * channel closes itself at the deadline (ll_chan_close_after): a wait on it
 * is a timed wait, and no timer thread is started. */
typedef struct ll_context ll_context;
enum { LL_CONTEXT_OK = 0, LL_CONTEXT_CANCELED, LL_CONTEXT_DEADLINE_EXCEEDED };

ll_context *ll_context_with_cancel(ll_run *run);
ll_context *ll_context_with_timeout(ll_run *run, long long timeout_ms);
/* ctx.Done(): receive from it (or put it in a select) to wait for the end. */
ll_chan *ll_context_done(const ll_context *ctx);
/* cancel(): idempotent. */
void ll_context_cancel(ll_context *ctx);
/* ctx.Err(): LL_CONTEXT_OK, _CANCELED or _DEADLINE_EXCEEDED. */
int ll_context_err(const ll_context *ctx);
void ll_context_free(ll_context *ctx);

/* Watching a thread park. A kernel's leaky variant must hand the snapshot
 * threads that are really parked in their wait, not on their way to it. A
 * channel can count its waiters (ll_chan_await_receivers), a mutex cannot:
 * the only one who knows that a thread sleeps in pthread_mutex_lock is the
 * kernel. These read it from /proc/self/task/TID/syscall, which names the
 * system call a blocked thread is in and its arguments (for futex(2), the
 * address waited on): an observation of state, polled with sched_yield()
 * until it holds, never a sleep standing in for an event; no duration is
 * assumed anywhere, and the watchdog bounds the wait. `thread` must have
 * been started with ll_thread_start and not joined. A thread that ends
 * instead of parking is a harness failure (exit 99): the kernel's forced
 * interleaving is broken. */

/* Waits until `thread` is blocked in futex(2) on an address inside
 * [object, object + size): a pthread mutex, rwlock, condition variable or
 * barrier, or a struct holding them (an ll_waitgroup). */
void ll_await_parked(ll_run *run, pthread_t thread, const void *object, size_t size);
/* Waits until `thread` is blocked on `ch`: in ll_chan_send or ll_chan_recv
 * on it, or in an ll_select with a case on it. */
void ll_chan_await_parked(ll_run *run, ll_chan *ch, pthread_t thread);
/* Waits until `thread` is blocked reading file descriptor `fd` (read,
 * readv, recvfrom, recvmsg). */
void ll_await_reading(ll_run *run, pthread_t thread, int fd);

/* Threads that ended and were never joined (unjoined.c): ThreadSanitizer's
 * "thread leak". Their task is gone; glibc keeps each one's descriptor,
 * stack and TLS, and the value it returned, for a pthread_join to come. */

/* Waits until `thread` has ended (returned, its tid cleared and its task
 * gone from /proc/self/task) without joining it: how a kernel leaves a
 * finished, unjoined thread behind. */
void ll_await_finished(ll_run *run, pthread_t thread);
/* How many threads have ended without being joined (or detached), from
 * glibc's own list of thread stacks in use, read through the descriptors it
 * exports for libthread_db (as gdb does): every thread glibc started counts,
 * however it was started. -1 when that list cannot be read (not glibc, or a
 * static build). Call it while no thread is being created, joined or
 * detached (the zoo does, at its phases). */
long long ll_unjoined_threads(void);

/* ---- the zoo: Go's known leaks, ported one kernel per file (zoo.c) ----
 *
 * A kernel is the buggy function and its fix, each run --instances times
 * (quick 1, seed 1,000): what leaks grows linearly with N. ll_zoo_main()
 * owns the rest: the options, the payload (instances x instance_bytes), the
 * phases "baseline" (before the first call) and "steady" (after the last),
 * where expected/zoo/KERNEL.toml's [truth] is checked. */
typedef struct ll_zoo_kernel {
    const char *name;
    const char *summary;        /* --help: the pattern and where it comes from */
    const char *leaky_summary;  /* one line each for --help */
    const char *fixed_summary;
    /* One call of the buggy code. Returns once every thread it leaves behind
     * is parked in its wait (ll_await_parked and friends), having dropped
     * every pointer to what those threads hold. */
    void (*leaky)(ll_run *run, long long instance);
    /* One call of the fixed code: returns with every thread it started
     * joined and everything it allocated freed. */
    void (*fixed)(ll_run *run, long long instance);
    uint64_t instance_bytes;    /* the payload one call allocates (a named constant) */
    size_t thread_stack_bytes;  /* 0: LL_ZOO_STACK_BYTES */
} ll_zoo_kernel;

/* 64 KiB stacks: a kernel's threads call a few functions deep; at seed scale
 * thousands of them stay parked (see blocked_workers for the measurements). */
#define LL_ZOO_STACK_BYTES (64 * 1024)

int ll_zoo_main(const ll_zoo_kernel *kernel, int argc, char **argv);

/* A function named in a [truth] wait_site: kept as a frame of its own, so
 * every stack (census, gdb, the tools) names it. */
#define LL_WAIT_SITE __attribute__((noinline))

/* The fix, marked so it can be taken out. In a kernel's fixed code every
 * statement the fix adds (and every join or free it makes possible) is
 * written LL_FIX(statement), every value it changes LL_FIX_VALUE(fixed,
 * unfixed), each with its FIX: comment. Built with -DLL_BREAK_FIX (tests/broken),
 * the fixed variant runs without its fix, which must bring the leak back
 * and turn its [truth] rows red. LL_FIX takes statements (no declarations);
 * in the broken build they are still compiled, never run, so the same
 * helpers stay in use and the build stays warning-free. */
#ifdef LL_BREAK_FIX
#define LL_FIX(...) do { if (0) { __VA_ARGS__; } } while (0)
#define LL_FIX_VALUE(fixed, unfixed) (unfixed)
#else
#define LL_FIX(...) do { __VA_ARGS__; } while (0)
#define LL_FIX_VALUE(fixed, unfixed) (fixed)
#endif

#endif

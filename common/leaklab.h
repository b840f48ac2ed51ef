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

/* ---- ll_chan: a Go-like bounded channel of pointers ---- */

typedef struct ll_chan ll_chan;

/* Capacity 0 is not supported (no rendezvous channels); capacity >= 1. */
ll_chan *ll_chan_new(ll_run *run, size_t capacity);
/* Blocks while full. Returns false if the channel is closed (nothing sent). */
bool ll_chan_send(ll_chan *ch, void *item);
/* Blocks while empty and open. Returns false once closed and drained:
 * like Go's `v, ok := <-c`. */
bool ll_chan_recv(ll_chan *ch, void **item);
/* Blocks until `n` receivers are waiting on the empty channel: how main
 * knows every worker is parked before it takes a snapshot. (A barrier only
 * says they are on their way: measured, 2 of 1,000 were still running when
 * the census read them.) Only one thread may await at a time. */
void ll_chan_await_receivers(ll_chan *ch, size_t n);
/* Wakes every sender and receiver; idempotent. */
void ll_chan_close(ll_chan *ch);
/* Frees the channel; no thread may be waiting on it any more. */
void ll_chan_free(ll_chan *ch);

#endif

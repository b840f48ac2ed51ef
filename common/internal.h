/* internal.h - what the harness files share and scenarios never see. */
#ifndef LEAKLAB_INTERNAL_H
#define LEAKLAB_INTERNAL_H

#include "leaklab.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/* One run of a scenario: what ll_main() set up from the command line
 * (options.c fills scenario, variant, values, payload and scale) and what
 * the harness keeps while the scenario runs. */
struct ll_run {
    const ll_scenario *scenario;
    const ll_variant *variant;
    long long *values;             /* one per option, in table order */
    ll_payload payload;
    const char *scale;
    int events_fd;
    pthread_mutex_t events_lock;
    struct timespec started;
    const char *heap_profile_dir;  /* NULL unless --heap-profile */
    int heap_profile_seq;
    bool guard_pages;
    atomic_long threads_started;
    struct ll_hold_at *hold_at;    /* --hold-at: hold once at the first phase of each name; a */
    int hold_at_count;             /* taken one's phase is emptied (-1: until a signal; */
                                   /* LL_HOLD_FOR_DRIVER: until the driver's line) */
};

/* A growable text buffer for building one JSON line before a single write(2):
 * a line is never interleaved with another, and nothing sits in a stdio
 * buffer when the process dies. Allocation failure aborts the process with
 * exit 99 (the harness cannot report anything without memory). */
typedef struct ll_buf {
    char *data;
    size_t len, cap;
} ll_buf;

void ll_buf_printf(ll_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ll_buf_json_string(ll_buf *b, const char *s);
void ll_buf_free(ll_buf *b);

/* Appends `"snapshot":{...}` for this process: /proc readings, allocator
 * statistics, the scenario's counters and the thread census. */
void ll_snapshot_json(ll_buf *b, const ll_counter *counters);

/* Number of entries in /proc/self/fd (the directory's own fd excluded). */
long ll_count_fds(void);

#endif

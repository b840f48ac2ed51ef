/* internal.h - what orphans' source files share; nothing here is API.
 *
 * The pieces, in the order an analysis uses them:
 *   heap.c    the malloc family, interposed: an exact table of live blocks
 *   create.c  pthread_create, interposed: where each thread was created
 *   world.c   stopping every other thread with a signal, and releasing them
 *   glibc.c   what glibc keeps about threads (descriptors, stack lists) and
 *             where malloc keeps its arenas: the roots that are not roots
 *   analyze.c the marking: roots, wait objects, the fixed point, pinned bytes
 *   report.c  grouping by stack (threadcheck's), the result and its text
 *   options.c ORPHANS_OPTIONS
 *   preload.c the check at exit and on a signal
 */
#ifndef ORPHANS_INTERNAL_H
#define ORPHANS_INTERNAL_H

#include "orphans.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OR_HIDDEN __attribute__((visibility("hidden")))
#define OR_TLS __attribute__((tls_model("initial-exec")))

/* ---- options (options.c) ---------------------------------------------------- */

typedef struct or_config {
    int exitcode;             /* exit status when leaked threads are found at exit (0: keep the program's) */
    char log_path[4000];      /* "" or "stderr": stderr; "stdout"; else PATH.PID */
    int at_exit;              /* -1 not said (then: preloaded), 0, 1 */
    int report_signal;        /* 0 none; else a report (no exit) each time this signal arrives */
    int stop_signal;          /* the signal that stops the world */
    unsigned stop_timeout_ms; /* how long to wait for every thread to stop */
    unsigned settle_tries;    /* extra stops while some thread runs in user space (see analyze.c) */
    bool cancel_wakes;        /* a cancellable thread with a reachable handle counts as able to run */
    bool creation_stacks;     /* record where threads are created (pthread_create's caller) */
    bool symbolize;           /* function names in the report (threadcheck); 0: addresses */
    bool unreachable;         /* also list the bytes reachable from nothing (LeakSanitizer's leaks) */
    bool explain;             /* say why each blocked thread is wakeable: the chain of references */
    int verbosity;            /* 1: say so when nothing is found; 2: the analysis' figures too */
    bool help;
} or_config;

OR_HIDDEN void or_config_defaults(or_config *c);
/* Parses "key=value:key=value" over *c; returns 0, or -1 with a message in why. */
OR_HIDDEN int or_config_parse(or_config *c, const char *text, char *why, size_t why_len);
OR_HIDDEN extern const char or_options_help[];

/* ---- our own memory: never malloc, never part of the program's roots --------------- */

/* mmap/munmap that record the range, so the analysis skips our bookkeeping.
 * or_map returns NULL on failure. */
OR_HIDDEN void *or_map(size_t bytes);
OR_HIDDEN void or_unmap(void *p, size_t bytes);
/* Grows (or moves) a mapping made by or_map; NULL on failure (old one intact). */
OR_HIDDEN void *or_remap(void *p, size_t old_bytes, size_t new_bytes);
/* The ranges of our own memory (mappings above plus liborphans' writable
 * segments), sorted; n returned. Call only while the world is stopped. */
OR_HIDDEN size_t or_own_ranges(uintptr_t (*out)[2], size_t cap);
/* The writable segments of the loaded object holding `code` (dl_iterate_phdr:
 * not while stopped). */
OR_HIDDEN size_t or_object_writable(uintptr_t code, uintptr_t (*out)[2], size_t cap);
/* In a fork's child: releases the lock of the table of our mappings. */
OR_HIDDEN void or_own_after_fork(void);
/* Records liborphans' writable segments (dl_iterate_phdr: not while stopped). */
OR_HIDDEN void or_own_segments_init(void);

/* Runs fn(arg) on a stack of our own (8 MiB, mapped here, a guard page
 * below), whatever stack the calling thread has; nested calls run in place.
 * Without memory for it, fn runs on the caller's stack. */
OR_HIDDEN void or_on_own_stack(void (*fn)(void *), void *arg);

/* A growable array in our own memory. */
typedef struct or_vec {
    void *data;
    size_t len, cap, elem, bytes;
} or_vec;
OR_HIDDEN bool or_vec_push(or_vec *v, const void *item);
OR_HIDDEN bool or_vec_reserve(or_vec *v, size_t cap);
OR_HIDDEN void or_vec_free(or_vec *v);
#define OR_VEC(type) ((or_vec){.elem = sizeof(type)})
#define OR_AT(v, type, i) (((type *)(v).data)[i])

/* ---- the heap (heap.c) --------------------------------------------------------- */

typedef struct or_block {
    uintptr_t addr;
    size_t size; /* as requested */
} or_block;

/* Per-thread state the allocator wrappers and the stop handler share. */
typedef struct or_tls_state {
    volatile sig_atomic_t critical;     /* inside a wrapper: the table or the real allocator is busy */
    volatile sig_atomic_t stop_pending; /* a stop arrived while critical: stop at the wrapper's end */
    volatile uint64_t pending_value;    /* that stop's generation and slot */
    volatile sig_atomic_t resolving;    /* this thread is looking up the real allocator (dlsym) */
} or_tls_state;
OR_HIDDEN extern __thread or_tls_state or_tls OR_TLS;

/* True when the process's malloc is ours (liborphans is preloaded, or linked
 * ahead of libc), so the table sees every block. */
OR_HIDDEN bool or_heap_interposed(void);
/* Live blocks; world stopped (no thread is inside a wrapper). */
OR_HIDDEN size_t or_heap_count(void);
OR_HIDDEN size_t or_heap_snapshot(or_block *out, size_t cap);
/* The block table's own memory (its shards' slot arrays, page-rounded). */
OR_HIDDEN size_t or_heap_table_bytes(void);
/* The real allocator, for liborphans' own (outside-the-stop) needs. */
OR_HIDDEN void *or_real_malloc(size_t n);
/* The real malloc's address (to find the allocator's own object). */
OR_HIDDEN uintptr_t or_real_malloc_address(void);
OR_HIDDEN void or_real_free(void *p);
/* Called at a wrapper's end when a stop is pending (world.c). */
OR_HIDDEN void or_world_safe_point(void);

/* ---- creation sites (create.c) -------------------------------------------------- */

enum { OR_CREATION_FRAMES = 16 };
/* The creator's stack of the thread whose descriptor is pd; 0 frames if unknown. */
OR_HIDDEN size_t or_creation_lookup(uintptr_t pd, uintptr_t *pcs, size_t cap);
OR_HIDDEN void or_creation_enable(bool on);

/* ---- the world (world.c) ------------------------------------------------------- */

enum { OR_NGREGS = 23, OR_NXMM = 32 };

enum or_slot_state { OR_SLOT_SENT = 0, OR_SLOT_STOPPED, OR_SLOT_GONE, OR_SLOT_SELF };

typedef struct or_slot {
    pid_t tid;
    _Atomic int state;
    uint32_t gen;
    uintptr_t pd;                 /* pthread_self() */
    uint64_t gregs[OR_NGREGS];    /* REG_R8 ... as in <sys/ucontext.h> */
    uint64_t xmm[OR_NXMM];        /* XMM0-15, two words each */
    bool on_altstack;             /* interrupted on a sigaltstack */
    bool at_safe_point;           /* stopped at a wrapper's end, not by the handler */
} or_slot;

typedef struct or_world {
    or_slot *slots;               /* every thread but the caller (index 0 is the caller) */
    size_t nslots;
    uint32_t gen;
    bool complete;                /* every thread stopped */
    bool refused;                 /* a thread was not signalled (may_signal in world.c says why) */
    char why[256];                /* when not complete */
    double ms;
    double send_ms;               /* of ms: reading each thread's state and signalling it */
    double relist_ms;             /* of ms: listing /proc/self/task again */
    double cpu_ms;                /* CPU time of the stopping thread during the stop */
} or_world;

/* Stops every other thread of the process. The caller's own slot (index 0)
 * is filled from `caller` (its registers) and `caller_sp`. */
OR_HIDDEN int or_world_stop(or_world *w, int sig, unsigned timeout_ms, const void *caller_ucontext,
                            uintptr_t caller_sp);
OR_HIDDEN void or_world_resume(or_world *w);

/* ---- glibc's own structures (glibc.c) ----------------------------------------------- */

typedef struct or_glibc {
    bool ok;                      /* the descriptors below were found and make sense */
    size_t sizeof_pthread;        /* struct pthread */
    size_t off_tid, off_list, off_cancelhandling;
    ssize_t off_stackblock;       /* -1 until learnt from live threads (or_glibc_learn_stacks) */
    uintptr_t stack_used, stack_user, stack_cache; /* list heads in _rtld_global, 0 if unknown */
    char why[160];
} or_glibc;

OR_HIDDEN const or_glibc *or_glibc_get(void);
/* Learns where struct pthread keeps its stack block, from threads whose SP
 * and descriptor are known (a vote: every one must agree). */
OR_HIDDEN void or_glibc_learn_stacks(or_glibc *g, const uintptr_t *pds, const uintptr_t *sps, size_t n,
                                     bool (*readable)(uintptr_t, size_t));

/* The stack block of the thread whose descriptor is pd (its stackblock
 * fields: fixed for the thread's life); false if unknown. */
OR_HIDDEN bool or_glibc_stack_block(const or_glibc *g, uintptr_t pd, uintptr_t *lo, uintptr_t *hi,
                                    bool (*readable)(uintptr_t, size_t));

/* A descriptor glibc keeps on one of its lists. */
typedef struct or_pd {
    uintptr_t pd;
    uintptr_t block_lo, block_hi; /* its stack block, [lo, hi) */
    pid_t tid;                    /* 0: the thread has exited */
    bool cached;                  /* on the stack cache: nobody's stack */
} or_pd;

/* Every descriptor on glibc's used, user and cache lists (world stopped).
 * Returns false (and *n = 0) when a list does not validate. */
OR_HIDDEN bool or_glibc_threads(const or_glibc *g, or_vec *out, bool (*readable)(uintptr_t, size_t));

/* Where glibc's malloc keeps a block: the whole arena heap or mmap()ed chunk
 * around it (free chunks and malloc's own metadata included), or [addr,
 * addr+size) when that cannot be told. */
OR_HIDDEN void or_glibc_block_extent(const or_block *b, uintptr_t brk_lo, uintptr_t brk_hi, uintptr_t *lo,
                                     uintptr_t *hi, bool (*readable)(uintptr_t, size_t));

/* Every heap of every arena but the main one (its brk area is [heap]),
 * walking malloc's arena list from main_arena, found in `data` (the
 * allocator's writable segments); 0 when anything does not validate. */
OR_HIDDEN size_t or_glibc_arena_heaps(const uintptr_t (*data)[2], size_t ndata, uintptr_t brk_lo, uintptr_t brk_hi,
                                      uintptr_t (*out)[2], size_t cap, bool (*readable)(uintptr_t, size_t));

/* ---- the analysis (analyze.c) ----------------------------------------------------------- */

enum or_wait_class {
    OR_WAIT_NONE = 0,   /* runnable: not in an untimed private futex wait */
    OR_WAIT_HEAP,       /* the futex word is inside heap block `target` */
    OR_WAIT_STACK,      /* ... inside the live stack of thread `target` */
    OR_WAIT_JOIN,       /* ... is thread `target`'s tid: pthread_join */
    OR_WAIT_OTHER,      /* somewhere we do not know: counted as wakeable */
    OR_WAIT_SHARED,     /* a process-shared futex: another process may wake it (wakeable) */
};

enum or_thread_fate {
    OR_RUNNABLE = 0,    /* not blocked, or could not be analysed: its stack is a root */
    OR_WAKEABLE,        /* blocked, but its wait object is reachable */
    OR_LEAKED,          /* blocked on an object nothing that can run reaches */
    OR_CANCELLABLE,     /* leaked, but a reachable handle could pthread_cancel it (cancel_wakes=1: wakeable) */
};

typedef struct or_thread {
    pid_t tid;
    uintptr_t pd, sp;
    uintptr_t lo, hi;             /* live region: [sp - red zone, top of descriptor) */
    uintptr_t block_lo, block_hi; /* the whole stack block (dead part included), or 0 */
    int wait;                     /* enum or_wait_class */
    size_t target;                /* block index or thread index */
    uintptr_t futex;              /* the futex word */
    int fate;                     /* enum or_thread_fate */
    bool region_root;             /* its live region is scanned (runnable, wakeable, or pointed into) */
    bool regs_root;               /* its registers are scanned */
    bool handle_seen;             /* its pthread_t value was found in reachable memory */
    uintptr_t touched_from;       /* explain=1: the word that pointed into its region */
    bool is_main, is_caller;
    size_t pinned_bytes, pinned_blocks;
    const or_slot *slot;
    size_t copy_off, copy_len;    /* leaked: [sp, hi) copied at the stop into or_analysis.stack_copies; 0: not */
} or_thread;

typedef struct or_analysis {
    or_config cfg;
    or_world world;
    or_vec blocks;                /* or_block, sorted by address */
    or_vec threads;               /* or_thread */
    size_t leaked, cancellable, blocked;
    size_t pinned_bytes, pinned_blocks;
    size_t glibc_bytes;           /* the leaked threads' TLS vectors (dtv): glibc's, not the program's */
    size_t heap_bytes, heap_blocks;
    size_t unreachable_bytes, unreachable_blocks;
    size_t table_bytes;           /* the block table's memory at the stop */
    size_t root_bytes;            /* bytes of root memory scanned */
    size_t arena_heaps;           /* malloc heaps found by walking the arena list */
    size_t settle_stops;          /* stops made (1 + settle retries) */
    double stop_total_ms, stop_max_ms; /* every stop, and the longest */
    double send_total_ms, relist_total_ms; /* parts of stop_total_ms */
    double stop_cpu_ms;           /* CPU time of the analysing thread in every stop */
    double pause_ms;              /* pauses between settle stops */
    char *explained;              /* explain=1: the text, NUL-terminated (our own memory) */
    unsigned char *stack_copies;  /* the leaked threads' live stacks, copied before the world is released */
    size_t stack_copies_bytes;
    size_t explained_cap;
    int status;
    char why[256];
    double stop_ms, mark_ms, total_ms;
    double phase_ms[4];           /* since the stop: prepared, roots marked, fixed point, pinned */
    double mark_cpu_ms;           /* CPU time of the marking (the machine may be busy) */
    double phase_cpu_ms[4];       /* the same phases, in CPU time of the analysing thread */
} or_analysis;

/* Stops the world, marks, classifies every thread, resumes. */
OR_HIDDEN int or_analyze(or_analysis *a, const void *caller_ucontext, uintptr_t caller_sp);
OR_HIDDEN void or_analysis_free(or_analysis *a);

/* ---- the result (report.c) ------------------------------------------------------------ */

OR_HIDDEN orphans_result *or_result_build(const or_analysis *a);
OR_HIDDEN orphans_result *or_result_error(int status, const char *why);
/* CPU time of the whole call: the calling thread's, and the process's (every
 * thread: the stopped ones' signal handling included). */
OR_HIDDEN void or_result_set_cpu(orphans_result *r, double caller_ms, double process_ms);
/* The report; `where` is "" or " at exit"; verbosity as the option;
 * unreachable: also the bytes reachable from nothing. */
OR_HIDDEN int or_result_print_where(const orphans_result *r, FILE *out, const char *where, int verbosity,
                                    bool unreachable);
/* The analysis, for orphans_find and the preloaded checks: the caller's
 * registers and stack pointer as saved at its entry. */
OR_HIDDEN orphans_result *or_find(const or_config *cfg, const void *caller_ucontext, uintptr_t caller_sp);

OR_HIDDEN double or_now_ms(void);
/* CPU time of the calling thread. */
OR_HIDDEN double or_cpu_ms(void);
/* Async-signal-safe: raw system calls. */
OR_HIDDEN long or_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *timeout);

#endif

/* report.c - the leaked threads, grouped by stack the way threadcheck's
 * census groups them, and the report's text.
 *
 * Stacks come from threadcheck after the world is released: a leaked
 * thread cannot run, so its stack then is the one it had at the stop.
 * threadcheck captures and symbolizes every thread (its census); orphans
 * keeps the leaked ones, and splits threadcheck's groups further by what
 * they wait for. Creation stacks (create.c) are symbolized by the same
 * library (threadcheck_snapshot_from_stacks). */

#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

struct result_impl {
    orphans_result pub; /* first: the public pointer is this struct's */
    threadcheck_snapshot *stacks, *created;
    char *explained;
    orphans_group *groups;
    pid_t *tids;
    double phase_ms[4], phase_cpu_ms[4];
    double cpu_ms, process_cpu_ms;
    double mark_cpu_ms;
    double stacks_ms, stacks_cpu_ms, created_ms;
    size_t root_bytes, arena_heaps;
    double stop_total_ms, stop_max_ms, send_total_ms, relist_total_ms, pause_ms, stop_cpu_ms;
    size_t table_bytes;
};

void or_result_set_cpu(orphans_result *pub, double caller_ms, double process_ms)
{
    struct result_impl *r = (struct result_impl *)pub;
    r->cpu_ms = caller_ms;
    r->process_cpu_ms = process_ms;
}

orphans_result *or_result_error(int status, const char *why)
{
    struct result_impl *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->pub.status = status;
    size_t len = strlen(why);
    if (len >= sizeof r->pub.why)
        len = sizeof r->pub.why - 1;
    memcpy(r->pub.why, why, len);
    r->pub.why[len] = '\0';
    return &r->pub;
}

typedef struct member {
    size_t thread;   /* index in the analysis' threads */
    size_t tc_group; /* threadcheck group, or SIZE_MAX when its stack is unknown */
    const threadcheck_thread *tc;
    size_t tc_top;
    const char *kind;
    const char *place;
} member;

/* What a wait is, from the innermost libc function on the stack. */
static const char *kind_of(const threadcheck_thread *t, int wait)
{
    if (wait == OR_WAIT_JOIN)
        return "join";
    for (size_t i = 0; t && i < t->nframes; i++) {
        const char *fn = t->frames[i].function;
        if (!fn)
            continue;
        while (*fn == '_')
            fn++;
        if (strncmp(fn, "lll_lock", 8) == 0 || strncmp(fn, "pthread_mutex", 13) == 0)
            return "mutex";
        if (strncmp(fn, "pthread_cond", 12) == 0 || strncmp(fn, "condvar", 7) == 0)
            return "cond";
        if (strncmp(fn, "pthread_rwlock", 14) == 0)
            return "rwlock";
        if (strncmp(fn, "pthread_barrier", 15) == 0)
            return "barrier";
        if (strncmp(fn, "sem_", 4) == 0 || strncmp(fn, "new_sem", 7) == 0 || strncmp(fn, "old_sem", 7) == 0)
            return "semaphore";
        if (strncmp(fn, "pthread_join", 12) == 0 || strncmp(fn, "pthread_clockjoin", 17) == 0 ||
            strncmp(fn, "pthread_timedjoin", 17) == 0)
            return "join";
    }
    return "futex";
}

static const char *place_of(int wait)
{
    switch (wait) {
    case OR_WAIT_HEAP: return "heap";
    case OR_WAIT_STACK: return "stack";
    case OR_WAIT_JOIN: return "thread";
    }
    return "other";
}

static int cmp_member(const member *a, const member *b)
{
    if (a->tc_group != b->tc_group)
        return a->tc_group < b->tc_group ? -1 : 1;
    int c = strcmp(a->kind, b->kind);
    if (c)
        return c;
    return strcmp(a->place, b->place);
}

static void sort_members(member *v, size_t n)
{
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++) {
            member x = v[i];
            size_t j = i;
            for (; j >= gap && cmp_member(&v[j - gap], &x) > 0; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
}

static int by_size_desc(const void *x, const void *y)
{
    const orphans_group *a = x, *b = y;
    if (a->threads != b->threads)
        return a->threads > b->threads ? -1 : 1;
    return a->pinned_bytes > b->pinned_bytes ? -1 : a->pinned_bytes < b->pinned_bytes;
}


/* ---- stacks ------------------------------------------------------------------------ */

enum { MAX_PCS = THREADCHECK_MAX_FRAMES, SHAPES = 64 /* shapes remembered: a handful of stacks in practice */ };

/* Unwinds a stopped (and still frozen) thread from its saved registers.
 * slots[i] receives where frame i+1's return address was read from (the
 * stack pointer after the step, minus 8), so threads alike can be checked
 * against it without unwinding. */
static size_t unwind_slot(const or_slot *slot, uintptr_t *pcs, uintptr_t *slots, size_t cap)
{
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    for (int i = 0; i < OR_NGREGS; i++)
        uc.uc_mcontext.gregs[i] = (greg_t)slot->gregs[i];
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, &uc, UNW_INIT_SIGNAL_FRAME) != 0)
        return 0;
    size_t n = 0;
    for (;;) {
        unw_word_t ip = 0, sp = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0 || ip == 0)
            break;
        if (n > 0) {
            unw_get_reg(&cursor, UNW_REG_SP, &sp);
            slots[n - 1] = (uintptr_t)sp - sizeof(uintptr_t);
        }
        pcs[n++] = (uintptr_t)ip;
        if (n == cap || unw_step(&cursor) <= 0)
            break;
    }
    return n;
}

/* A representative's stack, and where its return addresses sit relative
 * to the top of its thread's live region. */
typedef struct shape {
    uintptr_t rip, depth;          /* hi - sp */
    size_t raw;                    /* its raw group */
    size_t n;
    uintptr_t offset[MAX_PCS];     /* hi - slot, for frames 1..n-1 */
} shape;

/* The same stack as `s` without unwinding: same RIP, same depth, and every
 * return-address slot at the same offset from the top holds the same
 * return address. */
static bool same_shape(const shape *s, const or_thread *t, const unsigned char *copies, const uintptr_t *pcs)
{
    if (!t->copy_len || s->rip != t->slot->gregs[REG_RIP] || s->depth != t->hi - t->sp)
        return false;
    for (size_t i = 1; i < s->n; i++) {
        uintptr_t at = t->hi - s->offset[i - 1], word;
        if (at < t->sp || at + sizeof word > t->hi)
            return false;
        memcpy(&word, copies + t->copy_off + (at - t->sp), sizeof word); /* as it was at the stop */
        if (word != pcs[i])
            return false;
    }
    return true;
}

static uint64_t hash_pcs(const uintptr_t *pcs, size_t n)
{
    uint64_t h = n * 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ pcs[i]) * 0x100000001b3ULL;
    return h;
}

/* Whether thread t's stack is still mapped and `len` words at `at` (inside
 * its live region) can be read, into `out`, without faulting:
 * process_vm_readv, so a stack unmapped meanwhile (the thread was cancelled
 * and exited) is an error, not a fault. */
static bool read_stack_word(const or_thread *t, uintptr_t at, uintptr_t *out)
{
    if (at < t->sp || at + sizeof *out > t->hi)
        return false;
    struct iovec local = {out, sizeof *out}, remote = {(void *)at, sizeof *out};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof *out;
}

/* Whether an unwind made from the live stack gave the frames that were
 * analysed: every return address it read (pcs[i] from slots[i - 1]) is the
 * word the copy taken at the stop holds at the same place, and is still
 * there now. Only the words the unwind used are compared: a leaked thread
 * the stop signal woke goes back into the same wait, and glibc's wait loop
 * may have rewritten its own locals meanwhile (glibc 2.41's condition
 * variables do), which changes nothing the unwind reads. */
static bool unwind_matches_copy(const or_thread *t, const unsigned char *copies, const uintptr_t *pcs,
                                const uintptr_t *slots, size_t len)
{
    if (!t->copy_len || len == 0)
        return false;
    for (size_t i = 1; i < len; i++) {
        uintptr_t at = slots[i - 1], then, now;
        if (!read_stack_word(t, at, &now))
            return false;
        memcpy(&then, copies + t->copy_off + (at - t->sp), sizeof then);
        if (then != pcs[i] || now != pcs[i])
            return false;
    }
    return true;
}

/* Fills members[].tc_group / tc / tc_top: each thread's raw group's
 * representative, symbolized by threadcheck (r->stacks). */
static bool raw_stacks(const or_analysis *a, member *members, size_t n, struct result_impl *r)
{
    const or_thread *threads = a->threads.data;
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *table = calloc(cap, sizeof *table);          /* raw group + 1 */
    uintptr_t *rep_pcs = malloc(n * MAX_PCS * sizeof *rep_pcs);
    size_t *rep_len = malloc(n * sizeof *rep_len);
    pid_t *rep_tid = malloc(n * sizeof *rep_tid);
    size_t *raw_of = malloc(n * sizeof *raw_of);
    const uintptr_t **rep_ptr = malloc(n * sizeof *rep_ptr);
    bool ok = table && rep_pcs && rep_len && rep_tid && raw_of && rep_ptr;
    size_t nraw = 0;
    shape *shapes = malloc(SHAPES * sizeof *shapes);
    size_t nshapes = 0;
    ok = ok && shapes;
    for (size_t i = 0; ok && i < n; i++) {
        const or_thread *t = &threads[members[i].thread];
        size_t known = SIZE_MAX;
        for (size_t k = 0; k < nshapes && known == SIZE_MAX; k++)
            if (same_shape(&shapes[k], t, a->stack_copies, rep_pcs + shapes[k].raw * MAX_PCS))
                known = shapes[k].raw;
        if (known != SIZE_MAX) {
            raw_of[i] = known;
            continue;
        }
        uintptr_t pcs[MAX_PCS], slots[MAX_PCS];
        /* Unwound live (the world runs again), from the registers saved at
         * the stop, on a stack that is checked to be mapped first and kept
         * only if the unwind read the copy's words: otherwise the thread's
         * stack is unknown ("stack not captured"), never another one's. */
        uintptr_t top;
        size_t len = read_stack_word(t, t->sp, &top) ? unwind_slot(t->slot, pcs, slots, MAX_PCS) : 0;
        if (!unwind_matches_copy(t, a->stack_copies, pcs, slots, len))
            len = 0;
        size_t b = hash_pcs(pcs, len) & (cap - 1);
        for (;; b = (b + 1) & (cap - 1)) {
            size_t g = table[b];
            if (g == 0) {
                g = ++nraw;
                table[b] = g;
                memcpy(rep_pcs + (g - 1) * MAX_PCS, pcs, len * sizeof *pcs);
                rep_len[g - 1] = len;
                rep_tid[g - 1] = threads[members[i].thread].tid;
                rep_ptr[g - 1] = rep_pcs + (g - 1) * MAX_PCS;
                break;
            }
            if (rep_len[g - 1] == len && memcmp(rep_pcs + (g - 1) * MAX_PCS, pcs, len * sizeof *pcs) == 0)
                break;
        }
        raw_of[i] = table[b] - 1;
        if (nshapes < SHAPES && len > 0) {
            shape *sh = &shapes[nshapes++];
            *sh = (shape){.rip = t->slot->gregs[REG_RIP], .depth = t->hi - t->sp, .raw = raw_of[i], .n = len};
            for (size_t k = 1; k < len; k++)
                sh->offset[k - 1] = t->hi - slots[k - 1];
        }
    }
    free(shapes);
    if (ok) {
        r->stacks = threadcheck_snapshot_from_stacks(rep_ptr, rep_len, rep_tid, nraw, true,
                                                     a->cfg.symbolize ? 0 : THREADCHECK_NO_SYMBOLS);
        if (r->stacks) {
            /* threadcheck's groups merge raw groups whose stacks read alike */
            for (size_t g = 0; g < r->stacks->ngroups; g++) {
                const threadcheck_group *grp = &r->stacks->groups[g];
                for (size_t k = 0; k < grp->count; k++)
                    for (size_t raw = 0; raw < nraw; raw++)
                        if (rep_tid[raw] == grp->tids[k])
                            rep_tid[raw] = -(pid_t)(g + 1); /* raw group -> tc group, by its representative */
            }
            for (size_t i = 0; i < n; i++) {
                pid_t tag = rep_tid[raw_of[i]];
                if (tag < 0) {
                    const threadcheck_group *grp = &r->stacks->groups[(size_t)(-tag) - 1];
                    members[i].tc_group = (size_t)(-tag) - 1;
                    members[i].tc = grp->thread;
                    members[i].tc_top = grp->top;
                }
            }
        }
    }
    free(table);
    free(rep_pcs);
    free(rep_len);
    free(rep_tid);
    free(raw_of);
    free(rep_ptr);
    return ok;
}

orphans_result *or_result_build(const or_analysis *a)
{
    struct result_impl *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    orphans_result *pub = &r->pub;
    pub->status = a->status;
    snprintf(pub->why, sizeof pub->why, "%s", a->why);
    pub->threads = a->threads.len;
    pub->blocked = a->blocked;
    pub->leaked = a->leaked;
    pub->pinned_bytes = a->pinned_bytes;
    pub->pinned_blocks = a->pinned_blocks;
    pub->glibc_bytes = a->glibc_bytes;
    pub->heap_bytes = a->heap_bytes;
    pub->heap_blocks = a->heap_blocks;
    pub->unreachable_bytes = a->unreachable_bytes;
    pub->unreachable_blocks = a->unreachable_blocks;
    pub->stop_ms = a->stop_ms;
    pub->mark_ms = a->mark_ms;
    pub->stops = a->settle_stops;
    memcpy(r->phase_ms, a->phase_ms, sizeof r->phase_ms);
    memcpy(r->phase_cpu_ms, a->phase_cpu_ms, sizeof r->phase_cpu_ms);
    r->root_bytes = a->root_bytes;
    r->arena_heaps = a->arena_heaps;
    r->stop_total_ms = a->stop_total_ms;
    r->stop_max_ms = a->stop_max_ms;
    r->send_total_ms = a->send_total_ms;
    r->relist_total_ms = a->relist_total_ms;
    r->pause_ms = a->pause_ms;
    r->stop_cpu_ms = a->stop_cpu_ms;
    r->table_bytes = a->table_bytes;
    r->mark_cpu_ms = a->mark_cpu_ms;
    if (a->explained)
        r->explained = strdup(a->explained);
    if (a->status != ORPHANS_FOUND || a->leaked == 0)
        return pub;

    const or_thread *threads = a->threads.data;
    member *members = calloc(a->leaked, sizeof *members);
    r->tids = calloc(a->leaked, sizeof *r->tids);
    if (!members || !r->tids)
        goto oom;
    size_t n = 0;
    for (size_t i = 0; i < a->threads.len; i++)
        if (threads[i].fate == OR_LEAKED || threads[i].fate == OR_CANCELLABLE)
            members[n++] = (member){.thread = i, .tc_group = SIZE_MAX};

    /* Their stacks. A leaked thread cannot run, so its stack now is the one
     * it had at the stop: unwind it from the registers saved then (libunwind,
     * no signal), group identical program counters, and let threadcheck
     * symbolize and group one representative per raw group. */
    double t_stacks = or_now_ms(), c_stacks = or_cpu_ms();
    if (!raw_stacks(a, members, n, r))
        goto oom;
    r->stacks_ms = or_now_ms() - t_stacks;
    r->stacks_cpu_ms = or_cpu_ms() - c_stacks;
    for (size_t i = 0; i < n; i++) {
        members[i].kind = kind_of(members[i].tc, threads[members[i].thread].wait);
        members[i].place = place_of(threads[members[i].thread].wait);
    }
    sort_members(members, n);

    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cmp_member(&members[i - 1], &members[i]) != 0)
            ngroups++;
    r->groups = calloc(ngroups, sizeof *r->groups);
    uintptr_t **creation = calloc(ngroups, sizeof *creation);
    size_t *creation_len = calloc(ngroups, sizeof *creation_len);
    uintptr_t *creation_pcs = calloc(ngroups * OR_CREATION_FRAMES, sizeof *creation_pcs);
    uintptr_t *futexes = calloc(n, sizeof *futexes);
    if (!r->groups || !creation || !creation_len || !creation_pcs || !futexes) {
        free(creation);
        free(creation_len);
        free(creation_pcs);
        free(futexes);
        goto oom;
    }
    const or_block *blocks = a->blocks.data;
    size_t g = 0;
    for (size_t i = 0, start = 0; i <= n; i++) {
        if (i < n && (i == start || cmp_member(&members[i - 1], &members[i]) == 0))
            continue;
        /* members[start, i) form group g */
        orphans_group *grp = &r->groups[g];
        const member *first = &members[start];
        const or_thread *t0 = &threads[first->thread];
        grp->threads = i - start;
        grp->kind = first->kind;
        grp->place = first->place;
        grp->futex = t0->futex;
        if (t0->wait == OR_WAIT_HEAP) {
            grp->block = blocks[t0->target].addr;
            grp->block_size = blocks[t0->target].size;
        } else if (t0->wait == OR_WAIT_STACK || t0->wait == OR_WAIT_JOIN) {
            grp->owner = threads[t0->target].tid;
        }
        if (first->tc) {
            grp->nframes = first->tc->nframes;
            grp->frames = first->tc->frames;
            if (first->tc_top < first->tc->nframes)
                grp->top = first->tc->frames[first->tc_top].function;
        }
        grp->tids = r->tids + start;
        for (size_t k = start; k < i; k++) {
            const or_thread *t = &threads[members[k].thread];
            r->tids[k] = t->tid;
            grp->pinned_bytes += t->pinned_bytes;
            grp->pinned_blocks += t->pinned_blocks;
            grp->cancellable += t->fate == OR_CANCELLABLE;
            futexes[k] = t->futex;
        }
        /* distinct futex words (insertion sort of a small run is enough in practice) */
        for (size_t k = start + 1; k < i; k++) {
            uintptr_t x = futexes[k];
            size_t j = k;
            for (; j > start && futexes[j - 1] > x; j--)
                futexes[j] = futexes[j - 1];
            futexes[j] = x;
            if (k - start > 4096)
                break; /* enough to say "many" */
        }
        for (size_t k = start; k < i && k - start <= 4097; k++)
            grp->objects += k == start || futexes[k] != futexes[k - 1];
        creation[g] = creation_pcs + g * OR_CREATION_FRAMES;
        creation_len[g] = or_creation_lookup(t0->pd, creation[g], OR_CREATION_FRAMES);
        g++;
        start = i;
    }
    free(futexes);
    double t_created = or_now_ms();
    r->created = threadcheck_snapshot_from_stacks((const uintptr_t *const *)creation, creation_len, NULL, ngroups,
                                                  false, a->cfg.symbolize ? THREADCHECK_NO_LINES
                                                                          : THREADCHECK_NO_SYMBOLS);
    r->created_ms = or_now_ms() - t_created;
    if (r->created && r->created->nthreads == ngroups)
        for (size_t k = 0; k < ngroups; k++) {
            r->groups[k].ncreated = r->created->threads[k].nframes;
            r->groups[k].created = r->created->threads[k].frames;
        }
    free(creation);
    free(creation_len);
    free(creation_pcs);
    free(members);
    qsort(r->groups, ngroups, sizeof *r->groups, by_size_desc);
    pub->ngroups = ngroups;
    pub->groups = r->groups;
    return pub;

oom:
    free(members);
    orphans_result_free(pub);
    errno = ENOMEM;
    return NULL;
}

void orphans_result_free(orphans_result *result)
{
    if (!result)
        return;
    struct result_impl *r = (struct result_impl *)result;
    threadcheck_snapshot_free(r->stacks);
    threadcheck_snapshot_free(r->created);
    free(r->explained);
    if (r->groups) /* the next analysis must not find these addresses in freed memory */
        memset(r->groups, 0, r->pub.ngroups * sizeof *r->groups);
    free(r->groups);
    free(r->tids);
    free(r);
}

const char *orphans_status_text(int status)
{
    switch (status) {
    case ORPHANS_NONE: return "none";
    case ORPHANS_FOUND: return "found";
    case ORPHANS_INCOMPLETE: return "incomplete";
    case ORPHANS_UNSUPPORTED: return "unsupported";
    case ORPHANS_ERROR: return "error";
    }
    return "?";
}

/* ---- text ----------------------------------------------------------------------- */

static void name_of(const threadcheck_frame *f, char *buf, size_t len)
{
    if (f->function) {
        snprintf(buf, len, "%s", f->function);
        /* GCC's clones read as their source function: f.isra.0 -> f */
        for (char *dot; (dot = strrchr(buf, '.'));) {
            char *p = dot + 1;
            while (*p >= '0' && *p <= '9')
                p++;
            if ((*p == '\0' && p != dot + 1) || strcmp(dot, ".isra") == 0 || strcmp(dot, ".constprop") == 0 ||
                strcmp(dot, ".part") == 0 || strcmp(dot, ".cold") == 0)
                *dot = '\0';
            else
                break;
        }
    } else {
        snprintf(buf, len, "%#" PRIxPTR, f->address);
    }
}

/* "f <- g <- h" from frame `from` on. */
static void chain(FILE *out, const threadcheck_frame *frames, size_t n, size_t from)
{
    for (size_t i = from; i < n; i++) {
        char name[256];
        name_of(&frames[i], name, sizeof name);
        fprintf(out, "%s%s", i > from ? " <- " : "", name);
    }
}

static size_t first_own(const threadcheck_frame *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!frames[i].system)
            return i;
    return 0;
}

static void write_group(FILE *out, const orphans_group *g)
{
    fprintf(out, "%zu leaked thread%s @ ", g->threads, g->threads == 1 ? "" : "s");
    if (g->nframes)
        chain(out, g->frames, g->nframes, first_own(g->frames, g->nframes));
    else
        fprintf(out, "(stack not captured)");
    fprintf(out, "\n  waiting: %s, futex %#" PRIxPTR, g->kind, g->futex);
    if (strcmp(g->place, "heap") == 0)
        fprintf(out, " in heap block %#" PRIxPTR " (%zu bytes) that nothing able to run reaches", g->block,
                g->block_size);
    else if (strcmp(g->place, "stack") == 0)
        fprintf(out, " on the stack of thread %d, which cannot run", (int)g->owner);
    else if (strcmp(g->place, "thread") == 0)
        fprintf(out, ": joining thread %d, which can never end", (int)g->owner);
    if (g->objects > 1)
        fprintf(out, "; %zu%s distinct objects", g->objects, g->objects > 4096 ? "+" : "");
    fprintf(out, "\n  pins %zu bytes in %zu heap blocks\n", g->pinned_bytes, g->pinned_blocks);
    if (g->cancellable)
        fprintf(out, "  %zu of them could still be ended by pthread_cancel (their pthread_t is reachable; "
                "cancellation does not wake them)\n", g->cancellable);
    for (size_t i = 0; i < g->nframes; i++) {
        const threadcheck_frame *f = &g->frames[i];
        char name[256];
        name_of(f, name, sizeof name);
        fprintf(out, "    #%zu %#" PRIxPTR " %s", i, f->address, name);
        if (f->file)
            fprintf(out, " %s:%d", f->file, f->line);
        else if (f->module)
            fprintf(out, " (%s)", f->module);
        fprintf(out, "\n");
    }
    if (g->ncreated) {
        fprintf(out, "  created by ");
        chain(out, g->created, g->ncreated, 0);
        fprintf(out, "\n");
    }
    fprintf(out, "  tids %d", (int)g->tids[0]);
    for (size_t i = 1; i < g->threads && i < 8; i++)
        fprintf(out, " %d", (int)g->tids[i]);
    if (g->threads > 8)
        fprintf(out, " +%zu more", g->threads - 8);
    fprintf(out, "\n\n");
}

int orphans_result_print(const orphans_result *r, FILE *out)
{
    return or_result_print_where(r, out, "", 2, true);
}

int or_result_print_where(const orphans_result *r, FILE *out, const char *where, int verbosity, bool unreachable)
{
    if (!r || !out) {
        errno = EINVAL;
        return -1;
    }
    int pid = (int)getpid();
    const char *explained = ((const struct result_impl *)r)->explained;
    if (explained)
        fputs(explained, out);
    switch (r->status) {
    case ORPHANS_FOUND:
        fprintf(out, "==%d== orphans%s: %zu leaked thread%s in %zu group%s: blocked on objects that no thread "
                "able to run can reach\n\n",
                pid, where, r->leaked, r->leaked == 1 ? "" : "s", r->ngroups, r->ngroups == 1 ? "" : "s");
        for (size_t i = 0; i < r->ngroups; i++)
            write_group(out, &r->groups[i]);
        break;
    case ORPHANS_NONE:
        if (verbosity > 0)
            fprintf(out, "==%d== orphans%s: no leaked threads (%zu threads, %zu blocked, all wakeable)\n", pid, where,
                    r->threads, r->blocked);
        break;
    default:
        fprintf(out, "==%d== orphans%s: no analysis (%s): %s\n", pid, where, orphans_status_text(r->status), r->why);
        break;
    }
    if (verbosity > 1 || r->status == ORPHANS_FOUND)
        fprintf(out, "==%d== orphans: %zu threads (%zu blocked), %zu heap blocks (%zu bytes); world stopped %u time%s, "
                "%.1f ms the last, marked in %.1f ms, whole analysis %.1f ms\n",
                pid, r->threads, r->blocked, r->heap_blocks, r->heap_bytes, r->stops, r->stops == 1 ? "" : "s",
                r->stop_ms, r->mark_ms, r->total_ms);
    if (verbosity > 1) {
        const struct result_impl *ri = (const struct result_impl *)r;
        fprintf(out, "==%d== orphans: marking: %.1f ms to prepare, %.1f ms from %zu bytes of roots, %.1f ms to the "
                "fixed point, %.1f ms for what the leaked pin; %.1f ms of CPU; %zu arena heaps left out of the roots\n",
                pid, ri->phase_ms[0], ri->phase_ms[1] - ri->phase_ms[0], ri->root_bytes, ri->phase_ms[2] - ri->phase_ms[1],
                ri->phase_ms[3] - ri->phase_ms[2], ri->mark_cpu_ms, ri->arena_heaps);
        fprintf(out, "==%d== orphans: stopping: %u stop%s, %.1f ms in all (the longest %.1f ms; reading thread states "
                "and signalling %.1f ms, listing threads again %.1f ms), %.1f ms of pauses between them; %.1f ms of "
                "CPU\n",
                pid, r->stops, r->stops == 1 ? "" : "s", ri->stop_total_ms, ri->stop_max_ms, ri->send_total_ms,
                ri->relist_total_ms, ri->pause_ms, ri->stop_cpu_ms);
        fprintf(out, "==%d== orphans: block table: %zu bytes for %zu live blocks (%.1f bytes each)\n", pid,
                ri->table_bytes, r->heap_blocks, r->heap_blocks ? (double)ri->table_bytes / (double)r->heap_blocks : 0.0);
        fprintf(out, "==%d== orphans: stacks of the leaked %.1f ms (%.1f ms of CPU), creation sites %.1f ms\n", pid,
                ri->stacks_ms, ri->stacks_cpu_ms, ri->created_ms);
        fprintf(out, "==%d== orphans: CPU: %.1f ms in the analysing thread (prepare %.1f, roots %.1f, fixed point %.1f, "
                "pinned %.1f), %.1f ms in the whole process\n", pid, ri->cpu_ms, ri->phase_cpu_ms[0],
                ri->phase_cpu_ms[1] - ri->phase_cpu_ms[0], ri->phase_cpu_ms[2] - ri->phase_cpu_ms[1],
                ri->phase_cpu_ms[3] - ri->phase_cpu_ms[2], ri->process_cpu_ms);
    }
    if (r->unreachable_blocks && unreachable && (r->status == ORPHANS_FOUND || r->status == ORPHANS_NONE))
        fprintf(out, "==%d== orphans: also %zu bytes in %zu blocks reachable from nothing at all (ordinary leaks)\n",
                pid, r->unreachable_bytes, r->unreachable_blocks);
    if (r->status == ORPHANS_FOUND)
        fprintf(out, "==%d== SUMMARY: orphans: %zu leaked threads in %zu groups pinning %zu bytes in %zu blocks "
                "(and %zu bytes of glibc's thread blocks)\n",
                pid, r->leaked, r->ngroups, r->pinned_bytes, r->pinned_blocks, r->glibc_bytes);
    fflush(out);
    if (ferror(out)) {
        errno = EIO;
        return -1;
    }
    return 0;
}

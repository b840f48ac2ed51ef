/* own.c - liborphans' own memory. It never comes from malloc (the table of
 * blocks cannot use what it tracks) and the analysis must not mistake it
 * for the program's: every mapping made here is recorded, and so are
 * liborphans' own writable segments, and the marking skips them all. */

#include "internal.h"

#include <errno.h>
#include <link.h>
#include <sched.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum { MAX_OWN = 16384, MAX_SEGMENTS = 8 };

static struct {
    atomic_flag lock;
    size_t n;
    uintptr_t ranges[MAX_OWN][2];
    size_t nseg;
    uintptr_t segments[MAX_SEGMENTS][2];
} own = {.lock = ATOMIC_FLAG_INIT};

/* A spin lock: held for a few instructions, by threads inside a wrapper (a
 * stop waits for them), never across a system call that blocks. */
static void own_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&own.lock, memory_order_acquire))
        sched_yield();
}

static void own_unlock(void) { atomic_flag_clear_explicit(&own.lock, memory_order_release); }

/* The child of a fork has only the forking thread: a lock another thread
 * held at the fork is nobody's. */
void or_own_after_fork(void) { atomic_flag_clear_explicit(&own.lock, memory_order_release); }

static bool record(uintptr_t lo, uintptr_t hi)
{
    own_lock();
    bool ok = own.n < MAX_OWN;
    if (ok) {
        own.ranges[own.n][0] = lo;
        own.ranges[own.n][1] = hi;
        own.n++;
    }
    own_unlock();
    return ok;
}

static void forget(uintptr_t lo)
{
    own_lock();
    for (size_t i = 0; i < own.n; i++)
        if (own.ranges[i][0] == lo) {
            own.ranges[i][0] = own.ranges[own.n - 1][0];
            own.ranges[i][1] = own.ranges[own.n - 1][1];
            own.n--;
            break;
        }
    own_unlock();
}

static size_t page_round(size_t n)
{
    size_t page = 4096;
    return (n + page - 1) & ~(page - 1);
}

void *or_map(size_t bytes)
{
    bytes = page_round(bytes ? bytes : 1);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (!record((uintptr_t)p, (uintptr_t)p + bytes)) {
        munmap(p, bytes);
        return NULL;
    }
    return p;
}

void or_unmap(void *p, size_t bytes)
{
    if (!p)
        return;
    forget((uintptr_t)p);
    munmap(p, page_round(bytes ? bytes : 1));
}

void *or_remap(void *p, size_t old_bytes, size_t new_bytes)
{
    if (!p)
        return or_map(new_bytes);
    void *q = or_map(new_bytes);
    if (!q)
        return NULL;
    memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
    or_unmap(p, old_bytes);
    return q;
}

static int note_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t me = (uintptr_t)arg;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && me >= lo && me < lo + ph->p_memsz)
            mine = true;
    }
    if (!mine)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && own.nseg < MAX_SEGMENTS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
            uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
            uintptr_t hi = page_round(info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
            own.segments[own.nseg][0] = lo;
            own.segments[own.nseg][1] = hi;
            own.nseg++;
        }
    }
    return 1;
}

struct object_query {
    uintptr_t code;
    uintptr_t (*out)[2];
    size_t cap, n;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct object_query *q = arg;
    bool hit = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && q->code >= lo && q->code < lo + ph->p_memsz)
            hit = true;
    }
    if (!hit)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && q->n < q->cap; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
            q->out[q->n][0] = info->dlpi_addr + ph->p_vaddr;
            q->out[q->n][1] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            q->n++;
        }
    }
    return 1;
}

size_t or_object_writable(uintptr_t code, uintptr_t (*out)[2], size_t cap)
{
    struct object_query q = {code, out, cap, 0};
    dl_iterate_phdr(find_object, &q);
    return q.n;
}

void or_own_segments_init(void)
{
    if (own.nseg == 0)
        dl_iterate_phdr(note_segments, (void *)(uintptr_t)&or_own_segments_init);
}

size_t or_own_ranges(uintptr_t (*out)[2], size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < own.nseg && n < cap; i++, n++)
        out[n][0] = own.segments[i][0], out[n][1] = own.segments[i][1];
    own_lock();
    for (size_t i = 0; i < own.n && n < cap; i++, n++)
        out[n][0] = own.ranges[i][0], out[n][1] = own.ranges[i][1];
    own_unlock();
    /* insertion sort: a few hundred ranges */
    for (size_t i = 1; i < n; i++) {
        uintptr_t a = out[i][0], b = out[i][1];
        size_t j = i;
        for (; j > 0 && out[j - 1][0] > a; j--)
            out[j][0] = out[j - 1][0], out[j][1] = out[j - 1][1];
        out[j][0] = a, out[j][1] = b;
    }
    return n;
}

/* ---- growable arrays in our own memory ---------------------------------------- */

bool or_vec_reserve(or_vec *v, size_t cap)
{
    if (cap <= v->cap)
        return true;
    size_t want = v->cap ? v->cap : 256;
    while (want < cap)
        want *= 2;
    size_t bytes = want * v->elem;
    void *p = or_remap(v->data, v->bytes, bytes);
    if (!p)
        return false;
    v->data = p;
    v->cap = want;
    v->bytes = bytes;
    return true;
}

bool or_vec_push(or_vec *v, const void *item)
{
    if (v->len == v->cap && !or_vec_reserve(v, v->len + 1))
        return false;
    memcpy((char *)v->data + v->len * v->elem, item, v->elem);
    v->len++;
    return true;
}

void or_vec_free(or_vec *v)
{
    or_unmap(v->data, v->bytes);
    v->data = NULL;
    v->len = v->cap = v->bytes = 0;
}

/* ---- a stack of our own --------------------------------------------------------------- */

/* The analysis and its report run on a stack mapped here, not on the
 * calling thread's: at exit that may be any thread, with any stack size
 * (a 64 KiB worker calling exit()), and the analysis needs a few hundred
 * KiB (a radix sort's counts, /proc buffers), the report more (libunwind,
 * symbolization). The mapping is ours (recorded, so never a root); its
 * lowest page is a guard; pages are committed only as they are touched. */
enum { OWN_STACK_BYTES = 8 << 20, GUARD = 4096 };

static __thread void (*own_fn)(void *) OR_TLS;
static __thread void *own_arg OR_TLS;
static __thread bool on_own_stack OR_TLS;

static void own_trampoline(void) { own_fn(own_arg); }

void or_on_own_stack(void (*fn)(void *), void *arg)
{
    if (on_own_stack) {
        fn(arg);
        return;
    }
    char *stack = or_map(OWN_STACK_BYTES);
    ucontext_t back, there;
    if (!stack || mprotect(stack, GUARD, PROT_NONE) != 0 || getcontext(&there) != 0) {
        or_unmap(stack, OWN_STACK_BYTES);
        fn(arg); /* no memory for a stack: the caller's, as it is */
        return;
    }
    there.uc_stack.ss_sp = stack + GUARD;
    there.uc_stack.ss_size = OWN_STACK_BYTES - GUARD;
    there.uc_link = &back;
    own_fn = fn;
    own_arg = arg;
    makecontext(&there, own_trampoline, 0);
    on_own_stack = true;
    swapcontext(&back, &there);
    on_own_stack = false;
    or_unmap(stack, OWN_STACK_BYTES);
}

/* ---- small things ------------------------------------------------------------------ */

long or_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

double or_cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

double or_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

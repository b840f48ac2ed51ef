/* group.c - from raw program counters to a grouped, symbolized snapshot, and
 * its text form (Go's goroutine?debug=1 dump).
 *
 * Grouping runs twice: first by the raw key (state, wait channel, system
 * call, status, program counters), which is cheap and leaves a handful of
 * groups out of 10,000 threads; then the representatives are symbolized
 * (libdwfl, outside any signal handler) and raw groups whose symbolized
 * stacks read the same are merged. Symbolization: function names from the
 * symbol tables (the module's own, or its separate debug file found by
 * build-id under /usr/lib/debug, never over the network); for the program's
 * own modules also inlined calls and file:line from DWARF. System modules
 * (libc, the dynamic loader, sanitizer runtimes, threadcheck) get names only:
 * their DWARF (libc6-dbg) is large and says nothing about the program. */
#include "internal.h"

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <dwarf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- a string arena: every name a snapshot holds lives here ---------------- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};

struct impl {
    threadcheck_snapshot pub;      /* first: the public pointer is this struct's */
    struct chunk *strings;
    threadcheck_frame **frame_sets; /* one frames array per raw group */
    size_t nframe_sets;
    pid_t *tids;
};

static const char *intern(struct impl *s, const char *text)
{
    if (!text)
        return NULL;
    size_t len = strlen(text) + 1;
    struct chunk *c = s->strings;
    if (!c || c->cap - c->used < len) {
        size_t cap = len > 16384 ? len : 16384;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = s->strings, c->used = 0, c->cap = cap;
        s->strings = c;
    }
    char *out = c->data + c->used;
    memcpy(out, text, len);
    c->used += len;
    return out;
}

/* ---- names ------------------------------------------------------------------ */

const char *tc_source_name(const char *fn, char *buf, size_t len)
{
    /* GCC's specialised copies: f.isra.0, f.constprop.0, f.part.0, f.cold. */
    snprintf(buf, len, "%s", fn ? fn : "?");
    for (;;) {
        char *dot = strrchr(buf, '.');
        if (!dot)
            break;
        char *p = dot + 1;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p == '\0' && p != dot + 1) { /* ".0": look at what precedes it */
            *dot = '\0';
            continue;
        }
        if (strcmp(dot, ".isra") == 0 || strcmp(dot, ".constprop") == 0 || strcmp(dot, ".part") == 0 ||
            strcmp(dot, ".cold") == 0 || strcmp(dot, ".lto_priv") == 0) {
            *dot = '\0';
            continue;
        }
        break;
    }
    return buf;
}

static bool system_module(const char *path)
{
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : path;
    if (!base)
        return false;
    static const char *const prefixes[] = {"libc.so", "libc-", "libpthread", "ld-linux", "ld-", "libthreadcheck",
                                           "libunwind", "vgpreload_", "libasan", "liblsan", "libtsan",
                                           "libubsan", NULL};
    for (size_t i = 0; prefixes[i]; i++)
        if (strncmp(base, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Sanitizer runtimes are linked into the executable: their interceptors and
 * internals are told by name. */
static bool system_function(const char *fn)
{
    if (!fn)
        return false;
    static const char *const prefixes[] = {"__interceptor_", "___interceptor_", "__sanitizer", "__tsan",
                                           "__asan", "__lsan", "__ubsan", "_ZN11__sanitizer", "_ZN6__tsan",
                                           "_ZN6__asan", "_ZN6__lsan", "__interception", NULL};
    for (size_t i = 0; prefixes[i]; i++)
        if (strncmp(fn, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

size_t tc_top_frame(const threadcheck_thread *t)
{
    for (size_t i = 0; i < t->nframes; i++)
        if (!t->frames[i].system)
            return i;
    return t->nframes;
}

/* ---- symbolization ------------------------------------------------------------ */

static char *debuginfo_path;
static const Dwfl_Callbacks proc_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_build_id_find_debuginfo, /* local build-id files only: no debuginfod */
    .debuginfo_path = &debuginfo_path,
};

/* The file name of line-table entry `idx` of the CU, or NULL. */
static const char *cu_file(Dwarf_Die *cudie, Dwarf_Word idx)
{
    Dwarf_Files *files;
    size_t nfiles;
    if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0 || idx >= nfiles)
        return NULL;
    return dwarf_filesrc(files, idx, NULL, NULL);
}

/* Appends the frames of one program counter: inlined calls first (innermost),
 * then the function that holds them. Returns how many were added. */
static size_t symbolize_pc(struct impl *s, Dwfl *dwfl, uintptr_t pc, bool exact, unsigned flags,
                           threadcheck_frame *out, size_t room)
{
    if (room == 0)
        return 0;
    uintptr_t lookup = exact || pc == 0 ? pc : pc - 1; /* a return address is past its call */
    threadcheck_frame f = {.address = pc};
    Dwfl_Module *mod = dwfl ? dwfl_addrmodule(dwfl, lookup) : NULL;
    if (!mod) {
        out[0] = f;
        return 1;
    }
    const char *module = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    f.module = intern(s, module);
    f.system = system_module(module);
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(mod, lookup, &off, &sym, NULL, NULL, NULL);
    char unversioned[512];
    if (name && strchr(name, '@')) { /* pthread_cond_wait@@GLIBC_2.3.2: the version is noise here */
        snprintf(unversioned, sizeof unversioned, "%.*s", (int)strcspn(name, "@"), name);
        name = unversioned;
    }
    f.function = intern(s, name);
    f.offset = name ? (uintptr_t)off + (pc - lookup) : 0;
    if (system_function(name))
        f.system = true;
    if ((flags & THREADCHECK_NO_LINES) || f.system) {
        out[0] = f;
        return 1;
    }
    Dwfl_Line *line = dwfl_module_getsrc(mod, lookup);
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;

    /* Inlined calls at this pc, from the DWARF scopes (innermost first). */
    size_t n = 0;
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, lookup, &bias);
    Dwarf_Die *scopes = NULL;
    int nscopes = cudie ? dwarf_getscopes(cudie, lookup - bias, &scopes) : 0;
    for (int i = 0; i < nscopes && n + 1 < room; i++) {
        if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine)
            continue;
        Dwarf_Attribute attr;
        const char *inlined = dwarf_formstring(dwarf_attr_integrate(&scopes[i], DW_AT_name, &attr));
        out[n++] = (threadcheck_frame){.address = pc, .function = intern(s, inlined), .module = f.module,
                                       .file = intern(s, file), .line = lineno, .inlined = true};
        /* The caller's line is where this call was inlined. */
        Dwarf_Word call_file = 0, call_line = 0;
        if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &call_line) == 0)
            lineno = (int)call_line;
        if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &call_file) == 0)
            file = cu_file(cudie, call_file);
    }
    free(scopes);
    f.file = intern(s, file);
    f.line = lineno;
    out[n++] = f;
    return n;
}

struct pc_entry {
    uintptr_t pc;
    bool exact;
    threadcheck_frame frames[8];   /* the function and up to 7 inlined calls */
    size_t nframes;
};

static int by_pc(const void *a, const void *b)
{
    const struct pc_entry *x = a, *y = b;
    if (x->pc != y->pc)
        return x->pc < y->pc ? -1 : 1;
    return (int)x->exact - (int)y->exact;
}

static const struct pc_entry *find_pc(const struct pc_entry *table, size_t n, uintptr_t pc, bool exact)
{
    struct pc_entry key = {.pc = pc, .exact = exact};
    return bsearch(&key, table, n, sizeof *table, by_pc);
}

/* ---- grouping ----------------------------------------------------------------- */

struct raw_group {
    size_t first;                  /* index of the representative in raw[] */
    size_t count;
    threadcheck_frame *frames;
    size_t nframes;
    size_t merged_into;            /* final group index */
    char *key;                     /* symbolic key, for the merge */
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

static uint64_t raw_hash(const tc_raw_thread *t, unsigned flags)
{
    uint64_t h = mix(0, (uint64_t)(unsigned char)t->info.state);
    for (const char *p = t->info.wchan; *p; p++)
        h = mix(h, (uint64_t)(unsigned char)*p);
    h = mix(h, (uint64_t)t->info.syscall);
    h = mix(h, (uint64_t)t->info.status);
    h = mix(h, (uint64_t)(t->first_exact + 1));
    if (flags & THREADCHECK_GROUP_BY_ADDRESS)
        h = mix(h, t->info.wait_address);
    for (int i = 0; i < t->npcs; i++)
        h = mix(h, t->pcs[i]);
    return h;
}

static bool raw_equal(const tc_raw_thread *a, const tc_raw_thread *b, unsigned flags)
{
    return a->info.state == b->info.state && strcmp(a->info.wchan, b->info.wchan) == 0 &&
           a->info.syscall == b->info.syscall && a->info.status == b->info.status &&
           a->first_exact == b->first_exact && a->npcs == b->npcs &&
           (!(flags & THREADCHECK_GROUP_BY_ADDRESS) || a->info.wait_address == b->info.wait_address) &&
           memcmp(a->pcs, b->pcs, (size_t)a->npcs * sizeof a->pcs[0]) == 0;
}

/* Which frames of a raw stack are shown: those after the signal frame (the
 * handler's own frames come before it), minus leading threadcheck frames
 * (the caller's own capture). */
static int first_shown(const tc_raw_thread *t, const struct pc_entry *table, size_t ntable)
{
    if (t->first_exact >= 0)
        return t->first_exact;
    int i = 0;
    for (; i < t->npcs; i++) {
        const struct pc_entry *e = find_pc(table, ntable, t->pcs[i], false);
        const char *module = e && e->nframes ? e->frames[e->nframes - 1].module : NULL;
        const char *base = module ? strrchr(module, '/') : NULL;
        if (!base || strncmp(base + 1, "libthreadcheck", 14) != 0)
            break;
    }
    return i < t->npcs ? i : 0;
}

static int by_count_desc(const void *a, const void *b)
{
    const threadcheck_group *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->thread->tid < y->thread->tid ? -1 : x->thread->tid > y->thread->tid;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

const char *tc_syscall_name(long nr)
{
    static const struct { long nr; const char *name; } names[] = {
        {SYS_futex, "futex"}, {SYS_read, "read"}, {SYS_write, "write"}, {SYS_readv, "readv"},
        {SYS_writev, "writev"}, {SYS_recvfrom, "recvfrom"}, {SYS_sendto, "sendto"}, {SYS_recvmsg, "recvmsg"},
        {SYS_sendmsg, "sendmsg"}, {SYS_accept, "accept"}, {SYS_accept4, "accept4"}, {SYS_connect, "connect"},
#ifdef SYS_poll
        {SYS_poll, "poll"},
#endif
#ifdef SYS_select
        {SYS_select, "select"},
#endif
#ifdef SYS_epoll_wait
        {SYS_epoll_wait, "epoll_wait"},
#endif
#ifdef SYS_pause
        {SYS_pause, "pause"},
#endif
        {SYS_ppoll, "ppoll"}, {SYS_pselect6, "pselect6"}, {SYS_epoll_pwait, "epoll_pwait"},
#ifdef SYS_epoll_pwait2
        {SYS_epoll_pwait2, "epoll_pwait2"},
#endif
        {SYS_nanosleep, "nanosleep"}, {SYS_clock_nanosleep, "clock_nanosleep"},
        {SYS_rt_sigtimedwait, "rt_sigtimedwait"}, {SYS_rt_sigsuspend, "rt_sigsuspend"}, {SYS_wait4, "wait4"},
        {SYS_waitid, "waitid"}, {SYS_restart_syscall, "restart_syscall"}, {SYS_msgrcv, "msgrcv"},
        {SYS_semop, "semop"}, {SYS_semtimedop, "semtimedop"}, {SYS_io_getevents, "io_getevents"},
        {SYS_flock, "flock"}, {SYS_fcntl, "fcntl"}, {SYS_openat, "openat"}, {SYS_getrandom, "getrandom"},
        {SYS_mmap, "mmap"}, {SYS_munmap, "munmap"}, {SYS_mprotect, "mprotect"}, {SYS_madvise, "madvise"},
        {SYS_sched_yield, "sched_yield"}, {SYS_exit, "exit"}, {SYS_exit_group, "exit_group"},
        {SYS_ioctl, "ioctl"}, {SYS_close, "close"}, {SYS_pread64, "pread64"}, {SYS_pwrite64, "pwrite64"},
#ifdef SYS_io_uring_enter
        {SYS_io_uring_enter, "io_uring_enter"},
#endif
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].nr == nr)
            return names[i].name;
    return NULL;
}

static const char *syscall_text(struct impl *s, long nr)
{
    if (nr == -2)
        return "running";
    if (nr == -1)
        return "none";
    const char *name = tc_syscall_name(nr);
    if (name)
        return name;
    char number[24];
    snprintf(number, sizeof number, "%ld", nr);
    return intern(s, number);
}

/* The text merged groups must agree on. */
static char *symbolic_key(const threadcheck_thread *t, const threadcheck_frame *frames, size_t nframes,
                          unsigned flags)
{
    size_t cap = 256 + nframes * 64, len = 0;
    char *key = malloc(cap);
    if (!key)
        return NULL;
    len += (size_t)snprintf(key, cap, "%c|%s|%ld|%d|%" PRIxPTR "|", t->state, t->wchan, t->syscall, (int)t->status,
                            (flags & THREADCHECK_GROUP_BY_ADDRESS) ? t->wait_address : 0);
    for (size_t i = 0; i < nframes; i++) {
        char text[512];
        if (frames[i].function)
            snprintf(text, sizeof text, "%s;", frames[i].function);
        else
            snprintf(text, sizeof text, "%s+%" PRIxPTR ";", frames[i].module ? frames[i].module : "?",
                     frames[i].address);
        size_t need = strlen(text);
        if (len + need + 1 > cap) {
            char *more = realloc(key, cap = 2 * (len + need + 1));
            if (!more) {
                free(key);
                return NULL;
            }
            key = more;
        }
        memcpy(key + len, text, need + 1);
        len += need;
    }
    return key;
}

static void impl_free(struct impl *s)
{
    if (!s)
        return;
    for (struct chunk *c = s->strings, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (size_t i = 0; i < s->nframe_sets; i++)
        free(s->frame_sets[i]);
    free(s->frame_sets);
    free(s->tids);
    free(s->pub.threads);
    free(s->pub.groups);
    free(s);
}

void threadcheck_snapshot_free(threadcheck_snapshot *snapshot) { impl_free((struct impl *)snapshot); }

threadcheck_snapshot *tc_build_snapshot(tc_raw_thread *raw, size_t n, unsigned flags, const char *why,
                                        int signal_used, double capture_ms)
{
    double t0 = tc_now_ms();
    struct impl *s = calloc(1, sizeof *s);
    size_t hash_cap = 16;
    while (hash_cap < 2 * n)
        hash_cap *= 2;
    size_t *hash = calloc(hash_cap, sizeof *hash);          /* raw group index + 1 */
    size_t *group_of = calloc(n ? n : 1, sizeof *group_of);  /* per thread */
    struct raw_group *rg = calloc(n ? n : 1, sizeof *rg);
    struct pc_entry *pcs = NULL;
    Dwfl *dwfl = NULL;
    size_t nrg = 0, npcs = 0;
    if (!s || !hash || !group_of || !rg)
        goto oom;
    s->pub.pid = getpid();
    s->pub.caller = (pid_t)syscall(SYS_gettid);
    s->pub.signal = signal_used;
    s->pub.stacks_unavailable = why ? intern(s, why) : NULL;
    s->pub.capture_ms = capture_ms;

    /* 1. raw groups */
    for (size_t i = 0; i < n; i++) {
        uint64_t h = raw_hash(&raw[i], flags);
        size_t b = (size_t)h & (hash_cap - 1);
        while (hash[b] && !raw_equal(&raw[rg[hash[b] - 1].first], &raw[i], flags))
            b = (b + 1) & (hash_cap - 1);
        if (!hash[b]) {
            rg[nrg] = (struct raw_group){.first = i};
            hash[b] = ++nrg;
        }
        rg[hash[b] - 1].count++;
        group_of[i] = hash[b] - 1;
    }

    /* 2. symbolize every distinct pc of the representatives, once */
    size_t want = 0;
    for (size_t g = 0; g < nrg; g++)
        want += (size_t)raw[rg[g].first].npcs;
    pcs = calloc(want ? want : 1, sizeof *pcs);
    if (!pcs)
        goto oom;
    for (size_t g = 0; g < nrg; g++) {
        const tc_raw_thread *t = &raw[rg[g].first];
        for (int i = 0; i < t->npcs; i++)
            pcs[npcs++] = (struct pc_entry){.pc = t->pcs[i], .exact = i == t->first_exact};
    }
    qsort(pcs, npcs, sizeof *pcs, by_pc);
    size_t unique = 0;
    for (size_t i = 0; i < npcs; i++)
        if (unique == 0 || by_pc(&pcs[unique - 1], &pcs[i]) != 0)
            pcs[unique++] = pcs[i];
    npcs = unique;
    if (npcs && !(flags & THREADCHECK_NO_SYMBOLS)) {
        dwfl = dwfl_begin(&proc_callbacks);
        if (dwfl && (dwfl_linux_proc_report(dwfl, getpid()) != 0 || dwfl_report_end(dwfl, NULL, NULL) != 0)) {
            dwfl_end(dwfl);
            dwfl = NULL;
        }
    }
    for (size_t i = 0; i < npcs; i++)
        pcs[i].nframes = symbolize_pc(s, dwfl, pcs[i].pc, pcs[i].exact, flags, pcs[i].frames,
                                      sizeof pcs[i].frames / sizeof pcs[i].frames[0]);

    /* 3. each raw group's frames, from the signal frame on */
    s->frame_sets = calloc(nrg ? nrg : 1, sizeof *s->frame_sets);
    if (!s->frame_sets)
        goto oom;
    for (size_t g = 0; g < nrg; g++) {
        const tc_raw_thread *t = &raw[rg[g].first];
        int from = first_shown(t, pcs, npcs);
        size_t total = 0;
        for (int i = from; i < t->npcs; i++) {
            const struct pc_entry *e = find_pc(pcs, npcs, t->pcs[i], i == t->first_exact);
            total += e ? e->nframes : 1;
        }
        threadcheck_frame *frames = calloc(total ? total : 1, sizeof *frames);
        if (!frames)
            goto oom;
        s->frame_sets[s->nframe_sets++] = frames;
        size_t k = 0;
        for (int i = from; i < t->npcs; i++) {
            const struct pc_entry *e = find_pc(pcs, npcs, t->pcs[i], i == t->first_exact);
            if (e) {
                memcpy(frames + k, e->frames, e->nframes * sizeof *frames);
                k += e->nframes;
            } else {
                frames[k++] = (threadcheck_frame){.address = t->pcs[i]};
            }
        }
        rg[g].frames = frames;
        rg[g].nframes = k;
    }
    if (dwfl)
        dwfl_end(dwfl);
    dwfl = NULL;

    /* 4. the threads, each pointing at its raw group's frames (shared) */
    s->pub.threads = calloc(n ? n : 1, sizeof *s->pub.threads);
    if (!s->pub.threads)
        goto oom;
    s->pub.nthreads = n;
    for (size_t i = 0; i < n; i++) {
        threadcheck_thread *t = &s->pub.threads[i];
        *t = raw[i].info;
        t->syscall_name = syscall_text(s, t->syscall);
        t->frames = rg[group_of[i]].frames;
        t->nframes = rg[group_of[i]].nframes;
    }

    /* 5. merge raw groups that read the same */
    size_t ngroups = 0;
    s->pub.groups = calloc(nrg ? nrg : 1, sizeof *s->pub.groups);
    if (!s->pub.groups)
        goto oom;
    for (size_t g = 0; g < nrg; g++) {
        rg[g].key = symbolic_key(&s->pub.threads[rg[g].first], rg[g].frames, rg[g].nframes, flags);
        if (!rg[g].key)
            goto oom;
        size_t into = 0;
        while (into < g && strcmp(rg[into].key, rg[g].key) != 0)
            into++;
        if (into < g) {
            rg[g].merged_into = rg[into].merged_into;
            s->pub.groups[rg[g].merged_into].count += rg[g].count;
        } else {
            rg[g].merged_into = ngroups;
            s->pub.groups[ngroups++] = (threadcheck_group){.count = rg[g].count,
                                                           .thread = &s->pub.threads[rg[g].first]};
        }
    }
    s->pub.ngroups = ngroups;
    /* member TIDs, contiguous per group; wait addresses shared or not */
    s->tids = calloc(n ? n : 1, sizeof *s->tids);
    size_t *fill = calloc(ngroups ? ngroups : 1, sizeof *fill);
    uintptr_t *addresses = calloc(n ? n : 1, sizeof *addresses);
    if (!s->tids || !fill || !addresses) {
        free(fill);
        free(addresses);
        goto oom;
    }
    for (size_t g = 0, at = 0; g < ngroups; g++) {
        fill[g] = at;
        at += s->pub.groups[g].count;
    }
    for (size_t i = 0; i < n; i++) {
        size_t g = rg[group_of[i]].merged_into;
        addresses[fill[g]] = s->pub.threads[i].wait_address;
        s->tids[fill[g]++] = s->pub.threads[i].tid;
    }
    for (size_t g = 0, at = 0; g < ngroups; g++) {
        threadcheck_group *grp = &s->pub.groups[g];
        grp->tids = s->tids + at;
        qsort(addresses + at, grp->count, sizeof *addresses, by_address);
        size_t distinct = 0;
        for (size_t i = 0; i < grp->count; i++)
            if (addresses[at + i] && (i == 0 || addresses[at + i] != addresses[at + i - 1]))
                distinct++;
        grp->wait_addresses = distinct;
        grp->wait_address = distinct == 1 && addresses[at] == addresses[at + grp->count - 1] ? addresses[at] : 0;
        grp->top = tc_top_frame(grp->thread);
        at += grp->count;
    }
    free(fill);
    free(addresses);
    qsort(s->pub.groups, ngroups, sizeof *s->pub.groups, by_count_desc);
    for (size_t g = 0; g < nrg; g++)
        free(rg[g].key);
    free(rg);
    free(hash);
    free(group_of);
    free(pcs);
    free(raw);
    s->pub.symbolize_ms = tc_now_ms() - t0;
    return &s->pub;

oom:
    if (dwfl)
        dwfl_end(dwfl);
    for (size_t g = 0; rg && g < nrg; g++)
        free(rg[g].key);
    free(rg);
    free(hash);
    free(group_of);
    free(pcs);
    free(raw);
    impl_free(s);
    errno = ENOMEM;
    return NULL;
}

/* ---- text ------------------------------------------------------------------ */

const char *threadcheck_stack_status_text(threadcheck_stack_status status)
{
    switch (status) {
    case THREADCHECK_STACK_CAPTURED: return "captured";
    case THREADCHECK_STACK_NOT_SIGNALLED:
        return "not signalled: in a system call a signal would interrupt (EINTR, a short count); stack read from /proc's registers";
    case THREADCHECK_STACK_BLOCKED: return "not captured: the thread blocks the capture signal (not sent)";
    case THREADCHECK_STACK_TIMEOUT: return "not captured: no answer to the capture signal in time";
    case THREADCHECK_STACK_EXITED: return "not captured: the thread exited during the capture";
    case THREADCHECK_STACK_STOPPED: return "not captured: stopped, traced or a zombie";
    case THREADCHECK_STACK_UNAVAILABLE: return "not captured: stack capture unavailable";
    case THREADCHECK_STACK_SKIPPED: return "not captured: not asked for";
    case THREADCHECK_STACK_PENDING: return "not captured: an earlier capture signal is still pending (not sent again)";
    }
    return "?";
}

/* Appends `piece` to buf as snprintf would: `need` counts the full length. */
static void append(char *buf, size_t len, size_t *need, const char *piece)
{
    size_t plen = strlen(piece);
    if (len > 0 && *need < len - 1) {
        size_t room = len - 1 - *need, copy = plen < room ? plen : room;
        memcpy(buf + *need, piece, copy);
        buf[*need + copy] = '\0';
    }
    *need += plen;
}

size_t threadcheck_group_stack_text(const threadcheck_group *group, char *buf, size_t len)
{
    const threadcheck_thread *t = group->thread;
    size_t need = 0;
    if (len)
        buf[0] = '\0';
    if (t->nframes == 0) {
        append(buf, len, &need, "(");
        append(buf, len, &need, threadcheck_stack_status_text(t->status));
        append(buf, len, &need, ")");
        return need;
    }
    size_t from = group->top < t->nframes ? group->top : 0;
    for (size_t i = from; i < t->nframes; i++) {
        char name[256];
        const threadcheck_frame *f = &t->frames[i];
        if (f->function)
            tc_source_name(f->function, name, sizeof name);
        else
            snprintf(name, sizeof name, "%#" PRIxPTR, f->address);
        if (i > from)
            append(buf, len, &need, " <- ");
        append(buf, len, &need, name);
    }
    return need;
}

static const char *state_text(char state)
{
    switch (state) {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "disk sleep";
    case 'T': return "stopped";
    case 't': return "tracing stop";
    case 'Z': return "zombie";
    case 'X': return "dead";
    case 'I': return "idle";
    }
    return "?";
}

int threadcheck_snapshot_print(const threadcheck_snapshot *snap, FILE *out)
{
    if (!snap || !out) {
        errno = EINVAL;
        return THREADCHECK_ERROR;
    }
    for (size_t g = 0; g < snap->ngroups; g++) {
        const threadcheck_group *grp = &snap->groups[g];
        const threadcheck_thread *t = grp->thread;
        char stack[2048];
        threadcheck_group_stack_text(grp, stack, sizeof stack);
        fprintf(out, "%zu @ %s\n", grp->count, stack);
        fprintf(out, "#\tstate %c (%s), syscall %s, wchan %s", t->state, state_text(t->state), t->syscall_name,
                t->wchan);
        if (grp->wait_address)
            fprintf(out, ", futex 0x%" PRIxPTR, grp->wait_address);
        else if (grp->wait_addresses > 1)
            fprintf(out, ", %zu futexes", grp->wait_addresses);
        fprintf(out, "; stack %s", threadcheck_stack_status_text(t->status));
        if (t->status == THREADCHECK_STACK_NOT_SIGNALLED)
            fprintf(out, " (%s)", t->syscall_name);
        if (t->status == THREADCHECK_STACK_UNAVAILABLE && snap->stacks_unavailable)
            fprintf(out, " (%s)", snap->stacks_unavailable);
        fprintf(out, "; tids %d", (int)grp->tids[0]);
        if (grp->count > 1)
            fprintf(out, " +%zu more", grp->count - 1);
        fprintf(out, "\n");
        for (size_t i = 0; i < t->nframes; i++) {
            const threadcheck_frame *f = &t->frames[i];
            fprintf(out, "#\t%#" PRIxPTR "\t", f->address);
            if (f->function)
                fprintf(out, "%s%s+%#" PRIxPTR, f->function, f->inlined ? " (inlined)" : "", f->offset);
            else
                fprintf(out, "?");
            if (f->file)
                fprintf(out, "\t%s:%d", f->file, f->line);
            else if (f->module)
                fprintf(out, "\t%s", f->module);
            fprintf(out, "\n");
        }
        if (t->truncated)
            fprintf(out, "#\t... (more than %d frames)\n", THREADCHECK_MAX_FRAMES);
        fprintf(out, "\n");
    }
    if (ferror(out)) {
        errno = EIO;
        return THREADCHECK_ERROR;
    }
    return THREADCHECK_OK;
}

threadcheck_snapshot *threadcheck_snapshot_take(const threadcheck_capture_options *opts)
{
    double t0 = tc_now_ms();
    tc_raw_thread *raw = NULL;
    size_t n = 0;
    const char *why = NULL;
    int sig = 0;
    if (tc_capture(opts, NULL, NULL, &raw, &n, &why, &sig) != 0)
        return NULL;
    return tc_build_snapshot(raw, n, opts ? opts->flags : 0, why, sig, tc_now_ms() - t0);
}

threadcheck_snapshot *threadcheck_snapshot_from_stacks(const uintptr_t *const *stacks, const size_t *lens,
                                                       const pid_t *tids, size_t n, bool exact_first,
                                                       unsigned flags)
{
    double t0 = tc_now_ms();
    tc_raw_thread *raw = calloc(n ? n : 1, sizeof *raw);
    if (!raw)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        tc_raw_thread *t = &raw[i];
        size_t k = lens[i] < THREADCHECK_MAX_FRAMES ? lens[i] : THREADCHECK_MAX_FRAMES;
        memcpy(t->pcs, stacks[i], k * sizeof t->pcs[0]);
        t->npcs = (int)k;
        t->first_exact = exact_first && k ? 0 : -1;
        t->info.tid = tids ? tids[i] : 0;
        t->info.state = '?';
        snprintf(t->info.wchan, sizeof t->info.wchan, "-");
        t->info.syscall = -1;
        t->info.status = THREADCHECK_STACK_CAPTURED;
        t->info.truncated = lens[i] > THREADCHECK_MAX_FRAMES;
    }
    return tc_build_snapshot(raw, n, flags, NULL, 0, tc_now_ms() - t0);
}

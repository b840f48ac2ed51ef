/* snapshot.c - what the process can see of itself: /proc readings, allocator
 * statistics, and the thread census (the pthread answer to Go's
 * /debug/pprof/goroutine?debug=1: threads grouped by where they wait). */
#include "internal.h"

#include <threadcheck.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- ll_buf ---- */

static void buf_reserve(ll_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        static const char msg[] = "leaklab: out of memory while formatting an event\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(LL_EXIT_SYSTEM);
    }
    b->data = data;
    b->cap = cap;
}

void ll_buf_printf(ll_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)need);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

void ll_buf_json_string(ll_buf *b, const char *s)
{
    ll_buf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            ll_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            ll_buf_printf(b, "\\u%04x", c);
        else
            ll_buf_printf(b, "%c", c);
    }
    ll_buf_printf(b, "\"");
}

void ll_buf_free(ll_buf *b)
{
    free(b->data);
    *b = (ll_buf){0};
}

/* ---- /proc readings ---- */

/* Reads a "Key:   123 kB" line from a /proc status-like file; -1 if absent. */
static long long read_kb_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
    size_t keylen = strlen(key);
    long long value = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, keylen) == 0 && line[keylen] == ':') {
            value = strtoll(line + keylen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

static long long kb_to_bytes(long long kb) { return kb < 0 ? -1 : kb * 1024; }

long ll_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* ---- thread census ---- */

/* The census comes from threadcheck (threadcheck/include/threadcheck.h):
 * every thread's state, wait channel and system call from /proc, and its
 * stack, captured by a signal to the thread whose handler unwinds it, then
 * symbolized here, outside any handler. Threads alike in all of these form
 * a group, largest first: "10000 @ ll_chan_recv <- worker <- start_thread".
 * A thread whose call a signal would visibly change (EINTR from poll,
 * nanosleep, epoll_wait, ...; a short count from a blocked write or send)
 * is not signalled: its stack is unwound from the registers /proc shows,
 * and its group says so in stack_status.
 *
 * LEAKLAB_CENSUS_STACKS=0 in the environment turns the stacks off (the
 * census as it was before: /proc only), for measuring what they cost. */

static void frame_name(const threadcheck_frame *f, char *out, size_t len)
{
    if (!f->function) {
        snprintf(out, len, "%#lx", (unsigned long)f->address);
        return;
    }
    /* The name the source gives: GCC's clone suffixes dropped (.isra.0). */
    snprintf(out, len, "%s", f->function);
    for (char *dot; (dot = strrchr(out, '.'));) {
        const char *suffix = dot + 1;
        bool digits = *suffix != '\0' && strspn(suffix, "0123456789") == strlen(suffix);
        if (!digits && strcmp(suffix, "isra") != 0 && strcmp(suffix, "constprop") != 0 &&
            strcmp(suffix, "part") != 0 && strcmp(suffix, "cold") != 0 && strcmp(suffix, "lto_priv") != 0)
            break;
        *dot = '\0';
    }
}

static void census_group_json(ll_buf *b, const threadcheck_group *g)
{
    const threadcheck_thread *t = g->thread;
    ll_buf_printf(b, "{\"state\":\"%c\",\"wchan\":", t->state);
    ll_buf_json_string(b, t->wchan);
    ll_buf_printf(b, ",\"syscall\":");
    ll_buf_json_string(b, t->syscall_name);
    ll_buf_printf(b, ",\"count\":%zu", g->count);
    if (g->wait_address)
        ll_buf_printf(b, ",\"wait_address\":\"%#lx\"", (unsigned long)g->wait_address);
    else
        ll_buf_printf(b, ",\"wait_address\":null");
    ll_buf_printf(b, ",\"wait_addresses\":%zu,\"stack_status\":", g->wait_addresses);
    ll_buf_json_string(b, threadcheck_stack_status_text(t->status));
    /* "stack": function names from the top frame (the first outside libc,
     * the loader and threadcheck) outwards; all of them if none is. */
    ll_buf_printf(b, ",\"stack\":[");
    size_t from = g->top < t->nframes ? g->top : 0;
    for (size_t i = from; i < t->nframes; i++) {
        char name[256];
        frame_name(&t->frames[i], name, sizeof name);
        ll_buf_printf(b, "%s", i > from ? "," : "");
        ll_buf_json_string(b, name);
    }
    ll_buf_printf(b, "],\"frames\":[");
    for (size_t i = 0; i < t->nframes; i++) {
        const threadcheck_frame *f = &t->frames[i];
        ll_buf_printf(b, "%s{\"function\":", i ? "," : "");
        if (f->function)
            ll_buf_json_string(b, f->function);
        else
            ll_buf_printf(b, "null");
        ll_buf_printf(b, ",\"file\":");
        if (f->file)
            ll_buf_json_string(b, f->file);
        else
            ll_buf_printf(b, "null");
        ll_buf_printf(b, ",\"line\":");
        if (f->line > 0)
            ll_buf_printf(b, "%d", f->line);
        else
            ll_buf_printf(b, "null");
        ll_buf_printf(b, ",\"address\":\"%#lx\",\"module\":", (unsigned long)f->address);
        if (f->module)
            ll_buf_json_string(b, f->module);
        else
            ll_buf_printf(b, "null");
        ll_buf_printf(b, ",\"system\":%s,\"inlined\":%s}", f->system ? "true" : "false",
                      f->inlined ? "true" : "false");
    }
    ll_buf_printf(b, "]}");
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void census_json(ll_buf *b)
{
    double t0 = now_ms();
    const char *stacks = getenv("LEAKLAB_CENSUS_STACKS");
    threadcheck_capture_options opts = {0};
    if (stacks && strcmp(stacks, "0") == 0)
        opts.flags |= THREADCHECK_NO_STACKS;
    threadcheck_snapshot *snap = threadcheck_snapshot_take(&opts);
    if (!snap) {
        /* /proc/self/task unreadable or no memory: an empty census says so
         * (the comparer refuses to read figures from it). */
        ll_buf_printf(b, "\"census\":[],\"census_error\":");
        ll_buf_json_string(b, strerror(errno));
        return;
    }
    ll_buf_printf(b, "\"census\":[");
    for (size_t i = 0; i < snap->ngroups; i++) {
        ll_buf_printf(b, "%s", i ? "," : "");
        census_group_json(b, &snap->groups[i]);
    }
    ll_buf_printf(b, "],\"census_stacks\":");
    if (opts.flags & THREADCHECK_NO_STACKS)
        ll_buf_printf(b, "\"off (LEAKLAB_CENSUS_STACKS=0)\"");
    else if (snap->stacks_unavailable)
        ll_buf_json_string(b, snap->stacks_unavailable);
    else
        ll_buf_printf(b, "\"captured\"");
    threadcheck_snapshot_free(snap);
    ll_buf_printf(b, ",\"census_ms\":%.1f", now_ms() - t0);
}

void ll_snapshot_json(ll_buf *b, const ll_counter *counters)
{
    ll_alloc_stats a = {0};
    ll_alloc_read(&a);
    ll_buf_printf(b,
                  "\"snapshot\":{\"rss_bytes\":%lld,\"rss_anon_bytes\":%lld,\"hwm_bytes\":%lld,"
                  "\"threads\":%lld,\"lazyfree_bytes\":%lld,\"fds\":%ld,",
                  kb_to_bytes(read_kb_field("/proc/self/status", "VmRSS")),
                  kb_to_bytes(read_kb_field("/proc/self/status", "RssAnon")),
                  kb_to_bytes(read_kb_field("/proc/self/status", "VmHWM")),
                  read_kb_field("/proc/self/status", "Threads"),
                  kb_to_bytes(read_kb_field("/proc/self/smaps_rollup", "LazyFree")), ll_count_fds());
    ll_buf_printf(b,
                  "\"alloc\":{\"allocator\":\"%s\",\"in_use_bytes\":%lld,\"free_held_bytes\":%lld,"
                  "\"released_bytes\":%lld,\"arenas\":%lld},",
                  a.allocator, (long long)a.in_use_bytes, (long long)a.free_held_bytes,
                  (long long)a.released_bytes, (long long)a.arenas);
    ll_buf_printf(b, "\"counters\":{");
    for (size_t i = 0; counters && counters[i].name; i++)
        ll_buf_printf(b, "%s\"%s\":%lld", i ? "," : "", counters[i].name,
                      (long long)atomic_load(counters[i].value));
    ll_buf_printf(b, "},");
    census_json(b);
    ll_buf_printf(b, "}");
}

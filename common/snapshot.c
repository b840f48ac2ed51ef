/* snapshot.c - what the process can see of itself: /proc readings, allocator
 * statistics, and the thread census (the pthread answer to Go's
 * /debug/pprof/goroutine?debug=1: threads grouped by where they wait). */
#include "internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

struct census_group {
    char state;
    char wchan[64];
    char syscall[32];
    long count;
};

/* The syscalls a blocked thread is usually found in, by number, so the census
 * says "futex" rather than "202". Anything else is printed as its number. */
static const struct { long nr; const char *name; } syscall_names[] = {
    {SYS_futex, "futex"},         {SYS_read, "read"},
    {SYS_write, "write"},         {SYS_recvfrom, "recvfrom"},
    {SYS_sendto, "sendto"},       {SYS_accept, "accept"},
    {SYS_accept4, "accept4"},     {SYS_poll, "poll"},
    {SYS_ppoll, "ppoll"},         {SYS_epoll_wait, "epoll_wait"},
    {SYS_nanosleep, "nanosleep"}, {SYS_clock_nanosleep, "clock_nanosleep"},
    {SYS_rt_sigtimedwait, "rt_sigtimedwait"}, {SYS_wait4, "wait4"},
    {SYS_recvmsg, "recvmsg"},     {SYS_sendmsg, "sendmsg"},
};

static void read_first_line(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(out, (int)len, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static void syscall_name(const char *raw, char *out, size_t len)
{
    /* /proc/.../syscall is "running", "-1 ..." (not in a syscall) or "NR args..." */
    if (raw[0] == '\0' || strncmp(raw, "running", 7) == 0) {
        snprintf(out, len, "%s", raw[0] ? "running" : "?");
        return;
    }
    long nr = strtol(raw, NULL, 10);
    if (nr < 0) {
        snprintf(out, len, "none");
        return;
    }
    for (size_t i = 0; i < sizeof syscall_names / sizeof syscall_names[0]; i++)
        if (syscall_names[i].nr == nr) {
            snprintf(out, len, "%s", syscall_names[i].name);
            return;
        }
    snprintf(out, len, "%ld", nr);
}

static int by_count_desc(const void *a, const void *b)
{
    const struct census_group *x = a, *y = b;
    return (y->count > x->count) - (y->count < x->count);
}

static void census_json(ll_buf *b)
{
    size_t ngroups = 0, cap = 16;
    struct census_group *groups = calloc(cap, sizeof *groups);
    DIR *d = opendir("/proc/self/task");
    if (!groups || !d) {
        ll_buf_printf(b, "\"census\":[]");
        free(groups);
        if (d)
            closedir(d);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[320], stat[512], raw[128];
        struct census_group g = {0};

        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        read_first_line(path, stat, sizeof stat);
        const char *close_paren = strrchr(stat, ')'); /* comm may hold spaces */
        g.state = close_paren && close_paren[1] ? close_paren[2] : '?';
        snprintf(path, sizeof path, "/proc/self/task/%s/wchan", e->d_name);
        read_first_line(path, g.wchan, sizeof g.wchan);
        if (g.wchan[0] == '\0' || strcmp(g.wchan, "0") == 0)
            snprintf(g.wchan, sizeof g.wchan, "-");
        snprintf(path, sizeof path, "/proc/self/task/%s/syscall", e->d_name);
        read_first_line(path, raw, sizeof raw);
        syscall_name(raw, g.syscall, sizeof g.syscall);

        size_t i = 0;
        while (i < ngroups && !(groups[i].state == g.state && strcmp(groups[i].wchan, g.wchan) == 0 &&
                                strcmp(groups[i].syscall, g.syscall) == 0))
            i++;
        if (i == ngroups) {
            if (ngroups == cap) {
                struct census_group *more = realloc(groups, 2 * cap * sizeof *groups);
                if (!more)
                    break; /* a partial census is still a census */
                groups = more;
                cap *= 2;
            }
            groups[ngroups++] = g;
        }
        groups[i].count++;
    }
    closedir(d);
    qsort(groups, ngroups, sizeof *groups, by_count_desc);

    ll_buf_printf(b, "\"census\":[");
    for (size_t i = 0; i < ngroups; i++) {
        ll_buf_printf(b, "%s{\"state\":\"%c\",\"wchan\":", i ? "," : "", groups[i].state);
        ll_buf_json_string(b, groups[i].wchan);
        ll_buf_printf(b, ",\"syscall\":");
        ll_buf_json_string(b, groups[i].syscall);
        ll_buf_printf(b, ",\"count\":%ld}", groups[i].count);
    }
    ll_buf_printf(b, "]");
    free(groups);
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

/* thread_limits.c - which system limit refused a new thread: the readings from a
 * /proc tree, and the decision with the figures and the remedy (thread_limits.h). */
#include "thread_limits.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CAP_SYS_ADMIN_BIT = 21, CAP_SYS_RESOURCE_BIT = 24 };

/* ---- reading ---- */

/* Reads root/rel into buf (NUL-terminated, truncated to size - 1); false if
 * it cannot be opened or read. */
static bool read_text(const char *root, const char *rel, char *buf, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t got = 0;
    for (ssize_t n; got + 1 < size && (n = read(fd, buf + got, size - 1 - got)) != 0;) {
        if (n < 0) {
            close(fd);
            return false;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return true;
}

/* A non-negative decimal at the start of `text` (blanks skipped), "unlimited"
 * or "max" as LL_LIMIT_UNLIMITED; LL_LIMIT_UNKNOWN otherwise. */
static long long parse_count(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    if (strncmp(text, "unlimited", 9) == 0 || strncmp(text, "max", 3) == 0)
        return LL_LIMIT_UNLIMITED;
    if (!isdigit((unsigned char)*text))
        return LL_LIMIT_UNKNOWN;
    char *end;
    long long v = strtoll(text, &end, 10);
    return v < 0 || v == LLONG_MAX ? LL_LIMIT_UNKNOWN : v;
}

static long long read_count(const char *root, const char *rel)
{
    char buf[64];
    return read_text(root, rel, buf, sizeof buf) ? parse_count(buf) : LL_LIMIT_UNKNOWN;
}

/* The value after "Key:" on its own line of a proc status-like text. */
static const char *field(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            return line + klen + 1;
    return NULL;
}

static long long field_count(const char *text, const char *key)
{
    const char *v = field(text, key);
    return v ? parse_count(v) : LL_LIMIT_UNKNOWN;
}

/* A "N kB" field in bytes. */
static long long field_kib(const char *text, const char *key)
{
    long long kib = field_count(text, key);
    return kib < 0 || kib > LLONG_MAX / 1024 ? LL_LIMIT_UNKNOWN : kib * 1024;
}

/* The soft limit in a proc/PID/limits row such as "Max processes   4096   4096   processes". */
static long long soft_limit(const char *limits, const char *name)
{
    for (const char *line = limits; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ' ')
            return parse_count(line + strlen(name));
    return LL_LIMIT_UNKNOWN;
}

static long long count_lines(const char *root, const char *rel)
{
    char path[512], buf[16384];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return LL_LIMIT_UNKNOWN;
    long long lines = 0;
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
        if (n < 0) {
            close(fd);
            return LL_LIMIT_UNKNOWN;
        }
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    close(fd);
    return lines;
}

/* Threads of every process whose real uid is `uid`: what RLIMIT_NPROC counts. */
static long long threads_of_user(const char *root, long long uid)
{
    char path[512];
    snprintf(path, sizeof path, "%s/proc", root);
    DIR *dir = opendir(path);
    if (!dir)
        return LL_LIMIT_UNKNOWN;
    long long total = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char rel[64], status[2048];
        snprintf(rel, sizeof rel, "proc/%.20s/status", e->d_name);
        if (!read_text(root, rel, status, sizeof status))
            continue; /* it ended meanwhile */
        const char *ids = field(status, "Uid");
        long long threads = field_count(status, "Threads");
        if (ids && parse_count(ids) == uid && threads > 0)
            total += threads;
    }
    closedir(dir);
    return total;
}

/* The cgroup pids controller with the least headroom on the path from this
 * process's cgroup up to the root (a parent's pids.max bounds its children). */
static void read_pids_cgroup(const char *root, ll_limit_readings *r)
{
    char cgroups[4096];
    if (!read_text(root, "proc/self/cgroup", cgroups, sizeof cgroups))
        return;
    long long best_headroom = LLONG_MAX;
    for (char *line = cgroups, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* "0::/path" (cgroup v2) or "N:pids:/path" (v1; "N:a,pids,b:" too). */
        char *controllers = strchr(line, ':'), *path = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!path)
            continue;
        *path++ = '\0';
        controllers++;
        const char *base;
        if (*controllers == '\0')
            base = "sys/fs/cgroup";
        else if (strcmp(controllers, "pids") == 0 || strstr(controllers, "pids,") == controllers ||
                 strstr(controllers, ",pids"))
            base = "sys/fs/cgroup/pids";
        else
            continue;
        char dir[256];
        snprintf(dir, sizeof dir, "%s", path);
        for (;;) {
            char rel[512];
            snprintf(rel, sizeof rel, "%s%s/pids.max", base, strcmp(dir, "/") == 0 ? "" : dir);
            long long max = read_count(root, rel);
            snprintf(rel, sizeof rel, "%s%s/pids.current", base, strcmp(dir, "/") == 0 ? "" : dir);
            long long current = read_count(root, rel);
            if (max >= 0 && max != LL_LIMIT_UNLIMITED && current >= 0 && max - current < best_headroom) {
                best_headroom = max - current;
                r->pids_max = max, r->pids_current = current;
                snprintf(r->pids_cgroup, sizeof r->pids_cgroup, "%s%.200s", base, strcmp(dir, "/") == 0 ? "" : dir);
            }
            if (strcmp(dir, "/") == 0 || dir[0] != '/')
                break;
            char *slash = strrchr(dir, '/'); /* up one level: "/a/b" -> "/a" -> "/" */
            if (slash == dir)
                dir[1] = '\0';
            else
                *slash = '\0';
        }
    }
}

void ll_limits_read(const char *root, ll_limit_readings *r)
{
    *r = (ll_limit_readings){0};
    long long *counts[] = {&r->uid, &r->nproc_limit, &r->user_threads, &r->process_threads, &r->system_threads,
                           &r->threads_max, &r->pid_max, &r->pids_max, &r->pids_current, &r->maps,
                           &r->max_map_count, &r->overcommit_memory, &r->commit_limit, &r->committed_as,
                           &r->as_limit, &r->vm_size};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        *counts[i] = LL_LIMIT_UNKNOWN;

    char text[4096];
    if (read_text(root, "proc/self/status", text, sizeof text)) {
        const char *ids = field(text, "Uid");
        r->uid = ids ? parse_count(ids) : LL_LIMIT_UNKNOWN;
        r->process_threads = field_count(text, "Threads");
        r->vm_size = field_kib(text, "VmSize");
        const char *caps = field(text, "CapEff");
        unsigned long long eff = caps ? strtoull(caps, NULL, 16) : 0;
        r->nproc_exempt = r->uid == 0 || (eff >> CAP_SYS_RESOURCE_BIT & 1) || (eff >> CAP_SYS_ADMIN_BIT & 1);
    }
    if (read_text(root, "proc/self/limits", text, sizeof text)) {
        r->nproc_limit = soft_limit(text, "Max processes");
        r->as_limit = soft_limit(text, "Max address space");
    }
    if (r->uid >= 0)
        r->user_threads = threads_of_user(root, r->uid);
    if (read_text(root, "proc/loadavg", text, sizeof text)) {
        /* "0.00 0.01 0.05 RUNNING/TOTAL LASTPID": TOTAL is the kernel's nr_threads */
        const char *slash = strchr(text, '/');
        r->system_threads = slash ? parse_count(slash + 1) : LL_LIMIT_UNKNOWN;
    }
    r->threads_max = read_count(root, "proc/sys/kernel/threads-max");
    r->pid_max = read_count(root, "proc/sys/kernel/pid_max");
    read_pids_cgroup(root, r);
    r->maps = count_lines(root, "proc/self/maps");
    r->max_map_count = read_count(root, "proc/sys/vm/max_map_count");
    r->overcommit_memory = read_count(root, "proc/sys/vm/overcommit_memory");
    if (read_text(root, "proc/meminfo", text, sizeof text)) {
        r->commit_limit = field_kib(text, "CommitLimit");
        r->committed_as = field_kib(text, "Committed_AS");
    }
}

/* ---- deciding ---- */

static bool known(long long v) { return v >= 0 && v != LL_LIMIT_UNLIMITED; }

/* `used` plus what the new thread needs is within 1 % of `limit`. */
static bool at_limit(long long used, long long need, long long limit)
{
    if (!known(used) || !known(limit))
        return false;
    return used + need >= limit - limit / 100;
}

struct out {
    char *buf;
    size_t len, pos;
    int named;
};

__attribute__((format(printf, 2, 3))) static void say(struct out *o, const char *fmt, ...)
{
    if (o->pos >= o->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
    va_end(ap);
    o->pos = n < 0 ? o->len : o->pos + (size_t)n;
}

static void name_limit(struct out *o) { say(o, o->named++ ? " Also: " : "The limit hit: "); }

static void fmt_limit(char *buf, size_t len, long long v)
{
    if (v == LL_LIMIT_UNLIMITED)
        snprintf(buf, len, "unlimited");
    else if (v < 0)
        snprintf(buf, len, "?");
    else
        snprintf(buf, len, "%lld", v);
}

int ll_limits_explain(const ll_limit_readings *r, size_t stack_bytes, char *buf, size_t len)
{
    struct out o = {buf, len, 0, 0};
    if (len)
        buf[0] = '\0';
    long long stack = (long long)stack_bytes;

    if (!r->nproc_exempt && at_limit(r->user_threads, 1, r->nproc_limit)) {
        name_limit(&o);
        say(&o, "RLIMIT_NPROC (ulimit -u): uid %lld has %lld threads, its limit is %lld. Raise it (ulimit -u N; "
                "nproc in /etc/security/limits.conf) or lower the scale.",
            r->uid, r->user_threads, r->nproc_limit);
    }
    if (at_limit(r->pids_current, 1, r->pids_max)) {
        name_limit(&o);
        say(&o, "the cgroup's pids.max (/%s): %lld tasks, pids.max is %lld. Raise it (TasksMax= of the systemd "
                "unit, docker --pids-limit, or write pids.max) or lower the scale.",
            r->pids_cgroup, r->pids_current, r->pids_max);
    }
    if (at_limit(r->system_threads, 1, r->threads_max)) {
        name_limit(&o);
        say(&o, "kernel.threads-max: %lld threads on this system, threads-max is %lld. Raise it "
                "(sysctl -w kernel.threads-max=N) or lower the scale.",
            r->system_threads, r->threads_max);
    }
    if (at_limit(r->system_threads, 1 + LL_RESERVED_PIDS, r->pid_max)) {
        name_limit(&o);
        say(&o, "kernel.pid_max: %lld threads on this system, each holding a pid, and pid_max is %lld "
                "(%d of them kept back for boot-time daemons). Raise it (sysctl -w kernel.pid_max=4194304) "
                "or lower the scale.",
            r->system_threads, r->pid_max, LL_RESERVED_PIDS);
    }
    if (at_limit(r->maps, 2, r->max_map_count)) {
        name_limit(&o);
        say(&o, "vm.max_map_count: this process has %lld mappings (a thread takes two: its stack and its guard "
                "page), max_map_count is %lld. Raise it (sysctl -w vm.max_map_count=N), run with "
                "--guard-pages off (one mapping per thread), or lower the scale.",
            r->maps, r->max_map_count);
    }
    if (r->overcommit_memory == 2 && at_limit(r->committed_as, stack, r->commit_limit)) {
        name_limit(&o);
        say(&o, "memory: strict overcommit (vm.overcommit_memory=2) and Committed_AS is %lld of CommitLimit "
                "%lld bytes; a thread stack needs %lld more. Free memory, raise vm.overcommit_ratio, or lower the "
                "scale.",
            r->committed_as, r->commit_limit, stack);
    }
    if (at_limit(r->vm_size, stack, r->as_limit)) {
        name_limit(&o);
        say(&o, "RLIMIT_AS (ulimit -v): this process maps %lld bytes of its %lld; a thread stack needs %lld "
                "more. Raise it (ulimit -v) or lower the scale.",
            r->vm_size, r->as_limit, stack);
    }
    if (o.named == 0) {
        char nproc[32], tmax[32], pmax[32], maps[32];
        fmt_limit(nproc, sizeof nproc, r->nproc_limit);
        fmt_limit(tmax, sizeof tmax, r->threads_max);
        fmt_limit(pmax, sizeof pmax, r->pid_max);
        fmt_limit(maps, sizeof maps, r->max_map_count);
        say(&o, "No limit reads as exhausted now (uid %lld: %lld threads of ulimit -u %s%s; system: %lld threads "
                "of threads-max %s, pid_max %s; this process: %lld mappings of vm.max_map_count %s). Raise the "
                "limits on threads (ulimit -u, kernel.threads-max, kernel.pid_max, vm.max_map_count), free "
                "memory, or lower the scale.",
            r->uid, r->user_threads, nproc, r->nproc_exempt ? ", not enforced for this user" : "",
            r->system_threads, tmax, pmax, r->maps, maps);
    }
    return o.named;
}

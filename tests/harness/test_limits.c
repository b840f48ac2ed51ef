/* test_limits.c - the thread-refusal diagnosis (common/thread_limits.c) fed
 * fake /proc trees: each limit pthread_create() can run into is named when,
 * and only when, it is the one at its end, with its figures and its remedy.
 *
 * RLIMIT_NPROC is also provoked for real (tests/harness/test_harness.py,
 * setpriv + prlimit); pid_max, threads-max, max_map_count, a cgroup's
 * pids.max and the memory limits cannot be provoked without taking the
 * machine down with the test, so here they are fake files.
 *
 * Exit 0 when every case holds, 1 naming each one that does not. */
#include "thread_limits.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static char tmpl[] = "/tmp/leaklab-limits-XXXXXX";

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            failures++;                                                                                               \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                                                             \
            fputc('\n', stderr);                                                                                      \
        }                                                                                                             \
    } while (0)

/* ---- a fake tree ---- */

static void mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

/* Writes ROOT/rel (creating its folders) with printf-style content. */
__attribute__((format(printf, 3, 4))) static void put(const char *root, const char *rel, const char *fmt, ...)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdirs(path);
    *slash = '/';
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "test_limits: cannot write %s: %s\n", path, strerror(errno));
        exit(99);
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static int case_no;

/* A fresh tree for a machine far from every limit: 100 threads of 200,000,
 * pid_max 4,194,304, 60 mappings of 65,530, ulimit -u 10,000 for uid 1000
 * (not exempt), heuristic overcommit, no RLIMIT_AS. Cases then move one
 * reading to its limit. */
static void machine(char *root, size_t len)
{
    snprintf(root, len, "%s/case%d", tmpl, ++case_no);
    put(root, "proc/self/status", "Name:\tscenario\nUid:\t1000\t1000\t1000\t1000\nThreads:\t40\n"
                                  "VmSize:\t  102400 kB\nCapEff:\t0000000000000000\n");
    put(root, "proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max processes             10000                10000                processes \n"
        "Max address space         unlimited            unlimited            bytes     \n");
    put(root, "proc/4242/status", "Name:\tscenario\nUid:\t1000\t1000\t1000\t1000\nThreads:\t40\n");
    put(root, "proc/1/status", "Name:\tinit\nUid:\t0\t0\t0\t0\nThreads:\t1\n");
    put(root, "proc/loadavg", "0.10 0.20 0.30 2/100 4242\n");
    put(root, "proc/sys/kernel/threads-max", "200000\n");
    put(root, "proc/sys/kernel/pid_max", "4194304\n");
    put(root, "proc/sys/vm/max_map_count", "65530\n");
    put(root, "proc/sys/vm/overcommit_memory", "0\n");
    put(root, "proc/meminfo", "MemTotal:       16000000 kB\nCommitLimit:     8000000 kB\nCommitted_AS:    1000000 kB\n");
    put(root, "proc/self/cgroup", "0::/user.slice\n");
    char maps[60 * 8 + 1] = "";
    for (int i = 0; i < 60; i++)
        strcat(maps, "mapping\n");
    put(root, "proc/self/maps", "%s", maps);
}

static void maps_lines(const char *root, long n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/proc/self/maps", root);
    FILE *f = fopen(path, "w");
    for (long i = 0; f && i < n; i++)
        fputs("7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n", f);
    if (f)
        fclose(f);
}

enum { STACK = 64 * 1024 + 4096 };

static int explain(const char *root, char *out, size_t len, ll_limit_readings *r)
{
    ll_limits_read(root, r);
    return ll_limits_explain(r, STACK, out, len);
}

/* ---- cases ---- */

static void far_from_every_limit(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 0, "named %d: %s", named, out);
    CHECK(strstr(out, "No limit reads as exhausted now"), "%s", out);
    CHECK(r.uid == 1000 && r.user_threads == 40 && r.system_threads == 100 && r.maps == 60, "readings %lld %lld %lld %lld",
          r.uid, r.user_threads, r.system_threads, r.maps);
    CHECK(r.nproc_limit == 10000 && r.as_limit == LL_LIMIT_UNLIMITED && !r.nproc_exempt, "limits %lld %lld",
          r.nproc_limit, r.as_limit);
}

static void pid_max_is_named(void)
{
    /* The machine: pthread_create failed after 32,452 threads with
     * pid_max 32,768; the system then had 32,468 threads. It ran as root,
     * whom RLIMIT_NPROC does not bind. */
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/sys/kernel/pid_max", "32768\n");
    put(root, "proc/loadavg", "5.00 4.00 3.00 1/32468 99999\n");
    put(root, "proc/self/status", "Uid:\t0\t0\t0\t0\nThreads:\t32453\nCapEff:\t000001ffffffffff\n");
    put(root, "proc/4242/status", "Uid:\t0\t0\t0\t0\nThreads:\t32453\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 1, "named %d: %s", named, out);
    CHECK(strstr(out, "The limit hit: kernel.pid_max: 32468 threads on this system, each holding a pid, and "
                      "pid_max is 32768"), "%s", out);
    CHECK(strstr(out, "sysctl -w kernel.pid_max="), "no remedy: %s", out);
    CHECK(!strstr(out, "threads-max:") && !strstr(out, "RLIMIT_NPROC"), "another limit named: %s", out);
}

static void pid_max_is_not_named_with_room_left(void)
{
    /* 2,000 pids short of the end: not the limit (the 1 % margin is 328). */
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/sys/kernel/pid_max", "32768\n");
    put(root, "proc/loadavg", "5.00 4.00 3.00 1/30468 99999\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 0 && !strstr(out, "The limit hit"), "named %d: %s", named, out);
}

static void max_map_count_is_named(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    maps_lines(root, 65529);
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 1, "named %d: %s", named, out);
    CHECK(strstr(out, "The limit hit: vm.max_map_count: this process has 65529 mappings"), "%s", out);
    CHECK(strstr(out, "max_map_count is 65530") && strstr(out, "--guard-pages off"), "%s", out);
}

static void threads_max_is_named(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/loadavg", "1.00 1.00 1.00 3/199990 4242\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 1 && strstr(out, "The limit hit: kernel.threads-max: 199990 threads on this system, "
                                    "threads-max is 200000"), "named %d: %s", named, out);
}

static void rlimit_nproc_counts_every_process_of_the_user(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/self/limits", "Limit  Soft Limit  Hard Limit  Units\nMax processes             200                  200                  processes\n");
    put(root, "proc/4242/status", "Uid:\t1000\t1000\t1000\t1000\nThreads:\t150\n");
    put(root, "proc/5000/status", "Uid:\t1000\t1000\t1000\t1000\nThreads:\t50\n");
    put(root, "proc/6000/status", "Uid:\t0\t0\t0\t0\nThreads:\t5000\n");       /* root's: not counted */
    put(root, "proc/7000/status", "Uid:\t1001\t1000\t1000\t1000\nThreads:\t9\n"); /* real uid differs */
    int named = explain(root, out, sizeof out, &r);
    CHECK(r.user_threads == 200, "user threads %lld", r.user_threads);
    CHECK(named == 1 && strstr(out, "The limit hit: RLIMIT_NPROC (ulimit -u): uid 1000 has 200 threads, its limit "
                                    "is 200"), "named %d: %s", named, out);
}

static void rlimit_nproc_does_not_bind_root_or_cap_sys_resource(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/self/limits", "Max processes             20                   20                   processes\n");
    put(root, "proc/self/status", "Uid:\t1000\t1000\t1000\t1000\nThreads:\t40\nCapEff:\t0000000001000000\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(r.nproc_exempt && named == 0 && !strstr(out, "The limit hit"), "CAP_SYS_RESOURCE: named %d: %s", named, out);

    machine(root, sizeof root);
    put(root, "proc/self/limits", "Max processes             20                   20                   processes\n");
    put(root, "proc/self/status", "Uid:\t0\t0\t0\t0\nThreads:\t40\n");
    put(root, "proc/4242/status", "Uid:\t0\t0\t0\t0\nThreads:\t40\n");
    named = explain(root, out, sizeof out, &r);
    CHECK(r.nproc_exempt && named == 0, "root: named %d: %s", named, out);
    CHECK(strstr(out, "not enforced for this user"), "%s", out);
}

static void cgroup_pids_max_of_a_parent_is_named(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/self/cgroup", "0::/system.slice/ci.service\n");
    put(root, "sys/fs/cgroup/system.slice/ci.service/pids.max", "max\n");
    put(root, "sys/fs/cgroup/system.slice/ci.service/pids.current", "4000\n");
    put(root, "sys/fs/cgroup/system.slice/pids.max", "4915\n");
    put(root, "sys/fs/cgroup/system.slice/pids.current", "4915\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 1 && strstr(out, "the cgroup's pids.max (/sys/fs/cgroup/system.slice): 4915 tasks, pids.max is "
                                    "4915"), "named %d: %s", named, out);

    /* cgroup v1: the pids hierarchy has a folder of its own. */
    machine(root, sizeof root);
    put(root, "proc/self/cgroup", "8:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n");
    put(root, "sys/fs/cgroup/pids/docker/abc/pids.max", "100\n");
    put(root, "sys/fs/cgroup/pids/docker/abc/pids.current", "100\n");
    named = explain(root, out, sizeof out, &r);
    CHECK(named == 1 && strstr(out, "/sys/fs/cgroup/pids/docker/abc"), "v1: named %d: %s", named, out);
}

static void memory_limits_are_named(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/sys/vm/overcommit_memory", "2\n");
    put(root, "proc/meminfo", "CommitLimit:     8000000 kB\nCommitted_AS:    7999990 kB\n");
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 1 && strstr(out, "memory: strict overcommit (vm.overcommit_memory=2) and Committed_AS is "
                                    "8191989760 of CommitLimit 8192000000 bytes"), "named %d: %s", named, out);

    /* The same figures without strict overcommit are not a limit. */
    put(root, "proc/sys/vm/overcommit_memory", "0\n");
    named = explain(root, out, sizeof out, &r);
    CHECK(named == 0, "heuristic overcommit: named %d: %s", named, out);

    machine(root, sizeof root);
    put(root, "proc/self/limits", "Max processes             10000                10000                processes\n"
                                  "Max address space         104857600            unlimited            bytes\n");
    named = explain(root, out, sizeof out, &r);
    CHECK(named == 1 && strstr(out, "RLIMIT_AS (ulimit -v): this process maps 104857600 bytes of its 104857600"),
          "named %d: %s", named, out);
}

static void two_limits_at_once_are_both_named(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/sys/kernel/pid_max", "32768\n");
    put(root, "proc/loadavg", "5.00 4.00 3.00 1/32468 99999\n");
    maps_lines(root, 65530);
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 2 && strstr(out, "The limit hit: kernel.pid_max") && strstr(out, " Also: vm.max_map_count"),
          "named %d: %s", named, out);
}

static void an_empty_tree_reads_unknown_and_names_nothing(void)
{
    char root[256], out[2048];
    ll_limit_readings r;
    snprintf(root, sizeof root, "%s/empty", tmpl);
    mkdirs(root);
    int named = explain(root, out, sizeof out, &r);
    CHECK(named == 0 && r.pid_max == LL_LIMIT_UNKNOWN && r.maps == LL_LIMIT_UNKNOWN && r.uid == LL_LIMIT_UNKNOWN,
          "named %d pid_max %lld", named, r.pid_max);
    CHECK(strstr(out, "No limit reads as exhausted now") && strstr(out, "pid_max ?"), "%s", out);
}

static void a_short_buffer_is_cut_not_overrun(void)
{
    char root[256];
    ll_limit_readings r;
    machine(root, sizeof root);
    put(root, "proc/sys/kernel/pid_max", "32768\n");
    put(root, "proc/loadavg", "5.00 4.00 3.00 1/32468 99999\n");
    maps_lines(root, 65530);
    char out[40];
    memset(out, 'X', sizeof out);
    int named = explain(root, out, 24, &r);
    CHECK(named == 2 && strlen(out) == 23 && out[24] == 'X', "named %d, '%s'", named, out);
}

static void this_machine_reads_plausibly(void)
{
    ll_limit_readings r;
    ll_limits_read("/", &r);
    CHECK(r.pid_max > 300 && r.threads_max > 0 && r.max_map_count > 0, "pid_max %lld threads-max %lld maps %lld",
          r.pid_max, r.threads_max, r.max_map_count);
    CHECK(r.system_threads >= 1 && r.process_threads == 1 && r.maps > 1 && r.user_threads >= 1,
          "system %lld process %lld maps %lld user %lld", r.system_threads, r.process_threads, r.maps, r.user_threads);
    CHECK(r.uid == (long long)getuid(), "uid %lld", r.uid);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void)
{
    if (!mkdtemp(tmpl)) {
        perror("test_limits: mkdtemp");
        return 99;
    }
    far_from_every_limit();
    pid_max_is_named();
    pid_max_is_not_named_with_room_left();
    max_map_count_is_named();
    threads_max_is_named();
    rlimit_nproc_counts_every_process_of_the_user();
    rlimit_nproc_does_not_bind_root_or_cap_sys_resource();
    cgroup_pids_max_of_a_parent_is_named();
    memory_limits_are_named();
    two_limits_at_once_are_both_named();
    an_empty_tree_reads_unknown_and_names_nothing();
    a_short_buffer_is_cut_not_overrun();
    this_machine_reads_plausibly();
    if (nftw(tmpl, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "test_limits: could not remove %s: %s\n", tmpl, strerror(errno));
    if (failures) {
        fprintf(stderr, "test_limits: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_limits: every limit named when it is the one hit, and only then (%d cases)\n", case_no);
    return 0;
}

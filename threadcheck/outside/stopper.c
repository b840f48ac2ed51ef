/* stopper.c - find every thread of a process, read what /proc says about it,
 * stop it with ptrace without ever sending it a signal, read its registers,
 * and let it go again; and leave alone, or put back, what a stop would
 * change in the system call a thread sleeps in (see "which threads may be
 * stopped" below).
 *
 * Why PTRACE_SEIZE + PTRACE_INTERRUPT and not PTRACE_ATTACH: ATTACH stops a
 * thread by sending it SIGSTOP, a real signal. The thread reports it as a
 * signal-delivery stop, and a tracer that detaches passing that signal on
 * (as it must pass on any signal it intercepted) stops the whole process:
 * 'T' until someone sends SIGCONT. A SIGSTOP still queued when the tracer
 * goes (a thread in uninterruptible sleep has not taken it yet) does the
 * same. SEIZE attaches without stopping anything, and INTERRUPT asks for a
 * ptrace stop (PTRACE_EVENT_STOP) that is not a signal: nothing is queued,
 * nothing is left behind. (tests/threads: an ATTACH build of this file
 * leaves every thread of its target in 'T', and the tests catch it.)
 *
 * Why the target never stays stopped or traced, whatever happens to us: a
 * ptrace relation belongs to the tracing task. When it exits for any reason
 * (a normal exit, SIGINT, SIGTERM, even SIGKILL, which no code can catch),
 * the kernel's exit_ptrace() unlinks every tracee (__ptrace_unlink): it
 * clears the ptrace flags and pending trap requests and wakes every tracee
 * that sits in a ptrace stop. As no group stop was ever started (no SIGSTOP
 * was sent), the woken threads simply run on; a blocking system call they
 * were interrupted in (futex, pause) is restarted. We never set
 * PTRACE_O_EXITKILL, the option that would kill them instead. So the safety
 * net is the kernel's, and our signal handlers only have to exit.
 *
 * A thread the kernel cannot stop (uninterruptible sleep, state D) stops only
 * when it leaves that sleep; await_stops() gives up on it after
 * --stop-timeout seconds without progress, and our exit releases it. */
#include "threaddump.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PF_KTHREAD_FLAG 0x00200000u /* include/linux/sched.h: "I am a kernel thread" */
#define CAP_SYS_PTRACE_BIT 19

/* ---- small /proc readers ---- */

/* Reads a whole small file relative to dirfd into buf (NUL-terminated).
 * Returns the length, or -1 with errno set. */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t len)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off + 1 < len) {
        ssize_t n = read(fd, buf + off, len - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    buf[off] = '\0';
    return (ssize_t)off;
}

/* "Key:\tvalue" from a status file; the value's first number, or -1. */
static long long status_field(const char *status, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = status; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, klen) == 0 && p[klen] == ':')
            return strtoll(p + klen + 1, NULL, 10);
    return -1;
}

/* Splits "/proc/.../stat" into the comm (in parentheses; it may hold spaces
 * and parentheses itself) and the fields after it. Returns the text after
 * ") " or NULL. */
static const char *stat_fields(const char *stat, char *comm, size_t comm_len)
{
    const char *open = strchr(stat, '('), *close = strrchr(stat, ')');
    if (!open || !close || close < open || close[1] == '\0')
        return NULL;
    size_t n = (size_t)(close - open - 1);
    if (comm) {
        if (n >= comm_len)
            n = comm_len - 1;
        memcpy(comm, open + 1, n);
        comm[n] = '\0';
    }
    return close + 2;
}

/* The syscalls a blocked thread is usually found in, by number, so the dump
 * says "futex" rather than "202" (the in-process census prints the same
 * names). Anything else is printed as its number. */
static const struct { long nr; const char *name; } syscall_names[] = {
    {SYS_futex, "futex"},       {SYS_read, "read"},          {SYS_write, "write"},
    {SYS_recvfrom, "recvfrom"}, {SYS_sendto, "sendto"},      {SYS_recvmsg, "recvmsg"},
    {SYS_sendmsg, "sendmsg"},   {SYS_accept, "accept"},      {SYS_accept4, "accept4"},
    {SYS_connect, "connect"},   {SYS_ppoll, "ppoll"},        {SYS_pselect6, "pselect6"},
    {SYS_epoll_pwait, "epoll_pwait"}, {SYS_nanosleep, "nanosleep"},
    {SYS_clock_nanosleep, "clock_nanosleep"}, {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
    {SYS_rt_sigsuspend, "rt_sigsuspend"}, {SYS_wait4, "wait4"}, {SYS_waitid, "waitid"},
    {SYS_ioctl, "ioctl"},       {SYS_openat, "openat"},      {SYS_flock, "flock"},
    {SYS_fcntl, "fcntl"},       {SYS_io_getevents, "io_getevents"},
#ifdef SYS_poll
    {SYS_poll, "poll"},
#endif
#ifdef SYS_select
    {SYS_select, "select"},
#endif
#ifdef SYS_pause
    {SYS_pause, "pause"},
#endif
#ifdef SYS_epoll_wait
    {SYS_epoll_wait, "epoll_wait"},
#endif
#ifdef SYS_io_uring_enter
    {SYS_io_uring_enter, "io_uring_enter"},
#endif
#ifdef SYS_futex_waitv
    {SYS_futex_waitv, "futex_waitv"},
#endif
};

/* /proc/.../syscall is "running", "-1 SP PC" (blocked, not in a system
 * call) or "NR ARG1 ... ARG6 SP PC". The futex word is ARG1. */
static void parse_syscall(struct thread *th, const char *raw)
{
    th->has_wait_address = false;
    th->nr = -2;
    snprintf(th->syscall_line, sizeof th->syscall_line, "%s", raw);
    if (raw[0] == '\0') {
        snprintf(th->syscall, sizeof th->syscall, "?");
        return;
    }
    if (strncmp(raw, "running", 7) == 0) {
        snprintf(th->syscall, sizeof th->syscall, "running");
        return;
    }
    char *end;
    long nr = strtol(raw, &end, 10);
    if (nr < 0) {
        th->nr = -1;
        snprintf(th->syscall, sizeof th->syscall, "none");
        return;
    }
    uint64_t words[8];
    int n = 0;
    for (char *p = end; n < 8; p = end) {
        words[n] = strtoull(p, &end, 16);
        if (end == p)
            break;
        n++;
    }
    if (n == 8) {
        th->nr = nr;
        memcpy(th->args, words, sizeof th->args);
        th->sp = words[6];
        th->pc = words[7];
    }
    snprintf(th->syscall, sizeof th->syscall, "%ld", nr);
    for (size_t i = 0; i < sizeof syscall_names / sizeof syscall_names[0]; i++)
        if (syscall_names[i].nr == nr)
            snprintf(th->syscall, sizeof th->syscall, "%s", syscall_names[i].name);
    bool futex = nr == SYS_futex;
#ifdef SYS_futex_waitv
    futex = futex || nr == SYS_futex_waitv;
#endif
    if (futex && n >= 1) {
        th->wait_address = words[0];
        th->has_wait_address = true;
    }
}

/* ---- which threads may be stopped ----
 *
 * A ptrace stop wakes a thread that sleeps in a system call as a signal
 * would (the kernel sets TIF_SIGPENDING), and each call answers that in its
 * own way. Most hand back -ERESTART* codes, and a thread that resumes with
 * no handler to run restarts them where they were: read on a pipe, futex
 * waits, poll and nanosleep (through restart_syscall, with the time that was
 * left), wait4, pause. Measured on every case of tests/threads/test_syscalls.py.
 * Two kinds show:
 *   - calls that end with a plain EINTR (epoll_wait, sigtimedwait, semop,
 *     io_getevents, a socket call with SO_RCVTIMEO...): nothing was done yet,
 *     so after our stop the thread's EINTR is turned back into what the kernel
 *     itself returns for a restartable call (restart_interrupted_call below);
 *   - calls that have moved data before they slept (a write of 1 MiB into a
 *     pipe holding 64 KiB, a MSG_WAITALL receive): woken, they return the
 *     short count, which no register can take back. Those threads are not
 *     stopped at all: seize_new_threads leaves them alone and the unwinder
 *     reads their stack from the stack pointer and pc /proc shows (the user
 *     registers of a thread asleep in the kernel do not change). */

/* Why a stop would show in th's call (a static string), or NULL. */
static const char *stop_would_show(const struct thread *th)
{
    if (th->nr < 0 || (th->state != 'S' && th->state != 'D'))
        return NULL;
    switch (th->nr) {
    case SYS_write:
    case SYS_writev:
    case SYS_pwrite64:
    case SYS_pwritev:
#ifdef SYS_pwritev2
    case SYS_pwritev2:
#endif
    case SYS_sendto:
    case SYS_sendmsg:
#ifdef SYS_sendmmsg
    case SYS_sendmmsg:
#endif
#ifdef SYS_sendfile
    case SYS_sendfile:
#endif
    case SYS_splice:
    case SYS_tee:
    case SYS_vmsplice:
#ifdef SYS_copy_file_range
    case SYS_copy_file_range:
#endif
        return "not stopped: a stop would end its transfer early, with a short count";
    case SYS_recvfrom: /* MSG_WAITALL: the fourth argument's flags */
        return th->args[3] & MSG_WAITALL ? "not stopped: a stop would end its MSG_WAITALL receive short" : NULL;
    case SYS_recvmsg:
        return th->args[2] & MSG_WAITALL ? "not stopped: a stop would end its MSG_WAITALL receive short" : NULL;
#ifdef SYS_recvmmsg
    case SYS_recvmmsg:
        return "not stopped: a stop would end its recvmmsg with fewer messages";
#endif
    case SYS_connect: /* an interrupted connect goes on in the background: EINTR, then EALREADY */
        return "not stopped: a stop would end its connect with EINTR";
    default:
        return NULL;
    }
}

/* The calls that end with a plain EINTR when a stop wakes them, having done
 * nothing: after our stop they may be restarted as the kernel restarts its
 * own -ERESTARTNOHAND calls (identical arguments; a relative timeout starts
 * again). x86_64 only: elsewhere the EINTR stays (docs/threads.md). */
#if defined(__x86_64__)
static bool restartable_after_eintr(long nr)
{
    switch (nr) {
    case SYS_epoll_pwait:
#ifdef SYS_epoll_wait
    case SYS_epoll_wait:
#endif
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
    case SYS_rt_sigtimedwait:
    case SYS_semtimedop:
#ifdef SYS_semop
    case SYS_semop:
#endif
    case SYS_io_getevents:
#ifdef SYS_io_pgetevents
    case SYS_io_pgetevents:
#endif
    case SYS_read: /* with SO_RCVTIMEO, or an inotify descriptor: EINTR before any byte */
    case SYS_readv:
    case SYS_recvfrom:
    case SYS_recvmsg:
    case SYS_accept:
    case SYS_accept4:
    case SYS_msgrcv:
    case SYS_msgsnd:
    case SYS_mq_timedreceive:
    case SYS_mq_timedsend:
        return true;
    default:
        return false;
    }
}
#endif

/* State, wchan and system call as the thread shows them before we touch it.
 * A thread that vanished meanwhile is marked gone. */
static void read_thread_proc(struct target *t, struct thread *th)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "%d/stat", th->tid);
    if (read_small(t->task_dir, path, buf, sizeof buf) <= 0) {
        th->fate = FATE_GONE;
        snprintf(th->error, sizeof th->error, "exited before it could be read");
        return;
    }
    const char *rest = stat_fields(buf, th->name, sizeof th->name);
    th->state = rest ? rest[0] : '?';

    snprintf(path, sizeof path, "%d/wchan", th->tid);
    if (read_small(t->task_dir, path, th->wchan, sizeof th->wchan) <= 0 || strcmp(th->wchan, "0") == 0)
        snprintf(th->wchan, sizeof th->wchan, "-");
    th->wchan[strcspn(th->wchan, "\n")] = '\0';

    snprintf(path, sizeof path, "%d/syscall", th->tid);
    if (read_small(t->task_dir, path, buf, sizeof buf) < 0)
        buf[0] = '\0';
    parse_syscall(th, buf);
}

/* ---- opening the target ---- */

int target_open(struct target *t, pid_t pid)
{
    *t = (struct target){.pid = pid, .task_dir = -1, .mem_fd = -1};
    char path[64], status[4096], stat[1024];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_small(AT_FDCWD, path, status, sizeof status) <= 0) {
        fprintf(stderr, "threaddump: no process %d (%s does not exist)\n", pid, path);
        return TD_EXIT_USAGE;
    }
    long long tgid = status_field(status, "Tgid");
    if (tgid > 0 && tgid != pid) {
        fprintf(stderr, "threaddump: %d is a thread of process %lld, not a process; pass %lld to dump them all\n",
                pid, tgid, tgid);
        return TD_EXIT_USAGE;
    }
    if (pid == getpid()) {
        fprintf(stderr, "threaddump: %d is threaddump itself; a process cannot trace itself\n", pid);
        return TD_EXIT_USAGE;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (read_small(AT_FDCWD, path, stat, sizeof stat) <= 0) {
        fprintf(stderr, "threaddump: no process %d (it exited)\n", pid);
        return TD_EXIT_USAGE;
    }
    const char *rest = stat_fields(stat, t->comm, sizeof t->comm);
    if (rest) {
        /* Fields after comm: state ppid pgrp session tty_nr tpgid flags. */
        char state = rest[0];
        unsigned long flags = 0;
        sscanf(rest, "%*c %*d %*d %*d %*d %*d %lu", &flags);
        if (flags & PF_KTHREAD_FLAG) {
            fprintf(stderr, "threaddump: %d (%s) is a kernel thread: it has no user-space stack to dump\n",
                    pid, t->comm);
            return TD_EXIT_USAGE;
        }
        if ((state == 'Z' || state == 'X') && status_field(status, "Threads") <= 1) {
            fprintf(stderr, "threaddump: process %d (%s) has exited (a zombie waiting for its parent to "
                            "reap it); nothing runs there any more\n", pid, t->comm);
            return TD_EXIT_USAGE;
        }
    }
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, t->exe, sizeof t->exe - 1);
    t->exe[n > 0 ? n : 0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    t->task_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->task_dir < 0) {
        fprintf(stderr, "threaddump: cannot open %s: %s\n", path, strerror(errno));
        return errno == ENOENT ? TD_EXIT_USAGE : TD_EXIT_SYSTEM;
    }
    return TD_EXIT_OK;
}

bool target_gone(const struct target *t)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", t->pid);
    if (read_small(AT_FDCWD, path, stat, sizeof stat) <= 0)
        return true;
    const char *rest = stat_fields(stat, NULL, 0);
    return rest && (rest[0] == 'Z' || rest[0] == 'X');
}

/* ---- the permission probe ---- */

static bool have_cap_sys_ptrace(void)
{
    char status[4096];
    if (read_small(AT_FDCWD, "/proc/self/status", status, sizeof status) <= 0)
        return geteuid() == 0;
    const char *p = strstr(status, "\nCapEff:");
    if (!p)
        return geteuid() == 0;
    unsigned long long caps = strtoull(p + 8, NULL, 16);
    return (caps >> CAP_SYS_PTRACE_BIT) & 1;
}

/* Why PTRACE_SEIZE said EPERM, and what to do about it, most specific
 * cause first. */
static void explain_refusal(const struct target *t)
{
    char path[64], status[4096], tracer_comm[64] = "?";
    snprintf(path, sizeof path, "/proc/%d/status", t->pid);
    if (read_small(AT_FDCWD, path, status, sizeof status) <= 0)
        status[0] = '\0';
    long long tracer = status_field(status, "TracerPid");
    if (tracer > 0) {
        snprintf(path, sizeof path, "/proc/%lld/comm", tracer);
        if (read_small(AT_FDCWD, path, tracer_comm, sizeof tracer_comm) > 0)
            tracer_comm[strcspn(tracer_comm, "\n")] = '\0';
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): it is already traced by process %lld (%s), and a "
                "thread can have only one tracer. Remedy: detach that tracer (quit gdb, stop strace) and run "
                "again.\n", t->pid, t->comm, tracer, tracer_comm);
        return;
    }
    char scope_text[16] = "";
    int scope = -1;
    if (read_small(AT_FDCWD, "/proc/sys/kernel/yama/ptrace_scope", scope_text, sizeof scope_text) > 0)
        scope = atoi(scope_text);
    bool cap = have_cap_sys_ptrace();
    long long uid = status_field(status, "Uid");
    if (scope == 3) {
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): kernel.yama.ptrace_scope is 3, which forbids "
                "ptrace for everyone until the next boot. Remedy: none at run time; boot with a lower "
                "kernel.yama.ptrace_scope.\n", t->pid, t->comm);
    } else if (scope == 2 && !cap) {
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): kernel.yama.ptrace_scope is 2, which lets only "
                "root (CAP_SYS_PTRACE) trace. Remedy: run as root (sudo ./leaklab threads %d).\n",
                t->pid, t->comm, t->pid);
    } else if (uid >= 0 && (uid_t)uid != geteuid() && !cap) {
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): it runs as uid %lld and you are uid %u; only its "
                "owner or root may trace it. Remedy: run as uid %lld, or as root (sudo).\n",
                t->pid, t->comm, uid, (unsigned)geteuid(), uid);
    } else if (scope == 1 && !cap) {
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): kernel.yama.ptrace_scope is 1, which lets a "
                "process trace only its own descendants. Remedy: run as root (sudo ./leaklab threads %d), "
                "or allow it for everyone: sudo sysctl kernel.yama.ptrace_scope=0.\n",
                t->pid, t->comm, t->pid);
    } else {
        fprintf(stderr,
                "threaddump: cannot trace process %d (%s): the kernel refused (EPERM). Likely causes: the "
                "program is not dumpable (setuid or file capabilities, or prctl(PR_SET_DUMPABLE, 0)); a "
                "security module (SELinux, AppArmor) forbids ptrace; a container without CAP_SYS_PTRACE%s. "
                "Remedy: run as root with CAP_SYS_PTRACE (e.g. docker run --cap-add=SYS_PTRACE).\n",
                t->pid, t->comm, cap ? "" : " (you do not have CAP_SYS_PTRACE)");
    }
}

static struct thread *add_thread(struct target *t, pid_t tid)
{
    if (t->nthreads == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        struct thread *more = realloc(t->threads, cap * sizeof *more);
        if (!more)
            return NULL;
        t->threads = more;
        t->cap = cap;
    }
    struct thread *th = &t->threads[t->nthreads++];
    *th = (struct thread){.tid = tid, .fate = FATE_LISTED, .state = '?', .nr = -2};
    return th;
}

/* Seize without stopping; then the memory file can be opened. */
static int seize(struct target *t, struct thread *th)
{
    if (ptrace(PTRACE_SEIZE, th->tid, NULL, NULL) != 0)
        return errno;
    th->fate = FATE_SEIZED;
    t->seized_any = true;
    if (t->mem_fd < 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/mem", t->pid);
        t->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    return 0;
}

int target_probe(struct target *t)
{
    /* The leader first; if it is a zombie (main called pthread_exit), any
     * other thread serves as the probe. */
    struct thread *leader = add_thread(t, t->pid);
    if (!leader) {
        fprintf(stderr, "threaddump: out of memory\n");
        return TD_EXIT_SYSTEM;
    }
    read_thread_proc(t, leader);
    if (leader->fate == FATE_GONE || leader->state == 'Z' || leader->state == 'X') {
        if (target_gone(t)) {
            fprintf(stderr, "threaddump: process %d exited before it could be traced\n", t->pid);
            return TD_EXIT_USAGE;
        }
        leader->fate = FATE_GONE;
        snprintf(leader->error, sizeof leader->error, "the main thread has exited (zombie)");
        return TD_EXIT_OK; /* seize_new_threads() probes with the next one */
    }
    int err = seize(t, leader);
    if (err == EPERM) {
        explain_refusal(t);
        return TD_EXIT_SYSTEM;
    }
    if (err == ESRCH) {
        fprintf(stderr, "threaddump: process %d exited before it could be traced\n", t->pid);
        return TD_EXIT_USAGE;
    }
    if (err) {
        fprintf(stderr, "threaddump: PTRACE_SEIZE of %d failed: %s\n", t->pid, strerror(err));
        return TD_EXIT_SYSTEM;
    }
    return TD_EXIT_OK;
}

static void interrupt(struct target *t, struct thread *th)
{
    if (t->first_interrupt_s == 0)
        t->first_interrupt_s = now_s();
    th->interrupted = true;
    if (ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL) != 0) {
        /* ESRCH: it exited between SEIZE and INTERRUPT; reap it if it is ours. */
        int status;
        waitpid(th->tid, &status, __WALL | WNOHANG);
        th->fate = FATE_GONE;
        snprintf(th->error, sizeof th->error, "exited before it could be stopped");
    }
}

size_t seize_new_threads(struct target *t)
{
    int fd = dup(t->task_dir);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        t->exited = true;
        return 0;
    }
    rewinddir(d);
    /* First the listing, so that the reads below do not race the directory
     * stream; tids are collected, then each is handled. */
    pid_t *tids = NULL;
    size_t ntids = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        if (ntids == cap) {
            cap = cap ? 2 * cap : 1024;
            pid_t *more = realloc(tids, cap * sizeof *more);
            if (!more)
                break;
            tids = more;
        }
        tids[ntids++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);

    /* A tid seen before is found with one lookup: the known threads'
     * indexes in a small open-addressing table keyed by tid. */
    size_t slots = 1;
    while (slots < 2 * (t->nthreads + 1))
        slots <<= 1;
    uint32_t *known = calloc(slots, sizeof *known); /* index + 1; 0 is empty */
    if (!known) {
        free(tids);
        return 0;
    }
    for (size_t i = 0; i < t->nthreads; i++) {
        size_t h = ((size_t)t->threads[i].tid * 2654435761u) & (slots - 1);
        while (known[h])
            h = (h + 1) & (slots - 1);
        known[h] = (uint32_t)i + 1;
    }

    /* Two passes over the new threads: first every /proc read (nothing is
     * held yet, so the threads' own state is what we read), then seize and
     * interrupt in a tight loop, so that the first thread interrupted waits
     * for the last one only as long as the ptrace calls take. */
    size_t first_new = t->nthreads;
    size_t found = 0;
    for (size_t i = 0; i < ntids; i++) {
        pid_t tid = tids[i];
        struct thread *th = NULL;
        for (size_t h = ((size_t)tid * 2654435761u) & (slots - 1); known[h]; h = (h + 1) & (slots - 1))
            if (t->threads[known[h] - 1].tid == tid) {
                th = &t->threads[known[h] - 1];
                break;
            }
        if (th)
            continue; /* known (the probe's leader is interrupted below) */
        th = add_thread(t, tid); /* may move t->threads: no pointer is kept across it */
        if (!th)
            break;
        found++;
        read_thread_proc(t, th);
    }
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        if (i < first_new) { /* the probe seized the leader without stopping it */
            if (th->fate == FATE_SEIZED && !th->interrupted) {
                if ((th->hands_off = stop_would_show(th))) {
                    th->fate = FATE_UNSTOPPED; /* stays seized, never stopped, until we exit */
                    snprintf(th->error, sizeof th->error, "%s", th->hands_off);
                }
                else
                    interrupt(t, th);
            }
            continue;
        }
        if (th->fate == FATE_GONE)
            continue;
        if ((th->hands_off = stop_would_show(th))) {
            th->fate = FATE_UNSTOPPED; /* not even seized: nothing of ours touches it */
            snprintf(th->error, sizeof th->error, "%s", th->hands_off);
            continue;
        }
        int err = seize(t, th);
        if (err == 0) {
            interrupt(t, th);
        } else if (err == ESRCH || th->state == 'Z' || th->state == 'X') {
            th->fate = FATE_GONE;
            snprintf(th->error, sizeof th->error, "exited before it could be traced");
        } else if (err == EPERM && !t->seized_any) {
            /* The probe: the leader was a zombie, this is the first live thread. */
            th->fate = FATE_REFUSED;
            explain_refusal(t);
            t->refused = true;
            break;
        } else {
            th->fate = FATE_REFUSED;
            snprintf(th->error, sizeof th->error, "PTRACE_SEIZE refused: %s", strerror(err));
        }
    }
    free(known);
    free(tids);
    return found;
}

/* ---- waiting for the stops ---- */

static volatile sig_atomic_t wait_expired;

static void on_wait_alarm(int sig)
{
    (void)sig;
    wait_expired = 1;
}

/* Records what waitpid said about th. */
static void note_status(struct thread *th, int status)
{
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        th->fate = FATE_GONE;
        snprintf(th->error, sizeof th->error, "exited during the dump");
        return;
    }
    if (!WIFSTOPPED(status))
        return;
    th->fate = FATE_STOPPED;
    int event = status >> 16, sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_STOP) {
        /* SIGTRAP: our interrupt. A stop signal: the process was (being)
         * job-control stopped; detaching leaves it so, as we found it. */
        th->stop_kind = sig == SIGTRAP ? STOP_INTERRUPT : STOP_GROUP;
        th->stop_signal = 0;
    } else {
        /* A signal arrived before our interrupt: the thread sits in a
         * signal-delivery stop. It is delivered when we detach. */
        th->stop_kind = STOP_SIGNAL;
        th->stop_signal = sig;
    }
}

/* Waits for one thread until it reports or the deadline (absolute, in
 * now_s() seconds) passes. Returns true if it reported. */
static bool wait_one(struct thread *th, double deadline)
{
    for (;;) {
        int status;
        pid_t r = waitpid(th->tid, &status, __WALL | WNOHANG);
        if (r == th->tid) {
            note_status(th, status);
            return true;
        }
        if (r < 0 && errno == ECHILD) {
            th->fate = FATE_GONE; /* not our tracee any more: it exited and was reaped */
            snprintf(th->error, sizeof th->error, "exited during the dump");
            return true;
        }
        if (r < 0 && errno != EINTR)
            return false;
        double left = deadline - now_s();
        if (left <= 0)
            return false;
        /* Block in waitpid until it reports; the timer's signal (installed
         * without SA_RESTART) interrupts the wait at the deadline. */
        wait_expired = 0;
        struct itimerval timer = {.it_value = {.tv_sec = (time_t)left,
                                               .tv_usec = (suseconds_t)((left - (double)(time_t)left) * 1e6) + 1}};
        setitimer(ITIMER_REAL, &timer, NULL);
        r = waitpid(th->tid, &status, __WALL);
        struct itimerval off = {0};
        setitimer(ITIMER_REAL, &off, NULL);
        if (r == th->tid) {
            note_status(th, status);
            return true;
        }
        if (r < 0 && errno == ECHILD) {
            th->fate = FATE_GONE;
            snprintf(th->error, sizeof th->error, "exited during the dump");
            return true;
        }
        if (wait_expired)
            return false;
    }
}

void await_stops(struct target *t, double stop_timeout_s)
{
    struct sigaction sa = {.sa_handler = on_wait_alarm}; /* no SA_RESTART: waitpid returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    /* Threads were interrupted in this order, so they mostly report in it:
     * waiting for one specific thread (waitpid on its tid) is a direct
     * lookup in the kernel, where waitpid(-1) would scan every tracee. */
    double deadline = now_s() + stop_timeout_s;
    bool stalled = false;
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        if (th->fate != FATE_SEIZED)
            continue;
        if (stalled) { /* after a stall: collect who is ready, wait for nobody */
            int status;
            pid_t r = waitpid(th->tid, &status, __WALL | WNOHANG);
            if (r == th->tid)
                note_status(th, status);
        } else if (wait_one(th, deadline)) {
            deadline = now_s() + stop_timeout_s; /* progress: the clock restarts */
        } else {
            stalled = true;
        }
        if (th->fate == FATE_SEIZED) {
            th->fate = FATE_LATE;
            snprintf(th->error, sizeof th->error,
                     "did not stop within %.3g s (state %c%s); not unwound", stop_timeout_s, th->state,
                     th->state == 'D' ? ": uninterruptible sleep, the kernel stops it only when it wakes" : "");
        }
    }
}

/* ---- registers ---- */

/* A call our stop ended with EINTR, set back to restart. The stop is taken
 * in get_signal() on the way out of the call, before the kernel decides
 * whether to restart it: orig_rax still holds the call's number and rax its
 * result. Writing -ERESTARTNOHAND there hands the decision back to the
 * kernel: with no handler to run (our stop ran none) it re-executes the
 * call, and if a real signal arrived meanwhile its handler runs and the call
 * returns EINTR, exactly as without us. Only for a thread we interrupted
 * (not one in a signal-delivery stop), seen in that call before the stop.
 * Done as soon as the registers are read, not at the detach: if threaddump
 * is killed in between, the kernel's release finds the call set to restart. */
static void restart_interrupted_call(struct thread *th)
{
#if defined(__x86_64__)
    enum { ERESTARTNOHAND_ = 514 }; /* include/linux/errno.h: kernel-internal */
    struct user_regs_struct *r = &th->regs;
    if (!th->have_regs || th->stop_kind != STOP_INTERRUPT || th->nr < 0 || !restartable_after_eintr(th->nr) ||
        (long long)r->orig_rax != th->nr || (long long)r->rax != -EINTR)
        return;
    struct user_regs_struct changed = *r;
    changed.rax = (unsigned long long)-ERESTARTNOHAND_;
    struct iovec iov = {&changed, sizeof changed};
    if (ptrace(PTRACE_SETREGSET, th->tid, (void *)NT_PRSTATUS, &iov) == 0)
        th->restarted = true;
#else
    (void)th;
#endif
}


void read_registers(struct target *t)
{
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        if (th->fate != FATE_STOPPED)
            continue;
        struct iovec iov = {&th->regs, sizeof th->regs};
        if (ptrace(PTRACE_GETREGSET, th->tid, (void *)NT_PRSTATUS, &iov) == 0) {
            th->have_regs = true;
            restart_interrupted_call(th);
        } else if (errno == ESRCH) {
            th->fate = FATE_GONE; /* killed while stopped */
            snprintf(th->error, sizeof th->error, "exited during the dump");
        } else {
            snprintf(th->error, sizeof th->error, "PTRACE_GETREGSET failed: %s", strerror(errno));
        }
    }
}

/* ---- letting go ---- */

size_t detach_all(struct target *t)
{
    size_t detached = 0;
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        if (th->fate == FATE_STOPPED) {
            if (ptrace(PTRACE_DETACH, th->tid, NULL, (void *)(uintptr_t)th->stop_signal) == 0)
                detached++;
            th->fate = FATE_DETACHED;
        }
    }
    /* A late thread that stopped meanwhile is detached too; one still
     * running (or asleep in D) cannot be detached by PTRACE_DETACH, which
     * needs a stopped tracee: our exit releases it (see the top). */
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        int status;
        if (th->fate == FATE_LATE && waitpid(th->tid, &status, __WALL | WNOHANG) == th->tid && WIFSTOPPED(status))
            ptrace(PTRACE_DETACH, th->tid, NULL,
                   (void *)(uintptr_t)((status >> 16) == 0 ? WSTOPSIG(status) : 0));
    }
    return detached;
}

/* ---- the threads left running ---- */

size_t recheck_unstopped(struct target *t)
{
    size_t kept = 0;
    for (size_t i = 0; i < t->nthreads; i++) {
        struct thread *th = &t->threads[i];
        if (th->fate != FATE_UNSTOPPED)
            continue;
        char path[64], now[sizeof th->syscall_line];
        snprintf(path, sizeof path, "%d/syscall", th->tid);
        if (read_small(t->task_dir, path, now, sizeof now) < 0)
            now[0] = '\0';
        if (th->depth > 0 && strcmp(now, th->syscall_line) != 0) {
            /* It left its call while we read its stack: what we read may mix
             * two moments. Nothing is better than a torn stack. */
            free(th->stack);
            th->stack = NULL;
            th->depth = 0;
            snprintf(th->error, sizeof th->error, "%s; it woke while its stack was read, so no stack",
                     th->hands_off);
        } else if (th->depth > 0) {
            kept++;
        }
    }
    return kept;
}

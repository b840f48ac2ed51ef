/* threaddump.h - what the three parts of threaddump share: the target and
 * its threads (stopper.c fills them from /proc and ptrace), the location
 * table (unwinder.c fills it with elfutils libdw), and the exit codes.
 * Internal to threaddump; not an installed header. */
#ifndef THREADDUMP_H
#define THREADDUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "monotonic.h"

/* DESIGN.md's exit codes. */
enum { TD_EXIT_OK = 0, TD_EXIT_USAGE = 2, TD_EXIT_SYSTEM = 99 };

/* Where a thread is in the dump. A thread only moves forward. */
enum fate {
    FATE_LISTED,      /* seen in /proc/PID/task, its /proc files read, not traced yet */
    FATE_SEIZED,      /* PTRACE_SEIZE + PTRACE_INTERRUPT sent; its stop not seen yet */
    FATE_STOPPED,     /* in a ptrace stop: registers and stack can be read */
    FATE_DETACHED,    /* was stopped, has been detached: running again */
    FATE_LATE,        /* did not stop within --stop-timeout (e.g. uninterruptible sleep) */
    FATE_GONE,        /* exited before it could be stopped, or while stopped */
    FATE_REFUSED,     /* PTRACE_SEIZE refused for this thread alone */
    FATE_UNSTOPPED,   /* left running on purpose: a stop would show in its system call
                       * (see stop_would_show in stopper.c); unwound from /proc's view */
};

struct thread {
    pid_t tid;
    enum fate fate;
    char name[64];       /* /proc/.../stat's comm */
    char state;          /* R, S, D, T, t, Z ... read before we stopped it */
    char wchan[64];      /* kernel function it sleeps in, "-" if none */
    char syscall[24];    /* "futex", "read", a number, "running", "none", "?" */
    long nr;             /* system call number from /proc, -1 none, -2 running or unknown */
    uint64_t args[6], sp, pc; /* its arguments, stack pointer and pc, from /proc (nr >= 0) */
    char syscall_line[224]; /* /proc/.../syscall as read: an unstopped thread must still show it after */
    const char *hands_off; /* why it is not stopped (FATE_UNSTOPPED), else NULL */
    bool restarted;      /* its call returned EINTR at our stop and was set to restart */
    bool has_wait_address;
    uint64_t wait_address; /* futex word (first argument of the futex call) */
    bool interrupted;    /* PTRACE_INTERRUPT sent */
    int stop_kind;       /* STOP_* below, once stopped */
    int stop_signal;     /* the signal of a signal-delivery stop, re-injected on detach */
    bool have_regs;
    struct user_regs_struct regs;
    uint32_t *stack;     /* indexes into the location table, innermost first */
    uint32_t depth;
    char error[160];     /* why the stack is missing or short, "" if it is not */
};

enum { STOP_NONE, STOP_INTERRUPT, STOP_SIGNAL, STOP_GROUP };

struct frame {
    char *function;      /* source name: DWARF name, else the ELF symbol without GCC's .isra/.constprop suffixes */
    char *symbol;        /* the ELF symbol, as linked (NULL if none) */
    uint64_t offset;     /* address - symbol start (physical frame only) */
    char *file;          /* NULL without line information */
    int line;
    bool inlined;        /* an inlined call inside the next frame out */
};

struct location {
    uint64_t pc;
    bool activation;     /* the PC of a frame that was interrupted, not a return address */
    int module;          /* index into modules, -1 if the PC is in no known module */
    struct frame *frames; /* innermost first: inlined calls, then the physical function */
    uint32_t nframes;
};

struct module {
    char *name;          /* path as mapped, or "[vdso: PID]" */
    uint64_t start, end;
    char build_id[2 * 64 + 1];
};

struct target {
    pid_t pid;
    int task_dir;        /* O_DIRECTORY fd of /proc/PID/task */
    int mem_fd;          /* /proc/PID/mem, -1 until the first thread is seized */
    char comm[64];
    char exe[4096];
    struct thread *threads;
    size_t nthreads, cap;
    bool exited;         /* the process went away during the dump */
    bool seized_any;     /* at least one thread was seized: permission is not the problem */
    bool refused;        /* PTRACE_SEIZE said EPERM to the first thread tried (explained on stderr) */
    double first_interrupt_s; /* now_s() of the first PTRACE_INTERRUPT: from then on threads are held */
    /* filled by the unwinder */
    struct location *locations;
    size_t nlocations;
    struct module *modules;
    size_t nmodules;
};

/* ---- stopper.c: /proc and ptrace ---- */

/* Validates PID (exists, is a process and not one of its threads, not a
 * kernel thread, not us) and opens /proc/PID/task. On failure prints the
 * reason on stderr and returns the exit code (2); 0 on success. */
int target_open(struct target *t, pid_t pid);

/* The permission probe: seizes one thread (no stop). On EPERM prints the
 * cause and the remedy and returns 99; if the process is gone returns 2. */
int target_probe(struct target *t);

/* Lists /proc/PID/task, reads the new threads' /proc files and seizes and
 * interrupts each. Returns how many new threads it found. Sets t->refused
 * (with the cause on stderr) when the first thread tried cannot be traced. */
size_t seize_new_threads(struct target *t);

/* Waits for every seized thread to stop (or exit); gives up on the rest
 * once no thread has stopped for stop_timeout_s. */
void await_stops(struct target *t, double stop_timeout_s);

/* PTRACE_GETREGSET for every stopped thread; a call our stop ended with
 * EINTR is set to restart (see restart_interrupted_call in stopper.c). */
void read_registers(struct target *t);

/* PTRACE_DETACH every stopped thread (re-injecting a signal it was stopped
 * with), then reaps late stoppers. Returns how many threads were detached. */
size_t detach_all(struct target *t);

/* After unwinding: an unstopped thread whose /proc/.../syscall changed
 * meanwhile woke up under the reader; its stack is dropped as torn. Returns
 * how many unstopped threads kept their stack. */
size_t recheck_unstopped(struct target *t);

/* True when /proc/PID no longer names a live process. */
bool target_gone(const struct target *t);

/* ---- unwinder.c: elfutils libdw ---- */

struct unwinder;

/* Reports the modules of PID and loads their call-frame information while
 * nothing is stopped yet. NULL (with a message on stderr) on failure. */
struct unwinder *unwinder_new(struct target *t);

/* Unwinds every stopped thread that has registers, at most max_frames
 * deep, filling each thread's stack with location indexes. */
void unwind_all(struct unwinder *u, int max_frames);

/* Names every location once (function, file:line, inlined calls) and
 * fills t->modules. Runs after detach: no thread needs to be stopped. */
void symbolize_all(struct unwinder *u);

void unwinder_free(struct unwinder *u);

#endif

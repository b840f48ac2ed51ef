/* unwind_proc.c - the stack of a thread that must not be signalled (it
 * sleeps in a system call a handler would end early, or blocks the capture
 * signal), read without signalling or stopping it.
 *
 * A thread asleep in a system call has its user registers saved in the
 * kernel, unchanged until it returns, and /proc/self/task/TID/syscall shows
 * the stack pointer, the pc and the call's arguments (the argument
 * registers). elfutils' libdw unwinds from those (call-frame information
 * needs the stack pointer for nearly every frame; a frame whose rule needs
 * another register, such as a frame pointer, ends the stack there), reading
 * the stack with process_vm_readv on our own pid: a read of memory that is
 * gone fails with EFAULT instead of faulting, so a thread that wakes and
 * exits meanwhile cannot crash the host. Afterwards /proc is read again: a
 * thread that left its call while its stack was read keeps only the one
 * frame /proc gave (the stack may mix two moments).
 *
 * Runs in the capturing thread, outside any handler, with nothing held. */
#include "internal.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct walk {
    tc_raw_thread *raw;
    size_t n, next;
    pid_t pid;
    tc_raw_thread *current;
    uintptr_t pcs[THREADCHECK_MAX_FRAMES];
    int depth;
    bool truncated;
};

static pid_t next_thread(Dwfl *dwfl, void *arg, void **thread_argp)
{
    (void)dwfl;
    struct walk *w = arg;
    while (w->next < w->n) {
        tc_raw_thread *t = &w->raw[w->next++];
        if (t->from_proc) {
            w->current = t;
            *thread_argp = t;
            return t->info.tid;
        }
    }
    return 0;
}

static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
    (void)dwfl;
    const struct walk *w = arg;
    struct iovec local = {result, sizeof *result}, remote = {(void *)(uintptr_t)addr, sizeof *result};
    return process_vm_readv(w->pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof *result;
}

static bool set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
    const tc_raw_thread *t = thread_arg;
    Dwarf_Word args[6], sp = t->sp;
    for (int i = 0; i < 6; i++)
        args[i] = t->args[i];
#if defined(__x86_64__)
    static const int arg_regs[6] = {5, 4, 1, 10, 8, 9}; /* DWARF numbers of rdi rsi rdx r10 r8 r9 */
    Dwarf_Word pc = t->pcs[0];
    for (int i = 0; i < 6; i++)
        if (!dwfl_thread_state_registers(thread, arg_regs[i], 1, &args[i]))
            return false;
    return dwfl_thread_state_registers(thread, 7, 1, &sp) && dwfl_thread_state_registers(thread, 16, 1, &pc);
#elif defined(__aarch64__)
    if (!dwfl_thread_state_registers(thread, 0, 6, args) || !dwfl_thread_state_registers(thread, 31, 1, &sp))
        return false;
    dwfl_thread_state_register_pc(thread, t->pcs[0]);
    return true;
#else
    (void)thread, (void)args, (void)sp;
    return false;
#endif
}

static const Dwfl_Thread_Callbacks callbacks = {
    .next_thread = next_thread,
    .memory_read = memory_read,
    .set_initial_registers = set_initial_registers,
};

static int on_frame(Dwfl_Frame *state, void *arg)
{
    struct walk *w = arg;
    Dwarf_Addr pc;
    if (!dwfl_frame_pc(state, &pc, NULL) || pc == 0)
        return DWARF_CB_ABORT;
    if (w->depth == THREADCHECK_MAX_FRAMES) {
        w->truncated = true;
        return DWARF_CB_ABORT;
    }
    w->pcs[w->depth++] = (uintptr_t)pc;
    return DWARF_CB_OK;
}

/* The thread still sleeps in the same call, from the same place. */
static bool still_there(int taskfd, const tc_raw_thread *t)
{
    char path[48], buf[256];
    snprintf(path, sizeof path, "%d/syscall", (int)t->info.tid);
    int fd = openat(taskfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *p = buf, *end;
    long nr = strtol(p, &end, 10);
    unsigned long words[8];
    int k = 0;
    for (p = end; k < 8; p = end) {
        words[k] = strtoul(p, &end, 16);
        if (end == p)
            break;
        k++;
    }
    return k == 8 && nr == t->info.syscall && words[6] == t->sp && words[7] == t->pcs[0];
}

static int on_thread(Dwfl_Thread *thread, void *arg)
{
    struct walk *w = arg;
    w->depth = 0;
    w->truncated = false;
    dwfl_thread_getframes(thread, on_frame, w);
    tc_raw_thread *t = w->current;
    if (w->depth > 1 && w->pcs[0] == t->pcs[0]) {
        memcpy(t->pcs, w->pcs, (size_t)w->depth * sizeof t->pcs[0]);
        t->npcs = w->depth;
        t->first_exact = 0; /* the pc /proc shows is where it sleeps, not a return address */
        t->info.truncated = w->truncated;
    }
    return DWARF_CB_OK;
}

void tc_unwind_from_proc(int taskfd, tc_raw_thread *raw, size_t n)
{
    size_t wanted = 0;
    for (size_t i = 0; i < n; i++)
        wanted += raw[i].from_proc;
    if (!wanted)
        return;
    static char *debuginfo_path;
    static const Dwfl_Callbacks proc_callbacks = {
        .find_elf = dwfl_linux_proc_find_elf,
        .find_debuginfo = dwfl_build_id_find_debuginfo, /* local build-id files only: no debuginfod */
        .debuginfo_path = &debuginfo_path,
    };
    struct walk *w = calloc(1, sizeof *w); /* THREADCHECK_MAX_FRAMES pcs: not on the caller's stack */
    Dwfl *dwfl = w ? dwfl_begin(&proc_callbacks) : NULL;
    if (w && dwfl) {
        *w = (struct walk){.raw = raw, .n = n, .pid = getpid()};
        if (dwfl_linux_proc_report(dwfl, w->pid) == 0 && dwfl_report_end(dwfl, NULL, NULL) == 0 &&
            dwfl_attach_state(dwfl, NULL, w->pid, &callbacks, w))
            dwfl_getthreads(dwfl, on_thread, w);
    }
    if (dwfl)
        dwfl_end(dwfl);
    free(w);
    /* A thread that woke meanwhile keeps the one frame /proc gave. */
    for (size_t i = 0; i < n; i++) {
        tc_raw_thread *t = &raw[i];
        if (t->from_proc && t->npcs > 1 && !still_there(taskfd, t)) {
            t->npcs = 1;
            t->first_exact = -1;
            t->info.truncated = false;
        }
    }
}

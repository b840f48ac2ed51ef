/* restart_rules.h - which blocked system calls a signal handler leaves unseen.
 *
 * threadcheck's capture signal and orphans' stop signal run a handler in a
 * thread that may be asleep in a system call. When the handler returns, the
 * kernel either restarts the call having done nothing (ERESTARTSYS under
 * SA_RESTART, ERESTARTNOINTR), and the program never knows, or it returns
 * EINTR or a partial count, and the program sees it: epoll_wait, poll,
 * nanosleep and sigtimedwait return EINTR, SA_RESTART or not; a write that
 * moved part of its bytes returns the short count (1 MiB into a pipe holding
 * 64 KiB returns 65,536: threadcheck.api.short_write, orphans.host.pipe_write);
 * a receive waiting for more than one byte returns what it has. signal(7)
 * lists which calls restart.
 *
 * Both libraries decide with this one table (threadcheck.restart_rules tests
 * it case by case), so a thread threadcheck leaves alone is one orphans leaves
 * alone, and the other way round. Header-only: orphans is a library of its
 * own and cannot call threadcheck's hidden symbols. Nothing here may
 * allocate: orphans calls it with the world half stopped. */
#ifndef THREADCHECK_RESTART_RULES_H
#define THREADCHECK_RESTART_RULES_H

#include <errno.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>

/* A socket option holding a time (SO_RCVTIMEO / SO_SNDTIMEO) is set: then
 * its calls fail with EINTR after a handler, SA_RESTART or not (signal(7)).
 * Unknown descriptor: say yes. Not a socket: no. */
static inline bool tc_socket_times_out(unsigned long fd, int option)
{
    struct timeval tv = {0};
    socklen_t len = sizeof tv;
    if (getsockopt((int)fd, SOL_SOCKET, option, &tv, &len) != 0)
        return errno != ENOTSOCK;
    return tv.tv_sec != 0 || tv.tv_usec != 0;
}

/* A receive that may return having received part of what it waits for:
 * MSG_WAITALL, or a socket whose SO_RCVLOWAT is above 1 (the call sleeps
 * until that many bytes came, and a handler returns the ones already
 * copied). Unknown descriptor: say yes. Not a socket: no. */
static inline bool tc_receive_may_be_partial(unsigned long fd, unsigned long flags)
{
    if (flags & MSG_WAITALL)
        return true;
    int low = 1;
    socklen_t len = sizeof low;
    if (getsockopt((int)fd, SOL_SOCKET, SO_RCVLOWAT, &low, &len) != 0)
        return errno != ENOTSOCK;
    return low > 1;
}

/* True when system call `nr` with arguments `a`, asleep in the kernel, cannot
 * be seen to have been interrupted by a handler. Everything else is refused:
 * poll, select, epoll_wait, nanosleep, clock_nanosleep, pause, sigsuspend,
 * sigtimedwait, semop, msgrcv, io_getevents, restart_syscall, timed futex
 * waits (sem_timedwait returns EINTR), writes, sends, splices and connects
 * (a restarted connect fails with EALREADY), receives that may be partial,
 * calls on sockets with a timeout, and any call not listed here. */
static inline bool tc_restarts_unseen(long nr, const unsigned long a[6])
{
    switch (nr) {
    case SYS_futex: {
        int cmd = (int)(a[1] & FUTEX_CMD_MASK);
        if (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET || cmd == FUTEX_WAIT_REQUEUE_PI || cmd == FUTEX_LOCK_PI
#ifdef FUTEX_LOCK_PI2
            || cmd == FUTEX_LOCK_PI2
#endif
        )
            return a[3] == 0; /* untimed: -ERESTARTSYS; timed: EINTR (ERESTART_RESTARTBLOCK) */
        return true;          /* wakes, requeues: they do not sleep */
    }
    case SYS_read:
    case SYS_readv:
        /* A read returns as soon as it has anything: asleep, it has nothing,
         * unless the socket waits for more than one byte. */
        return !tc_socket_times_out(a[0], SO_RCVTIMEO) && !tc_receive_may_be_partial(a[0], 0);
    case SYS_accept:
    case SYS_accept4:
        return !tc_socket_times_out(a[0], SO_RCVTIMEO);
    case SYS_recvfrom: /* flags: the 4th argument */
        return !tc_socket_times_out(a[0], SO_RCVTIMEO) && !tc_receive_may_be_partial(a[0], a[3]);
    case SYS_recvmsg:  /* flags: the 3rd argument */
        return !tc_socket_times_out(a[0], SO_RCVTIMEO) && !tc_receive_may_be_partial(a[0], a[2]);
    case SYS_getrandom:
        /* Up to 256 bytes are never cut short by a handler; more may be. */
        return a[1] <= 256;
    /* Restarted under SA_RESTART having done nothing (signal(7)). */
    case SYS_wait4:
    case SYS_waitid:
    case SYS_flock:
    case SYS_fcntl: /* F_SETLKW, F_OFD_SETLKW; the other commands do not sleep */
    case SYS_openat:
#ifdef SYS_open
    case SYS_open:
#endif
    case SYS_mq_timedreceive:
    case SYS_mq_timedsend:
    case SYS_clone: /* ERESTARTNOINTR */
#ifdef SYS_clone3
    case SYS_clone3:
#endif
#ifdef SYS_fork
    case SYS_fork:
#endif
#ifdef SYS_vfork
    case SYS_vfork:
#endif
    /* These do not sleep interruptibly: a signal waits for their return. */
    case SYS_mmap:
    case SYS_munmap:
    case SYS_mprotect:
    case SYS_madvise:
    case SYS_mremap:
    case SYS_brk:
    case SYS_sched_yield:
    case SYS_rt_sigprocmask:
    case SYS_getpid:
    case SYS_gettid:
    case SYS_lseek:
    case SYS_fstat:
    case SYS_newfstatat:
    case SYS_getdents64:
    case SYS_pread64:
    case SYS_pwrite64:
    case SYS_close:
        return true;
    default:
        return false;
    }
}

#endif

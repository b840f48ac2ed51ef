/* test_restart_rules.c - the one table threadcheck and orphans share
 * (src/restart_rules.h): which blocked system calls a signal handler may
 * interrupt unseen. Case by case, with real descriptors where the answer
 * depends on one: a pipe, a socket with a receive timeout, a socket whose
 * SO_RCVLOWAT waits for more than one byte (which threadcheck's own copy of
 * the table let through before the two were made one). Exit 0 pass, 1 fail. */
#include "../src/restart_rules.h"

#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int failures;

static void expect(const char *what, long nr, unsigned long a0, unsigned long a1, unsigned long a2, unsigned long a3,
                   bool unseen)
{
    const unsigned long args[6] = {a0, a1, a2, a3, 0, 0};
    bool got = tc_restarts_unseen(nr, args);
    printf("%-58s %s%s\n", what, got ? "restarts unseen" : "left alone", got == unseen ? "" : "   <-- WRONG");
    if (got != unseen)
        failures++;
}

int main(void)
{
    int pipefd[2], plain[2], timed[2], lowat[2];
    if (pipe(pipefd) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, plain) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, timed) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, lowat) != 0) {
        perror("test_restart_rules: pipe/socketpair");
        return 99;
    }
    struct timeval tv = {.tv_sec = 3};
    int two = 2;
    if (setsockopt(timed[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(lowat[0], SOL_SOCKET, SO_RCVLOWAT, &two, sizeof two) != 0) {
        perror("test_restart_rules: setsockopt");
        return 99;
    }
    unsigned long p = (unsigned long)pipefd[0], s = (unsigned long)plain[0], t = (unsigned long)timed[0],
                  l = (unsigned long)lowat[0], closed = 1000000;

    expect("futex(FUTEX_WAIT_PRIVATE), untimed (a mutex, a cond)", SYS_futex, 0, FUTEX_WAIT_PRIVATE, 0, 0, true);
    expect("futex(FUTEX_WAIT_BITSET), timed (sem_timedwait)", SYS_futex, 0, FUTEX_WAIT_BITSET, 0, 0x1000, false);
    expect("futex(FUTEX_WAKE)", SYS_futex, 0, FUTEX_WAKE, 1, 0, true);
    expect("read on a pipe", SYS_read, p, 0, 4096, 0, true);
    expect("read on a socket", SYS_read, s, 0, 4096, 0, true);
    expect("read on a socket with SO_RCVTIMEO (EINTR)", SYS_read, t, 0, 4096, 0, false);
    expect("read on a socket with SO_RCVLOWAT 2 (partial)", SYS_read, l, 0, 4096, 0, false);
    expect("read on a descriptor that is not open (unknown)", SYS_read, closed, 0, 4096, 0, false);
    expect("recvfrom, no flags", SYS_recvfrom, s, 0, 4096, 0, true);
    expect("recvfrom with MSG_WAITALL (partial)", SYS_recvfrom, s, 0, 4096, MSG_WAITALL, false);
    expect("recvmsg with MSG_WAITALL (partial)", SYS_recvmsg, s, 0, MSG_WAITALL, 0, false);
    expect("accept on a socket with SO_RCVTIMEO (EINTR)", SYS_accept, t, 0, 0, 0, false);
    expect("write into a full pipe (short count)", SYS_write, p, 0, 1 << 20, 0, false);
    expect("sendto (short count)", SYS_sendto, s, 0, 1 << 20, 0, false);
    expect("connect (EALREADY when restarted)", SYS_connect, s, 0, 16, 0, false);
    expect("epoll_wait (EINTR, SA_RESTART or not)", SYS_epoll_wait, 3, 0, 8, 3000, false);
    expect("nanosleep (EINTR)", SYS_nanosleep, 0, 0, 0, 0, false);
    expect("rt_sigtimedwait (EINTR)", SYS_rt_sigtimedwait, 0, 0, 0, 8, false);
    expect("getrandom of 256 bytes", SYS_getrandom, 0, 256, 0, 0, true);
    expect("getrandom of 4096 bytes (may be cut short)", SYS_getrandom, 0, 4096, 0, 0, false);
    expect("wait4 (restarted)", SYS_wait4, (unsigned long)-1, 0, 0, 0, true);
    expect("clone (ERESTARTNOINTR)", SYS_clone, 0, 0, 0, 0, true);
    expect("a call the table does not know", 100000, 0, 0, 0, 0, false);

    if (failures) {
        printf("test_restart_rules: %d case(s) wrong\n", failures);
        return 1;
    }
    printf("test_restart_rules: all cases as signal(7) says\n");
    return 0;
}

/* allocstats_host.c - a host for liballocstats' manners (test_allocstats_host.py): the
 * descriptor its first open() gets, a process-directed signal it waits for in
 * sigtimedwait() (every thread but the agent's blocks it: a preload whose thread did not
 * would take it, and SIGUSR1's default action ends the process), and a distinctive exit
 * status. The same bytes on stdout with and without the preload. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    kill(getpid(), SIGUSR1); /* process-directed: any thread that does not block it may take it */
    struct timespec bound = {10, 0};
    siginfo_t info;
    int sig = sigtimedwait(&set, &info, &bound);
    printf("first open: fd %d\nsigtimedwait: %d, sent by this process: %d\n", fd, sig,
           sig == SIGUSR1 && info.si_pid == getpid());
    return sig == SIGUSR1 ? 3 : 4;
}

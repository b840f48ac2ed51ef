/* host_omp: an OpenMP program (issue 20's host corpus). Two parallel
 * regions; libgomp keeps its pool of threads between them and at exit, idle
 * in a futex wait: a runtime's own background threads, which no detector may
 * call leaked. Observed (HOST_OBSERVE="READY_FD,GO_FD", tests/host/README.md),
 * the runner looks at the process between the two regions. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long region(long n)
{
    long sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (long i = 1; i <= n; i++)
        sum += i % 7;
    return sum;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("host_omp: first region, sum %ld\n", region(1000000));
    int ready_fd, go_fd;
    const char *obs = getenv("HOST_OBSERVE");
    if (obs && sscanf(obs, "%d,%d", &ready_fd, &go_fd) == 2) {
        /* one round: the pool idles while the runner looks */
        char c = 0;
        if (write(ready_fd, "ready\n", 6) != 6)
            return 99;
        struct pollfd go = {.fd = go_fd, .events = POLLIN};
        while (poll(&go, 1, 60000) == 1 && read(go_fd, &c, 1) == 1 && c != '\n')
            ; /* at most 60 s per byte: the runner answers at once */
        if (c != '\n') {
            fputs("host_omp: the runner closed the go pipe\n", stderr);
            return 99;
        }
    }
    printf("host_omp: second region, sum %ld\n", region(2000000));
    return 0;
}

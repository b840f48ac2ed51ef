/* host_ctor: a program linked with libhost_ctor, whose constructor started a
 * logger thread before main; its destructor joins it at exit. Observed
 * (HOST_OBSERVE, tests/host/README.md), the runner looks while it idles. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void host_log(const char *line);

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("host_ctor: main starts; the library's thread is already running\n");
    host_log("first line");
    int ready_fd, go_fd;
    const char *obs = getenv("HOST_OBSERVE");
    if (obs && sscanf(obs, "%d,%d", &ready_fd, &go_fd) == 2) {
        char c = 0;
        if (write(ready_fd, "ready\n", 6) != 6)
            return 99;
        struct pollfd go = {.fd = go_fd, .events = POLLIN};
        while (poll(&go, 1, 60000) == 1 && read(go_fd, &c, 1) == 1 && c != '\n')
            ; /* at most 60 s per byte: the runner answers at once */
        if (c != '\n') {
            fputs("host_ctor: the runner closed the go pipe\n", stderr);
            return 99;
        }
    }
    host_log("second line");
    printf("host_ctor: main returns; the library's destructor stops its thread\n");
    return 0;
}

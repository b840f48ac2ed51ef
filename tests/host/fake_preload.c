/* libhost_fake: the runner's negative control (test_run_corpus.py). A
 * "detector" that changes what its host does, the way HOST_FAKE says:
 *   stdout      writes a line to stdout at exit
 *   status      exits 5 at exit
 *   report_junk writes a threadcheck-like report and a stray line to stderr, exits 66
 *   report      writes a well-formed threadcheck-like report to stderr, exits 66
 *   hang        never returns from exit (blocks in pause() until the runner kills it)
 *   child       leaves a child behind (blocked in pause() until the runner kills it)
 *   none        nothing (the comparison must then pass)
 * The runner must flag all but `report` (where a report is expected) and `none`. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

__attribute__((destructor)) static void fake_at_exit(void)
{
    const char *mode = getenv("HOST_FAKE");
    if (!mode || !strcmp(mode, "none"))
        return;
    if (!strcmp(mode, "stdout")) {
        (void)!write(1, "fake detector was here\n", 23);
    } else if (!strcmp(mode, "hang")) {
        for (;;)
            pause();
    } else if (!strcmp(mode, "child")) {
        if (fork() == 0)
            for (;;)
                pause();
    } else if (!strcmp(mode, "status")) {
        _exit(5);
    } else if (!strcmp(mode, "report") || !strcmp(mode, "report_junk")) {
        say("threadcheck: found unexpected threads: 1 thread in 1 group\n\n"
            "1 @ worker <- start_thread <- __clone3\n"
            "#\tstate S (sleeping), syscall read; stack captured; tids 1234\n"
            "#\t0x7f0000001000\tworker+0x10\t/fake/worker.c:1\n");
        if (!strcmp(mode, "report_junk"))
            say("host_cases: pipe_write: write returned 65536 of 1048576 bytes (a short count)\n");
        _exit(66);
    }
}

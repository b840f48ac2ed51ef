/* pool_program - a program that leaves a runtime library's own threads
 * alive at exit, as ordinary C programs do: threadcheck must ignore them by
 * default (THREADCHECK_OPTIONS=default_ignores=0 must report them).
 *
 *     pool_program MODE [verify]
 *
 * With `verify`, main ends with threadcheck_verify() (THREADCHECK_OPTIONS
 * parsed with threadcheck_options_parse), prints the report and returns 66
 * when threads are left: the API's view, while every library is loaded
 * (OpenBLAS, for one, joins its threads in its destructor, before the check
 * at exit runs).
 *
 * Modes, each built where its library is (tests/CMakeLists.txt):
 *   timer        timer_create(SIGEV_THREAD): glibc's timer helper thread
 *   aio          aio_read: glibc's POSIX AIO helper thread (idles 1 s, then exits)
 *   gai          getaddrinfo_a: glibc's asynchronous name lookup helper
 *   openmp       one `parallel for`: libgomp's idle pool
 *   openblas     one dgemm: OpenBLAS's idle worker threads
 *   glib_pool    a GThreadPool task that returned: the pool's idle thread
 *   glib_worker  GLib's worker thread ("gmain", in poll: never signalled, its
 *                stack read from /proc's registers)
 *   glib_stuck   a GThreadPool task stuck in the program's own code: NOT a
 *                runtime thread, it must be reported (the negative control)
 * Every mode waits for its library's thread to have done its work (a
 * semaphore or the library's own completion call), never sleeps, and
 * returns from main. Exit 0; 2 bad usage; 99 setup failed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <threadcheck.h>
#ifdef POOL_OPENMP
#include <omp.h>
#endif
#ifdef POOL_OPENBLAS
#include <cblas.h>
#endif
#ifdef POOL_GLIB
#include <glib-unix.h>
#include <glib.h>
#endif

static sem_t done;

static void on_timer(union sigval v)
{
    (void)v;
    sem_post(&done);
}

static int run_timer(void)
{
    timer_t t;
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = on_timer};
    struct itimerspec once = {.it_value = {0, 1000000}};
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0 || timer_settime(t, 0, &once, NULL) != 0)
        return 99;
    while (sem_wait(&done) != 0 && errno == EINTR)
        ;
    return 0;
}

static int run_aio(void)
{
    static char buf[16];
    struct aiocb cb = {.aio_fildes = open("/proc/self/stat", O_RDONLY), .aio_buf = buf, .aio_nbytes = sizeof buf};
    if (cb.aio_fildes < 0 || aio_read(&cb) != 0)
        return 99;
    const struct aiocb *list[1] = {&cb};
    while (aio_error(&cb) == EINPROGRESS)
        aio_suspend(list, 1, NULL);
    return aio_return(&cb) > 0 ? 0 : 99;
}

static int run_gai(void)
{
    struct gaicb req = {.ar_name = "localhost"};
    struct gaicb *list[1] = {&req};
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0)
        return 99;
    while (gai_error(&req) == EAI_INPROGRESS)
        gai_suspend((const struct gaicb *const *)list, 1, NULL);
    if (req.ar_result)
        freeaddrinfo(req.ar_result);
    return 0;
}

#ifdef POOL_OPENMP
static int run_openmp(void)
{
    double sum = 0;
#pragma omp parallel for reduction(+ : sum) num_threads(2)
    for (int i = 0; i < 100000; i++)
        sum += i * 0.5;
    return sum > 0 ? 0 : 99;
}
#endif

#ifdef POOL_OPENBLAS
static int run_openblas(void)
{
    enum { N = 256 }; /* big enough for OpenBLAS to use its threads */
    static double a[N * N], b[N * N], c[N * N];
    for (int i = 0; i < N * N; i++)
        a[i] = b[i] = 1.0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, a, N, b, N, 0.0, c, N);
    return c[0] == N ? 0 : 99;
}
#endif

#ifdef POOL_GLIB
static int stuck_fd[2];

static void pool_task(gpointer data, gpointer user)
{
    (void)user;
    if (GPOINTER_TO_INT(data) == 2) { /* stuck in the program's own code: a read nobody answers */
        sem_post(&done);
        char c;
        while (read(stuck_fd[0], &c, 1) < 0 && errno == EINTR)
            ;
        return;
    }
    sem_post(&done);
}

static int run_glib_pool(int kind)
{
    if (pipe(stuck_fd) != 0)
        return 99;
    GThreadPool *pool = g_thread_pool_new(pool_task, NULL, 1, FALSE, NULL);
    if (!pool || !g_thread_pool_push(pool, GINT_TO_POINTER(kind), NULL))
        return 99;
    while (sem_wait(&done) != 0 && errno == EINTR)
        ;
    return 0; /* the pool is never freed: its thread is alive at exit */
}

static gboolean on_signal(gpointer data)
{
    (void)data;
    return G_SOURCE_CONTINUE;
}

static int run_glib_worker(void)
{
    /* GLib watches Unix signals from its worker thread ("gmain", its own
     * main context in poll): adding a watch starts it. */
    g_unix_signal_add(SIGUSR2, on_signal, NULL);
    return 0;
}
#endif

static int run(const char *mode);

int main(int argc, char **argv)
{
    const char *mode = argc >= 2 ? argv[1] : "";
    bool verify = argc == 3 && strcmp(argv[2], "verify") == 0;
    if (argc > 3 || (argc == 3 && !verify))
        mode = "";
    sem_init(&done, 0, 0);
    int rc = run(mode);
    if (rc != 0 || !verify)
        return rc;
    threadcheck_options opts;
    char why[256];
    if (threadcheck_options_parse(&opts, getenv("THREADCHECK_OPTIONS"), why, sizeof why) != THREADCHECK_OK) {
        fprintf(stderr, "pool_program: THREADCHECK_OPTIONS: %s\n", why);
        return 2;
    }
    threadcheck_snapshot *left = NULL;
    int result = threadcheck_verify(&opts, &left);
    if (result == THREADCHECK_LEAKED)
        threadcheck_report_print(left, stderr);
    threadcheck_snapshot_free(left);
    threadcheck_options_release(&opts);
    return result == THREADCHECK_LEAKED ? 66 : result == THREADCHECK_OK ? 0 : 99;
}

static int run(const char *mode)
{
    if (strcmp(mode, "timer") == 0)
        return run_timer();
    if (strcmp(mode, "aio") == 0)
        return run_aio();
    if (strcmp(mode, "gai") == 0)
        return run_gai();
#ifdef POOL_OPENMP
    if (strcmp(mode, "openmp") == 0)
        return run_openmp();
#endif
#ifdef POOL_OPENBLAS
    if (strcmp(mode, "openblas") == 0)
        return run_openblas();
#endif
#ifdef POOL_GLIB
    if (strcmp(mode, "glib_pool") == 0)
        return run_glib_pool(1);
    if (strcmp(mode, "glib_stuck") == 0)
        return run_glib_pool(2);
    if (strcmp(mode, "glib_worker") == 0)
        return run_glib_worker();
#endif
    fprintf(stderr, "usage: pool_program MODE [verify] (MODE: timer aio gai%s%s%s)\n",
#ifdef POOL_OPENMP
            " openmp",
#else
            "",
#endif
#ifdef POOL_OPENBLAS
            " openblas",
#else
            "",
#endif
#ifdef POOL_GLIB
            " glib_pool glib_worker glib_stuck"
#else
            ""
#endif
    );
    return 2;
}

/* libhost_ctor: a library that starts a thread from its constructor, as
 * logging and telemetry libraries do, and stops it in its destructor. The
 * thread prints the lines host_log() queues. (issue 20's host corpus) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char line[128];
    int pending, quit, started;
    pthread_t thread;
} logger = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0, 0};

static void *logger_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&logger.lock);
    for (;;) {
        while (!logger.pending && !logger.quit)
            pthread_cond_wait(&logger.changed, &logger.lock);
        if (logger.pending) {
            printf("logger thread: %s\n", logger.line);
            fflush(stdout);
            logger.pending = 0;
            pthread_cond_broadcast(&logger.changed);
        } else if (logger.quit) {
            break;
        }
    }
    pthread_mutex_unlock(&logger.lock);
    return NULL;
}

__attribute__((visibility("default"))) void host_log(const char *line)
{
    pthread_mutex_lock(&logger.lock);
    while (logger.pending)
        pthread_cond_wait(&logger.changed, &logger.lock);
    snprintf(logger.line, sizeof logger.line, "%s", line);
    logger.pending = 1;
    pthread_cond_broadcast(&logger.changed);
    while (logger.pending) /* printed before host_log returns: the output's order is fixed */
        pthread_cond_wait(&logger.changed, &logger.lock);
    pthread_mutex_unlock(&logger.lock);
}

__attribute__((constructor)) static void logger_start(void)
{
    logger.started = pthread_create(&logger.thread, NULL, logger_main, NULL) == 0;
}

__attribute__((destructor)) static void logger_stop(void)
{
    if (!logger.started)
        return;
    pthread_mutex_lock(&logger.lock);
    logger.quit = 1;
    pthread_cond_broadcast(&logger.changed);
    pthread_mutex_unlock(&logger.lock);
    pthread_join(logger.thread, NULL);
}

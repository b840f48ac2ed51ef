/* monotonic.h - the one clock threaddump's parts share. A header of its own
 * so that stopper.c (which times the stops) needs nothing from threaddump.c
 * (which calls stopper.c): the parts depend on headers, never on each other. */
#ifndef THREADDUMP_MONOTONIC_H
#define THREADDUMP_MONOTONIC_H

#include <time.h>

/* A monotonic clock in seconds, for deadlines and the timings the dump reports. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif

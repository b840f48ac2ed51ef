/* rw_client.h - what rw_client's files share. rw_client.c is the load (the
 * seed's load test, the client's story); rw_hostile.c the hostile-input mode;
 * rw_client_cli.c the command line and the small helpers both modes use.
 * The frames and the socket calls are rw_protocol.c's, shared with the
 * gateway. Like rw_protocol.c, nothing here uses the harness: the client is
 * a plain program the driver runs.
 */
#ifndef RW_CLIENT_H
#define RW_CLIENT_H

#include "rw_protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_SYSTEM = 99 };

/* The command line (rw_client_cli.c: parse_args). */
extern struct client_options {
    int port;
    long connections, frames, frame_bytes, timeout_s;
    const char *json;
    bool hostile;
} opt;

void parse_args(int argc, char **argv);

/* One descriptor per connection: takes the hard limit, or exits 99 saying
 * what to raise. */
void raise_fd_limit(long needed);

/* Seconds since the start (start_clock()); the --timeout deadline (rw_now_ms). */
void start_clock(void);
double elapsed_s(void);
extern long long deadline_ms;

/* One frame's bytes, the same on both modes; the buffer both build them in. */
extern unsigned char scratch[RW_HEADER_BYTES + RW_MAX_FRAME_BYTES];
unsigned char frame_byte(unsigned id, unsigned frame, size_t pos);
size_t frame_len(void);

/* A connection under way, or -1 if the connect failed at once; exits 99 if
 * no socket could be made. */
int open_socket(void);

/* Hostile mode (rw_hostile.c): runs every case, prints a line per case and
 * puts the JSON of the results into `results`; returns how many failed. */
long run_hostile(char *results, size_t size);
void hostile_summary(FILE *f, const char *results, long failed);

#endif

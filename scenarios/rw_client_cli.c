/* rw_client_cli.c - rw_client's command line and the helpers its two modes
 * share (rw_client.h says what is where). */
#include "rw_client.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    DEF_CONNECTIONS = 3000, MAX_CONNECTIONS = 50000, DEF_FRAMES = 10, MAX_FRAMES = 100000,
    DEF_FRAME_BYTES = 512, DEF_TIMEOUT_S = 300, MAX_TIMEOUT_S = 86400,
};

struct client_options opt = {0, DEF_CONNECTIONS, DEF_FRAMES, DEF_FRAME_BYTES, DEF_TIMEOUT_S, NULL, false};

static struct timespec started;
long long deadline_ms; /* --timeout from the start (rw_now_ms) */
unsigned char scratch[RW_HEADER_BYTES + RW_MAX_FRAME_BYTES];

void start_clock(void)
{
    clock_gettime(CLOCK_MONOTONIC, &started);
    deadline_ms = rw_now_ms() + opt.timeout_s * 1000;
}

double elapsed_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - started.tv_sec) + (double)(t.tv_nsec - started.tv_nsec) / 1e9;
}

unsigned char frame_byte(unsigned id, unsigned frame, size_t pos)
{
    return rw_frame_byte((uint32_t)opt.frame_bytes, id, frame, pos);
}

size_t frame_len(void) { return RW_HEADER_BYTES + (size_t)opt.frame_bytes; }

/* A connection under way, or -1 if the connect failed at once. */
int open_socket(void)
{
    int fd = rw_connect_loopback(opt.port);
    if (fd == RW_NO_SOCKET) {
        fprintf(stderr, "rw_client: socket: %s; raise the open-files limit (ulimit -n) or lower --connections\n",
                strerror(errno));
        exit(EXIT_SYSTEM);
    }
    return fd;
}

/* ---- the command line ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rw_client --port N [--connections N] [--frames N] [--frame-bytes N]\n"
            "                 [--timeout S] [--json FILE] [--hostile]\n\n"
            "The load client of rw_gateway, on 127.0.0.1 only. Opens --connections, exchanges\n"
            "the first frame on each, holds them until all have, then exchanges the other\n"
            "frames and disconnects each right after its last echo.\n\n"
            "  --port N          the gateway's port (its `listening` event), 1..65535 (required)\n"
            "  --connections N   connections to make, 1..%d (default %d)\n"
            "  --frames N        frames per connection, 1..%d (default %d)\n"
            "  --frame-bytes N   payload bytes per frame, 1..%d (default %d)\n"
            "  --timeout S       stop after S seconds whatever happens, 1..%d (default %d)\n"
            "  --json FILE       also write the summary as JSON to FILE\n"
            "  --hostile         send each kind of bad input on its own connection, then a\n"
            "                    normal exchange; checks the gateway closes the bad ones\n"
            "  --help            this text\n\n"
            "exit codes: 0 every exchange done, 1 some failed, 2 bad usage,\n"
            "99 refused resource (descriptors, memory) or the --timeout deadline\n",
            MAX_CONNECTIONS, DEF_CONNECTIONS, MAX_FRAMES, DEF_FRAMES, RW_MAX_FRAME_BYTES, DEF_FRAME_BYTES,
            MAX_TIMEOUT_S, DEF_TIMEOUT_S);
}

static long parse(const char *name, const char *text, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long v = (text[0] >= '0' && text[0] <= '9') ? strtol(text, &end, 10) : -1;
    if (!end || *end || errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "rw_client: --%s: '%s' is not an integer in [%ld, %ld]\nTry 'rw_client --help'.\n", name,
                text, min, max);
        exit(EXIT_USAGE);
    }
    return v;
}

void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},        {"connections", required_argument, NULL, 'c'},
        {"frames", required_argument, NULL, 'f'},      {"frame-bytes", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'},     {"json", required_argument, NULL, 'j'},
        {"hostile", no_argument, NULL, 'H'},           {"help", no_argument, NULL, 'h'},
        {0},
    };
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1;) {
        switch (c) {
        case 'p': opt.port = (int)parse("port", optarg, 1, 65535); break;
        case 'c': opt.connections = parse("connections", optarg, 1, MAX_CONNECTIONS); break;
        case 'f': opt.frames = parse("frames", optarg, 1, MAX_FRAMES); break;
        case 'b': opt.frame_bytes = parse("frame-bytes", optarg, 1, RW_MAX_FRAME_BYTES); break;
        case 't': opt.timeout_s = parse("timeout", optarg, 1, MAX_TIMEOUT_S); break;
        case 'j': opt.json = optarg; break;
        case 'H': opt.hostile = true; break;
        case 'h': usage(stdout); exit(EXIT_OK);
        case ':': fprintf(stderr, "rw_client: option '%s' needs a value\n", argv[optind - 1]); exit(EXIT_USAGE);
        default: fprintf(stderr, "rw_client: unknown option '%s'\nTry 'rw_client --help'.\n", argv[optind - 1]);
                 exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rw_client: unexpected argument '%s'\nTry 'rw_client --help'.\n", argv[optind]);
        exit(EXIT_USAGE);
    }
    if (!opt.port) {
        fprintf(stderr, "rw_client: --port is required (the gateway's `listening` event has it)\n");
        exit(EXIT_USAGE);
    }
}

/* One descriptor per connection: take the hard limit, or say what to raise. */
void raise_fd_limit(long needed)
{
    unsigned long long limit;
    if (!rw_raise_fd_limit(needed, &limit)) {
        fprintf(stderr, "rw_client: %ld connections need %ld descriptors, the hard limit is %llu: raise it "
                "(ulimit -Hn; nofile in /etc/security/limits.conf) or lower --connections\n",
                opt.connections, needed, limit);
        exit(EXIT_SYSTEM);
    }
}


/* options.h - every scenario's command line, parsed and validated without
 * printing or exiting.
 *
 * ll_main() (harness.c) calls ll_cli_parse() once and turns its status into
 * the exit codes of DESIGN.md: the message is printed as "NAME: MESSAGE" and
 * "Try 'NAME --help'." with exit 2. Because the parser returns instead of
 * exiting, it can be called again and again on hostile argv: fuzz/options
 * does exactly that under AddressSanitizer and UndefinedBehaviorSanitizer. */
#ifndef LEAKLAB_OPTIONS_H
#define LEAKLAB_OPTIONS_H

#include "leaklab.h"

#include <stddef.h>

enum { LL_DEFAULT_TIMEOUT_S = 900, LL_MAX_TIMEOUT_S = 86400 };
/* --hold-at PHASE:driver: hold until the runner's driver writes this line on stdin. */
enum { LL_HOLD_FOR_DRIVER = -2 };
/* --hold-at may be given this many times (a retention kernel's runs hold at its truth's
 * baseline and at its phase: two). */
enum { LL_MAX_HOLD_AT = 4 };
#define LL_HOLD_DRIVER_WORD "go-on"

/* The harness options, validated. Scenario option values go to run->values. */
typedef struct ll_cli {
    const ll_variant *variant;    /* the scenario's first unless --variant */
    const char *scale;            /* "seed" (default) or "quick" */
    const char *events_path;      /* --events FILE, or NULL: stdout */
    const char *heap_profile_dir; /* --heap-profile DIR, or NULL */
    long long timeout_s;          /* --timeout, [1, LL_MAX_TIMEOUT_S] */
    long long hold_s;             /* --hold: 0 none, -1 forever */
    struct ll_hold_at {           /* --hold-at PHASE[:SECONDS], given up to LL_MAX_HOLD_AT times */
        char phase[64];           /* "" none */
        long long seconds;        /* -1 forever, LL_HOLD_FOR_DRIVER */
    } hold_at[LL_MAX_HOLD_AT];
    int hold_at_count;
    bool guard_pages;             /* --guard-pages on|off */
    bool canary, canary_thread;
    bool canary_stuck_thread;     /* --canary-stuck-thread: threadcheck's canary */
    bool canary_orphan;           /* --canary-orphan: orphans' canary */
    bool canary_lock_order;       /* --canary-lock-order: Helgrind's canary (a lock-order inversion) */
    bool canary_race;             /* --canary-race: DRD's canary (a data race) */
    bool canary_map;              /* --canary-map: massif's canary (pages mapped and kept) */
    bool help;                    /* --help came first: print the help, nothing else was validated after it */
} ll_cli;

/* Number of rows in the scenario's options table. */
size_t ll_option_count(const ll_scenario *s);

/* Parses argv (getopt_long: argv is permuted) against the harness options
 * and the scenario's table, then validates every value, the payload
 * included (s->payload is called with `run`). On entry run->values must hold
 * ll_option_count(s) entries; on success they hold every option's value (the
 * given one, else the default of the chosen scale) and run->scenario,
 * run->variant, run->scale and run->payload are set.
 *
 * Returns LL_EXIT_OK (cli filled; cli->help means: print the help and stop),
 * LL_EXIT_USAGE with `msg` naming the option and what it accepts, or
 * LL_EXIT_SYSTEM with `msg` when memory ran out. `msg` is always
 * NUL-terminated and at most msg_len bytes. Restartable: it resets getopt's
 * state itself, so it may be called any number of times. */
int ll_cli_parse(const ll_scenario *s, int argc, char **argv, ll_run *run, ll_cli *cli, char *msg,
                 size_t msg_len);

#endif

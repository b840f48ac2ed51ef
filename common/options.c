/* options.c - the command line of every scenario: getopt_long over the
 * harness options and the scenario's table, strict validation of every
 * value, the payload check. Returns a status and a message instead of
 * printing or exiting (options.h), so it can be fuzzed (fuzz/options). */
#include "internal.h"
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Above every char value: getopt_long reports a refused short option by its
 * character in optopt, a refused long one by these. */
enum { OPT_VARIANT = 256, OPT_SCALE, OPT_EVENTS, OPT_TIMEOUT, OPT_HOLD, OPT_HOLD_AT, OPT_HEAP_PROFILE, OPT_GUARD, OPT_CANARY,
       OPT_CANARY_THREAD, OPT_CANARY_STUCK_THREAD, OPT_CANARY_ORPHAN, OPT_CANARY_LOCK_ORDER, OPT_CANARY_RACE, OPT_CANARY_MAP, OPT_HELP, OPT_SCENARIO_BASE = 1000 };

static const struct option harness_options[] = {
    {"variant", required_argument, NULL, OPT_VARIANT},
    {"scale", required_argument, NULL, OPT_SCALE},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"hold-at", required_argument, NULL, OPT_HOLD_AT},
    {"heap-profile", required_argument, NULL, OPT_HEAP_PROFILE},
    {"guard-pages", required_argument, NULL, OPT_GUARD},
    {"canary", no_argument, NULL, OPT_CANARY},
    {"canary-thread", no_argument, NULL, OPT_CANARY_THREAD},
    {"canary-stuck-thread", no_argument, NULL, OPT_CANARY_STUCK_THREAD},
    {"canary-orphan", no_argument, NULL, OPT_CANARY_ORPHAN},
    {"canary-lock-order", no_argument, NULL, OPT_CANARY_LOCK_ORDER},
    {"canary-race", no_argument, NULL, OPT_CANARY_RACE},
    {"canary-map", no_argument, NULL, OPT_CANARY_MAP},
    {"help", no_argument, NULL, OPT_HELP},
};
enum { NHARNESS = sizeof harness_options / sizeof harness_options[0] };

size_t ll_option_count(const ll_scenario *s)
{
    size_t n = 0;
    while (s->options[n].name)
        n++;
    return n;
}

long long ll_opt(const ll_run *run, const char *name)
{
    for (size_t i = 0; run->scenario->options[i].name; i++)
        if (strcmp(run->scenario->options[i].name, name) == 0)
            return run->values[i];
    fprintf(stderr, "leaklab: scenario %s asked for option '%s', which its table does not declare\n",
            run->scenario->name, name);
    _exit(LL_EXIT_SYSTEM);
}

const ll_payload *ll_run_payload(const ll_run *run) { return &run->payload; }

bool ll_payload_of(ll_payload *out, uint64_t workers, uint64_t per_worker_bytes, const char *options,
                   char *why, size_t why_len)
{
    uint64_t bytes;
    uint64_t memory = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (__builtin_mul_overflow(workers, per_worker_bytes, &bytes)) {
        snprintf(why, why_len, "%s: %llu x %llu bytes overflows; lower them", options,
                 (unsigned long long)workers, (unsigned long long)per_worker_bytes);
        return false;
    }
    if (bytes > memory) {
        snprintf(why, why_len, "%s: the payload would be %llu bytes, more than this machine's %llu bytes of memory; "
                 "lower them", options, (unsigned long long)bytes, (unsigned long long)memory);
        return false;
    }
    *out = (ll_payload){.bytes = bytes, .workers = workers};
    return true;
}

/* What a message quotes of the user's text: all of it, or for a long text its
 * first SHOWN_BYTES bytes and "...", so that the message still ends with what
 * it is for (the accepted range), whatever was typed (fuzz/options found a
 * 1,100-byte value pushing the range out of the harness's 1,024-byte buffer). */
enum { SHOWN_BYTES = 200 };
typedef struct { char text[SHOWN_BYTES + 4]; } shown_text;

static const char *shown(const char *text, shown_text *buf)
{
    if (strlen(text) <= SHOWN_BYTES)
        return text;
    memcpy(buf->text, text, SHOWN_BYTES);
    memcpy(buf->text + SHOWN_BYTES, "...", 4);
    return buf->text;
}

/* Formats the refusal into msg; returns LL_EXIT_USAGE for `return refuse(...)`. */
__attribute__((format(printf, 3, 4))) static int refuse(char *msg, size_t msg_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
    return LL_EXIT_USAGE;
}

/* Parses a non-negative decimal integer in [min, max] into *v, or refuses
 * naming the option and its range. Signs, blanks, trailing junk and overflow
 * are refused. */
static int parse_value(const char *opt, const char *text, long long min, long long max, long long *v, char *msg,
                       size_t msg_len)
{
    char *end = NULL;
    errno = 0;
    *v = (text[0] >= '0' && text[0] <= '9') ? strtoll(text, &end, 10) : -1;
    shown_text cut;
    if (text[0] == '-' && text[1] >= '0' && text[1] <= '9')
        return refuse(msg, msg_len, "--%s: '%s' is negative; expected an integer in [%lld, %lld]", opt,
                      shown(text, &cut), min, max);
    if (!end || *end != '\0')
        return refuse(msg, msg_len, "--%s: '%s' is not a number; expected an integer in [%lld, %lld]", opt,
                      shown(text, &cut), min, max);
    if (errno == ERANGE || *v < min || *v > max)
        return refuse(msg, msg_len, "--%s: %s is out of range; expected an integer in [%lld, %lld]", opt,
                      shown(text, &cut), min, max);
    return LL_EXIT_OK;
}

/* The option getopt_long just refused, as the user can find it in what they
 * typed: a long one as its argument ("--bogus", "--canary=1"); a short one
 * as "-c", since it may sit in a cluster ("-xvf") of which getopt names only
 * the character (the harness has no short options: each one is refused). A
 * character that does not print, a backslash and a quote are shown as \xHH. */
static void refused_option(char **argv, char *out, size_t len)
{
    if (optopt != 0 && optopt < OPT_VARIANT) {
        unsigned char c = (unsigned char)optopt;
        if (isprint(c) && c != '\\' && c != '\'')
            snprintf(out, len, "-%c", c);
        else
            snprintf(out, len, "-\\x%02x", c);
    } else {
        shown_text cut;
        snprintf(out, len, "%s", shown(argv[optind - 1], &cut));
    }
}

static int parse_argv(const ll_scenario *s, int argc, char **argv, const struct option *longopts, const char **given,
                      ll_run *run, ll_cli *cli, char *msg, size_t msg_len)
{
    optind = 0; /* GNU: start over, whatever an earlier call left behind */
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1;) {
        long long v;
        shown_text cut;
        switch (c) {
        case OPT_VARIANT:
            cli->variant = NULL;
            for (size_t i = 0; s->variants[i].name; i++)
                if (strcmp(s->variants[i].name, optarg) == 0)
                    cli->variant = &s->variants[i];
            if (!cli->variant) {
                char names[256] = "";
                for (size_t i = 0; s->variants[i].name; i++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                             s->variants[i].name);
                return refuse(msg, msg_len, "--variant: unknown variant '%s'; accepted: %s", shown(optarg, &cut),
                              names);
            }
            break;
        case OPT_SCALE:
            if (strcmp(optarg, "quick") != 0 && strcmp(optarg, "seed") != 0)
                return refuse(msg, msg_len, "--scale: '%s' is not a scale; accepted: quick, seed",
                              shown(optarg, &cut));
            cli->scale = strcmp(optarg, "quick") == 0 ? "quick" : "seed";
            break;
        case OPT_EVENTS: cli->events_path = optarg; break;
        case OPT_TIMEOUT:
            if (parse_value("timeout", optarg, 1, LL_MAX_TIMEOUT_S, &v, msg, msg_len) != LL_EXIT_OK)
                return LL_EXIT_USAGE;
            cli->timeout_s = v;
            break;
        case OPT_HOLD:
            if (strcmp(optarg, "forever") == 0)
                v = -1;
            else if (parse_value("hold", optarg, 0, LL_MAX_TIMEOUT_S, &v, msg, msg_len) != LL_EXIT_OK)
                return LL_EXIT_USAGE;
            cli->hold_s = v;
            break;
        case OPT_HOLD_AT: {
            /* PHASE[:SECONDS]: the phase name is checked only when a phase of that name is
             * reached (the harness does not know a scenario's phases in advance). */
            if (cli->hold_at_count == LL_MAX_HOLD_AT)
                return refuse(msg, msg_len, "--hold-at: given more than %d times", LL_MAX_HOLD_AT);
            struct ll_hold_at *h = &cli->hold_at[cli->hold_at_count];
            const char *colon = strchr(optarg, ':');
            size_t len = colon ? (size_t)(colon - optarg) : strlen(optarg);
            if (len == 0 || len >= sizeof h->phase)
                return refuse(msg, msg_len, "--hold-at: '%s'; expected PHASE[:SECONDS|:driver], PHASE 1-%zu characters",
                              shown(optarg, &cut), sizeof h->phase - 1);
            v = -1;
            if (colon && strcmp(colon + 1, "driver") == 0)
                v = LL_HOLD_FOR_DRIVER;
            else if (colon && parse_value("hold-at", colon + 1, 1, LL_MAX_TIMEOUT_S, &v, msg, msg_len) != LL_EXIT_OK)
                return LL_EXIT_USAGE;
            memcpy(h->phase, optarg, len);
            h->phase[len] = '\0';
            h->seconds = v;
            cli->hold_at_count++;
            break;
        }
        case OPT_HEAP_PROFILE:
#ifndef LL_HEAP_PROFILER
            return refuse(msg, msg_len, "--heap-profile needs the tcmalloc build of this scenario (%s-tcmalloc)",
                          s->name);
#endif
            cli->heap_profile_dir = optarg;
            break;
        case OPT_GUARD:
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
                return refuse(msg, msg_len, "--guard-pages: '%s'; accepted: on, off", shown(optarg, &cut));
            cli->guard_pages = strcmp(optarg, "on") == 0;
            break;
        case OPT_CANARY: cli->canary = true; break;
        case OPT_CANARY_THREAD: cli->canary_thread = true; break;
        case OPT_CANARY_STUCK_THREAD: cli->canary_stuck_thread = true; break;
        case OPT_CANARY_ORPHAN: cli->canary_orphan = true; break;
        case OPT_CANARY_LOCK_ORDER: cli->canary_lock_order = true; break;
        case OPT_CANARY_RACE: cli->canary_race = true; break;
        case OPT_CANARY_MAP: cli->canary_map = true; break;
        case OPT_HELP: cli->help = true; return LL_EXIT_OK; /* nothing after --help is looked at */
        case ':': return refuse(msg, msg_len, "option '%s' needs a value", shown(argv[optind - 1], &cut));
        case '?': {
            char name[1024];
            refused_option(argv, name, sizeof name);
            return refuse(msg, msg_len, "unknown option '%s'", name);
        }
        default: given[c - OPT_SCENARIO_BASE] = optarg; break;
        }
    }
    if (optind < argc)
        return refuse(msg, msg_len, "unexpected argument '%s'", shown(argv[optind], &(shown_text){0}));

    size_t nopts = ll_option_count(s);
    bool quick = strcmp(cli->scale, "quick") == 0;
    for (size_t i = 0; i < nopts; i++) {
        const ll_option *o = &s->options[i];
        if (!given[i])
            run->values[i] = quick ? o->quick : o->seed;
        else if (parse_value(o->name, given[i], o->min, o->max, &run->values[i], msg, msg_len) != LL_EXIT_OK)
            return LL_EXIT_USAGE;
    }
    run->scenario = s, run->variant = cli->variant, run->scale = cli->scale;
    char why[256] = "";
    if (!s->payload(run, &run->payload, why, sizeof why))
        return refuse(msg, msg_len, "%s", why);
    return LL_EXIT_OK;
}

int ll_cli_parse(const ll_scenario *s, int argc, char **argv, ll_run *run, ll_cli *cli, char *msg, size_t msg_len)
{
    *cli = (ll_cli){.variant = &s->variants[0], .scale = "seed", .timeout_s = LL_DEFAULT_TIMEOUT_S,
                    .guard_pages = true};
    if (msg_len)
        msg[0] = '\0';
    run->scenario = s;
    size_t nopts = ll_option_count(s);
    struct option *longopts = calloc(NHARNESS + nopts + 1, sizeof *longopts);
    const char **given = calloc(nopts + 1, sizeof *given); /* text given on the command line, per option */
    int status = LL_EXIT_SYSTEM;
    if (!longopts || !given) {
        snprintf(msg, msg_len, "out of memory at start");
    } else {
        memcpy(longopts, harness_options, sizeof harness_options);
        for (size_t i = 0; i < nopts; i++)
            longopts[NHARNESS + i] =
                (struct option){s->options[i].name, required_argument, NULL, OPT_SCENARIO_BASE + (int)i};
        status = parse_argv(s, argc, argv, longopts, given, run, cli, msg, msg_len);
    }
    free(given);
    free(longopts);
    return status;
}

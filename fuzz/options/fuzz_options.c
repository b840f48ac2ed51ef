/* fuzz_options - every scenario's command line (common/options.c), from
 * hostile argv.
 *
 * Input: the arguments, separated by NUL bytes (at most MAX_ARGS; argv[0] is
 * the scenario's name), parsed against an options table shaped like the
 * real scenarios' (two integer options whose product is the payload, one
 * with the widest range there is, three variants). Under AddressSanitizer
 * and UndefinedBehaviorSanitizer, and then for what the harness promises:
 *   - the status is 0 or 2, never anything else, and does not depend on the
 *     size of the message buffer (a short one is cut, NUL-terminated);
 *   - a refusal has a message; one that says which argument it refuses
 *     ("unknown option 'X'", "option 'X' needs a value", "unexpected
 *     argument 'X'") names an argument the user gave, as given;
 *   - an accepted command line has every value in its declared range, the
 *     payload of the values, and parses again, written back out as
 *     "--name value" pairs, to the same values (nothing is lost or invented).
 * A broken promise aborts; libFuzzer saves the input. */
#include "internal.h"
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ARGS = 48, MSG_BYTES = 1024 };

static void run_variant(ll_run *run) { (void)run; }

static const ll_variant variants[] = {
    {"leaky", "", run_variant},
    {"fixed", "", run_variant},
    {"a-much-longer-variant-name", "", run_variant},
    {0},
};

static const ll_option options[] = {
    {"workers", "threads", 10000, 1000, 1, 100000, ""},
    {"elements", "int64", 10000, 10000, 1, 100000000, ""},
    {"hold-ms", "ms", 5000, 200, 0, 600000, ""},
    {"bytes", "bytes", 0, 0, 0, 9223372036854775807LL, ""}, /* the widest range: LLONG_MAX itself is valid */
    {0},
};

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "workers"), (uint64_t)ll_opt(run, "elements") * 8,
                         "--workers x --elements", why, why_len);
}

static const ll_scenario scenario = {
    .name = "fuzz_scn", .summary = "", .variants = variants, .options = options, .payload = payload,
};
enum { NOPTS = sizeof options / sizeof options[0] - 1 };

static void fail(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_options: %s (message: '%s')\n", what, msg);
    abort();
}

struct parsed {
    int status;
    ll_cli cli;
    long long values[NOPTS];
    ll_payload payload;
    char msg[MSG_BYTES];
};

/* Parses a copy of argv (getopt_long permutes it), into a message buffer of msg_len bytes. */
static void parse(int argc, char **argv, size_t msg_len, struct parsed *p)
{
    char *copy[MAX_ARGS + 8];
    memcpy(copy, argv, (size_t)(argc + 1) * sizeof *argv);
    ll_run run = {0};
    long long values[NOPTS];
    run.values = values;
    memset(p->msg, 'X', sizeof p->msg);
    p->status = ll_cli_parse(&scenario, argc, copy, &run, &p->cli, p->msg, msg_len);
    if (memchr(p->msg, '\0', msg_len) == NULL)
        fail("the message is not NUL-terminated within its buffer", "");
    if (msg_len < sizeof p->msg && p->msg[msg_len] != 'X')
        fail("the message ran past its buffer", p->msg);
    memcpy(p->values, values, sizeof values);
    p->payload = run.payload;
}

/* A message "PREFIX 'X'...": is X one of argv[1..argc-1], whole, or a short
 * option "-c" (c printed, or as \xHH) that starts one of them? (One longer
 * than 200 bytes is shown as its first 200 and "...".) */
static void names_a_given_argument(const char *msg, const char *prefix, int argc, char **argv)
{
    if (strncmp(msg, prefix, strlen(prefix)) != 0)
        return; /* the prefix may also sit inside a quoted argument: only the message's start counts */
    const char *at = msg + strlen(prefix);
    if (at[0] == '-' && at[1] != '-') {
        unsigned c = (unsigned char)at[1];
        if ((at[1] != '\\' || sscanf(at + 1, "\\x%2x", &c) == 1) && strchr(at + 1, '\''))
            for (int i = 1; i < argc; i++)
                if (argv[i][0] == '-' && (unsigned char)argv[i][1] == c && c != '-')
                    return;
    }
    for (int i = 1; i < argc; i++) {
        size_t len = strlen(argv[i]);
        if (strncmp(at, argv[i], len) == 0 && at[len] == '\'')
            return;
        if (len > 200 && strncmp(at, argv[i], 200) == 0 && strncmp(at + 200, "...'", 4) == 0)
            return; /* a long argument, shown cut */
    }
    fail("the message names an argument that was not given", msg);
}

static void check_accepted(const struct parsed *p)
{
    if (p->cli.help)
        return;
    for (int i = 0; i < NOPTS; i++)
        if (p->values[i] < options[i].min || p->values[i] > options[i].max)
            fail("a value outside its declared range was accepted", options[i].name);
    bool known = false;
    for (size_t i = 0; variants[i].name; i++)
        known |= p->cli.variant == &variants[i];
    if (!known || (strcmp(p->cli.scale, "seed") != 0 && strcmp(p->cli.scale, "quick") != 0))
        fail("an unknown variant or scale was accepted", "");
    if (p->cli.timeout_s < 1 || p->cli.timeout_s > LL_MAX_TIMEOUT_S || p->cli.hold_s < -1 ||
        p->cli.hold_s > LL_MAX_TIMEOUT_S)
        fail("a timeout or hold outside its range was accepted", "");
    if (p->payload.workers != (uint64_t)p->values[0] ||
        p->payload.bytes != (uint64_t)p->values[0] * (uint64_t)p->values[1] * 8)
        fail("the payload is not workers x elements x 8", "");
}

/* Writes an accepted command line back out and parses it again. */
static void round_trip(const struct parsed *p)
{
    static char text[16 + 2 * NOPTS][32];
    char *argv[MAX_ARGS + 8];
    int argc = 0;
    argv[argc++] = "fuzz_scn";
    argv[argc++] = "--variant", argv[argc++] = (char *)p->cli.variant->name;
    argv[argc++] = "--scale", argv[argc++] = (char *)p->cli.scale;
    argv[argc++] = "--timeout", snprintf(text[0], sizeof text[0], "%lld", p->cli.timeout_s), argv[argc++] = text[0];
    argv[argc++] = "--guard-pages", argv[argc++] = p->cli.guard_pages ? "on" : "off";
    if (p->cli.hold_s != 0) {
        argv[argc++] = "--hold";
        snprintf(text[1], sizeof text[1], "%lld", p->cli.hold_s);
        argv[argc++] = p->cli.hold_s < 0 ? "forever" : text[1];
    }
    if (p->cli.canary)
        argv[argc++] = "--canary";
    if (p->cli.canary_thread)
        argv[argc++] = "--canary-thread";
    if (p->cli.canary_stuck_thread)
        argv[argc++] = "--canary-stuck-thread";
    static char names[NOPTS][32];
    for (int i = 0; i < NOPTS; i++) {
        snprintf(names[i], sizeof names[i], "--%s", options[i].name);
        snprintf(text[2 + i], sizeof text[2 + i], "%lld", p->values[i]);
        argv[argc++] = names[i], argv[argc++] = text[2 + i];
    }
    argv[argc] = NULL;
    struct parsed again;
    parse(argc, argv, sizeof again.msg, &again);
    if (again.status != LL_EXIT_OK)
        fail("an accepted command line, written back out, is refused", again.msg);
    if (memcmp(again.values, p->values, sizeof p->values) != 0 || again.cli.variant != p->cli.variant ||
        strcmp(again.cli.scale, p->cli.scale) != 0 || again.cli.timeout_s != p->cli.timeout_s ||
        again.cli.hold_s != p->cli.hold_s || again.cli.guard_pages != p->cli.guard_pages ||
        again.cli.canary != p->cli.canary || again.cli.canary_thread != p->cli.canary_thread ||
        again.cli.canary_stuck_thread != p->cli.canary_stuck_thread)
        fail("an accepted command line, written back out, parses to other values", "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* NUL-separated arguments, copied so each is NUL-terminated. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_ARGS + 8];
    int argc = 0;
    argv[argc++] = "fuzz_scn";
    for (size_t i = 0; i <= size && argc < MAX_ARGS; i += strlen(text + i) + 1)
        argv[argc++] = text + i;
    argv[argc] = NULL;

    struct parsed full, cut;
    parse(argc, argv, sizeof full.msg, &full);
    parse(argc, argv, 16, &cut);
    if (full.status != LL_EXIT_OK && full.status != LL_EXIT_USAGE)
        fail("a status other than 0 or 2", full.msg);
    if (cut.status != full.status)
        fail("the status depends on the size of the message buffer", full.msg);
    if (full.status == LL_EXIT_USAGE) {
        if (full.msg[0] == '\0')
            fail("a refusal without a message", "");
        if (strlen(full.msg) >= sizeof full.msg - 1)
            fail("a refusal too long for the harness's message buffer: its end (the accepted range) is cut",
                 full.msg);
        names_a_given_argument(full.msg, "unknown option '", argc, argv);
        names_a_given_argument(full.msg, "option '", argc, argv);
        names_a_given_argument(full.msg, "unexpected argument '", argc, argv);
    } else {
        if (full.msg[0] != '\0')
            fail("an accepted command line with a message", full.msg);
        check_accepted(&full);
        if (!full.cli.help)
            round_trip(&full);
    }
    free(text);
    return 0;
}

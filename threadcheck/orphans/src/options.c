/* options.c - ORPHANS_OPTIONS, in the sanitizers' KEY=VALUE:KEY=VALUE style.
 * Parsed without malloc (the preloaded check at exit must not depend on it). */

#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char or_options_help[] =
    "ORPHANS_OPTIONS: KEY=VALUE pairs separated by ':' (or blanks):\n"
    "  exitcode=N           exit status when the check at exit finds leaked threads (default 23, LeakSanitizer's;\n"
    "                       0 keeps the program's own)\n"
    "  log_path=PATH        write reports to PATH.PID (default: stderr; also 'stderr', 'stdout')\n"
    "  at_exit=0|1          check at exit (default: 1 when preloaded, 0 when linked)\n"
    "  report_signal=N      also write a report (and go on running) each time signal N arrives (default 0: none)\n"
    "  stop_signal=N        the signal that stops the world (default SIGRTMIN+9); the program must not use it\n"
    "  stop_timeout_ms=N    how long the stop may go without any thread answering (default 2000); a thread\n"
    "                       that does not stop makes the analysis incomplete: nothing is reported\n"
    "  settle_tries=N       stop again, up to N times, while some thread runs in user space: it may be a\n"
    "                       step away from blocking (default 2)\n"
    "  cancel_wakes=0|1     1: a thread pthread_cancel could still end (its pthread_t is reachable, it waits at a\n"
    "                       cancellation point) counts as able to run, and is not reported (default 0)\n"
    "  creation_stacks=0|1  record where every thread is created (default 1)\n"
    "  symbolize=0|1        function names and lines in reports (default 1)\n"
    "  unreachable=0|1      also report the bytes reachable from nothing at all (default 0)\n"
    "  explain=0|1          say why each blocked thread counts as wakeable: the chain of references from a\n"
    "                       root (a global, a running thread's stack or registers) to its wait object\n"
    "  verbosity=0|1|2      1: say so when nothing leaked; 2: the analysis' figures too (default 0)\n"
    "  help=1               print this text\n";

void or_config_defaults(or_config *c)
{
    *c = (or_config){
        .exitcode = 23,
        .at_exit = -1,
        .stop_signal = SIGRTMIN + 9,
        .stop_timeout_ms = 2000,
        .settle_tries = 2,
        .creation_stacks = true,
        .symbolize = true,
    };
}

static int number(const char *key, const char *value, size_t len, long long min, long long max, long long *out,
                  char *why, size_t why_len)
{
    long long v = 0;
    size_t i = 0;
    for (; i < len && value[i] >= '0' && value[i] <= '9' && v <= max; i++)
        v = v * 10 + (value[i] - '0');
    if (len == 0 || i != len || v < min || v > max) {
        snprintf(why, why_len, "%s=%.*s: expected an integer in [%lld, %lld]", key, (int)len, value, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int or_config_parse(or_config *c, const char *text, char *why, size_t why_len)
{
    if (!text)
        return 0;
    const char *sep = ": \t\n";
    for (const char *p = text; *p;) {
        p += strspn(p, sep);
        size_t len = strcspn(p, sep);
        if (len == 0)
            break;
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p || eq == p + len - 1) {
            snprintf(why, why_len, "'%.*s': expected KEY=VALUE", (int)len, p);
            return -1;
        }
        char key[32];
        size_t klen = (size_t)(eq - p);
        snprintf(key, sizeof key, "%.*s", (int)(klen < sizeof key - 1 ? klen : sizeof key - 1), p);
        const char *value = eq + 1;
        size_t vlen = len - klen - 1;
        long long v = 0;
        int r = 0;
#define BOOL(name, field)                                                              \
    else if (strcmp(key, name) == 0) {                                                 \
        r = number(key, value, vlen, 0, 1, &v, why, why_len);                          \
        c->field = v == 1;                                                             \
    }
        if (strcmp(key, "exitcode") == 0) {
            r = number(key, value, vlen, 0, 255, &v, why, why_len);
            c->exitcode = (int)v;
        } else if (strcmp(key, "log_path") == 0) {
            if (vlen + 24 >= sizeof c->log_path) {
                snprintf(why, why_len, "log_path: longer than %zu characters", sizeof c->log_path - 24);
                return -1;
            }
            snprintf(c->log_path, sizeof c->log_path, "%.*s", (int)vlen, value);
        } else if (strcmp(key, "at_exit") == 0) {
            r = number(key, value, vlen, 0, 1, &v, why, why_len);
            c->at_exit = (int)v;
        } else if (strcmp(key, "report_signal") == 0) {
            r = number(key, value, vlen, 0, 64, &v, why, why_len);
            c->report_signal = (int)v;
            if (r == 0 && v != 0 && (v == SIGKILL || v == SIGSTOP || v == SIGSEGV || v == SIGBUS)) {
                snprintf(why, why_len, "report_signal=%lld: that signal cannot be used", v);
                return -1;
            }
        } else if (strcmp(key, "stop_signal") == 0) {
            r = number(key, value, vlen, SIGRTMIN, SIGRTMAX, &v, why, why_len);
            c->stop_signal = (int)v;
        } else if (strcmp(key, "stop_timeout_ms") == 0) {
            r = number(key, value, vlen, 1, 600000, &v, why, why_len);
            c->stop_timeout_ms = (unsigned)v;
        } else if (strcmp(key, "settle_tries") == 0) {
            r = number(key, value, vlen, 0, 100, &v, why, why_len);
            c->settle_tries = (unsigned)v;
        } else if (strcmp(key, "verbosity") == 0) {
            r = number(key, value, vlen, 0, 2, &v, why, why_len);
            c->verbosity = (int)v;
        }
        BOOL("cancel_wakes", cancel_wakes)
        BOOL("creation_stacks", creation_stacks)
        BOOL("symbolize", symbolize)
        BOOL("unreachable", unreachable)
        BOOL("explain", explain)
        BOOL("help", help)
        else {
            snprintf(why, why_len,
                     "unknown option '%s' (known: exitcode, log_path, at_exit, report_signal, stop_signal, "
                     "stop_timeout_ms, settle_tries, cancel_wakes, creation_stacks, symbolize, unreachable, explain, "
                     "verbosity, help)",
                     key);
            return -1;
        }
#undef BOOL
        if (r != 0)
            return -1;
        if (c->report_signal && c->report_signal == c->stop_signal) {
            snprintf(why, why_len, "report_signal and stop_signal must differ (both %d)", c->stop_signal);
            return -1;
        }
        p += len;
    }
    return 0;
}

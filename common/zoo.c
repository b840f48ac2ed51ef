/* zoo.c - ll_zoo_main(): what every zoo kernel shares, so that a kernel's
 * file holds only the buggy function and its fix.
 *
 * A kernel is run as a scenario with two variants and one option:
 *   --instances N   how many times the buggy (or fixed) function is called
 *                   (quick 1, seed 1,000): a leak is found by accumulation.
 * Its payload is N x the kernel's instance_bytes, over N workers (one per
 * instance), so expected files stay ratios. Each variant takes the phase
 * "baseline" before the first call and "steady" after the last: the leaky
 * calls return once their leaked threads are parked, the fixed ones once
 * every thread is joined, so "steady" is where expected/zoo/KERNEL.toml's
 * [truth] is checked (threads, unjoined threads, census at the wait site,
 * heap held). */
#include "leaklab.h"

enum { SEED_INSTANCES = 1000, QUICK_INSTANCES = 1, MAX_INSTANCES = 100000 };

static const ll_zoo_kernel *the_kernel; /* one kernel per process */

/* counters.unjoined_threads in every snapshot: threads that ended and were
 * never joined (ll_unjoined_threads, -1 if unknown), read just before each
 * phase, when every thread a call left is parked or ended and none is being
 * created or joined; the comparer checks it against the truth's
 * unjoined_threads. */
static atomic_llong unjoined_threads;
static const ll_counter counters[] = {{"unjoined_threads", &unjoined_threads}, {0}};

static void phase(ll_run *run, const char *name)
{
    atomic_store(&unjoined_threads, ll_unjoined_threads());
    ll_phase(run, name);
}

static const ll_option options[] = {
    {"instances", "calls", SEED_INSTANCES, QUICK_INSTANCES, 1, MAX_INSTANCES,
     "how many times the buggy (or fixed) function is called; what leaks grows with it"},
    {0},
};

static void run_instances(ll_run *run, void (*instance)(ll_run *run, long long instance))
{
    phase(run, "baseline");
    long long n = ll_opt(run, "instances");
    for (long long i = 0; i < n; i++)
        instance(run, i);
    phase(run, "steady");
}

static void run_leaky(ll_run *run) { run_instances(run, the_kernel->leaky); }
static void run_fixed(ll_run *run) { run_instances(run, the_kernel->fixed); }

static bool payload(const ll_run *run, ll_payload *out, char *why, size_t why_len)
{
    return ll_payload_of(out, (uint64_t)ll_opt(run, "instances"), the_kernel->instance_bytes,
                         "--instances x the kernel's payload per call", why, why_len);
}

int ll_zoo_main(const ll_zoo_kernel *kernel, int argc, char **argv)
{
    the_kernel = kernel;
    static ll_variant variants[3];
    variants[0] = (ll_variant){"leaky", kernel->leaky_summary, run_leaky};
    variants[1] = (ll_variant){"fixed", kernel->fixed_summary, run_fixed};
    static ll_scenario scenario;
    scenario = (ll_scenario){
        .name = kernel->name,
        .summary = kernel->summary,
        .variants = variants,
        .options = options,
        .counters = counters,
        .payload = payload,
        .thread_stack_bytes = kernel->thread_stack_bytes ? kernel->thread_stack_bytes : LL_ZOO_STACK_BYTES,
    };
    return ll_main(&scenario, argc, argv);
}

/* moby17176 - GoKer moby#17176 (missing unlock): cleanupDeletedDevices
 * returns early, with nothing to clean, still holding the device set's
 * lock; the next goroutine to lock it waits forever, and its caller's
 * timeout moves on without it.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby17176.go; the fix: moby/moby pull 17176, "devmapper: Drop
 * devices lock before returning from function"):
 *
 *     func (devices *DeviceSet) cleanupDeletedDevices() error {
 *         devices.Lock()
 *         if devices.nrDeletedDevices == 0 {
 *             return nil                    // missing devices.Unlock()
 *         }
 *         devices.Unlock(); return errors.New("Error")
 *     }
 *     func testDevmapperLockReleasedDeviceDeletion() {
 *         ds := &DeviceSet{nrDeletedDevices: 0}
 *         ds.cleanupDeletedDevices()
 *         doneChan := make(chan bool)
 *         go func() { ds.Lock(); defer ds.Unlock(); doneChan <- true }()  // G waits in Lock
 *         select { case <-time.After(time.Millisecond): case <-doneChan: }
 *     }
 *
 * Go's goroutineleak profile reports
 * testDevmapperLockReleasedDeviceDeletion.func1 [sync.Mutex.Lock] (not
 * flaky in Go's test).
 *
 * The C form: the device set's sync.Mutex is a pthread mutex, doneChan a
 * rendezvous ll_chan; the test is the caller itself (it returns, as in
 * Go). The device set is malloc'ed with its devices (DEVICES_BYTES, the
 * payload). time.After is a channel the caller closes where the timer
 * fires in Go, once the goroutine has reached its wait: on the lock if
 * cleanup kept it (leaky), else on doneChan (fixed). With both cases ready the select takes
 * the first, doneChan (Go picks at random; the leak does not depend on
 * it, the fixed run's clean end does). G is left on a lock no running
 * thread will release, holding the device set (orphaned).
 *
 * The fix (the pull request's): unlock before the early return.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { DEVICES_BYTES = 64 * 1024 }; /* the device set's devices: the payload of one instance */

struct device_set {
    pthread_mutex_t mu;             /* Go: DeviceSet's sync.Mutex */
    int nr_deleted_devices;
    bool lock_kept;                 /* forced order: whether cleanup returned holding mu */
    unsigned char *devices;
    bool fixed;
    ll_chan *done_chan;             /* Go: doneChan, unbuffered */
    pthread_t locker;               /* G */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct device_set *new_device_set(ll_run *run, bool fixed)
{
    struct device_set *ds = ll_xmalloc(run, sizeof *ds);
    *ds = (struct device_set){.devices = ll_xmalloc(run, DEVICES_BYTES), .fixed = fixed,
                              .done_chan = ll_chan_new(run, 0)};
    memset(ds->devices, 0x5a, DEVICES_BYTES);
    pthread_mutex_init(&ds->mu, NULL);
    return ds;
}

static void free_device_set(struct device_set *ds)
{
    pthread_mutex_destroy(&ds->mu);
    ll_chan_free(ds->done_chan);
    free(ds->devices);
    free(ds);
}

static int cleanup_deleted_devices(struct device_set *ds)
{
    pthread_mutex_lock(&ds->mu);
    if (ds->nr_deleted_devices == 0) {
        ds->lock_kept = true;
        if (ds->fixed)
            LL_FIX(pthread_mutex_unlock(&ds->mu); ds->lock_kept = false); /* FIX: drop the lock before returning */
        return 0;                                  /* leaky: returns holding it */
    }
    pthread_mutex_unlock(&ds->mu);
    return -1;
}

/* G. */
static LL_WAIT_SITE void lock_and_signal(struct device_set *ds)
{
    pthread_mutex_lock(&ds->mu);             /* leaky: held by a function that has returned */
    ll_chan_send(ds->done_chan, NULL);
    pthread_mutex_unlock(&ds->mu);
}

static void *locker(void *ds) { lock_and_signal(ds); return NULL; }

/* testDevmapperLockReleasedDeviceDeletion: returns as Go's does, on the
 * first ready case. */
static struct device_set *test_lock_released(ll_run *run, bool fixed)
{
    struct device_set *ds = new_device_set(run, fixed);
    cleanup_deleted_devices(ds);
    ll_thread_start(run, &ds->locker, locker, ds);
    if (ds->lock_kept)
        ll_await_parked(run, ds->locker, &ds->mu, sizeof ds->mu); /* G reached the lock ... */
    else
        ll_chan_await_parked(run, ds->done_chan, ds->locker);     /* ... or doneChan */
    ll_chan *after = ll_chan_new(run, 0);
    ll_chan_close(after);                    /* time.After(time.Millisecond) fires */
    ll_select_case cases[] = {{.chan = ds->done_chan}, {.chan = after}};
    ll_select(cases, 2, false);
    ll_chan_free(after);
    return ds;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    test_lock_released(run, false);          /* the timer fired; G waits on the lock forever */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct device_set *ds = test_lock_released(run, true);
    LL_FIX(pthread_join(ds->locker, NULL));  /* FIX: G got the lock and handed over done: join it */
    LL_FIX(free_device_set(ds));             /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby17176",
    .summary = "GoKer moby#17176 (missing unlock): cleanupDeletedDevices returns early holding the\n"
               "device set's lock; the next goroutine to lock it waits forever.",
    .leaky_summary = "the early return keeps the lock: the locker waits forever, holding the device set",
    .fixed_summary = "unlock before the early return: the locker signals done, joined, the device set freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = DEVICES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }

/* moby4951 - GoKer moby#4951 (AB-BA): DeleteDevice drops the global lock
 * while it holds a device's lock and waits for the removal; a second
 * DeleteDevice of the same device takes the global lock meanwhile and
 * waits for the device's; the first, waking, waits for the global one.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/moby4951.go; the fix: moby/moby pull 4951, "Fix AB-BA deadlock in
 * devicemapper backend"):
 *
 *     func (devices *DeviceSet) DeleteDevice(hash string) {     // G1, G2
 *         devices.Lock(); defer devices.Unlock()                 // A
 *         info := devices.lookupDevice(hash)
 *         info.lock.Lock(); defer info.lock.Unlock()             // B: G2 waits here
 *         devices.deleteDevice(info)     // removeDeviceAndWait:
 *     }                                  //   devices.Unlock(); sleep; devices.Lock(): G1 waits here
 *     go ds.DeleteDevice("info1"); go ds.DeleteDevice("info1")
 *
 * Go's goroutineleak profile reports (*DeviceSet).DeleteDevice
 * [sync.Mutex.Lock] for both (flaky in Go's test).
 *
 * The C form: both locks are pthread mutexes; the device set is malloc'ed
 * with its devices' metadata (DEVICES_BYTES, the payload). The order is
 * forced, not hoped for: G2 is started once G1 has dropped the global lock
 * in removeDeviceAndWait, and G1's wait for the removal (Go's 300 ns
 * sleep) ends only once G2 is parked on the device's lock. Both threads
 * are left in DeleteDevice, each holding what the other waits for
 * (orphaned).
 *
 * The fix (the pull request's: "a lock ordering such that the device
 * locks are always grabbed before the global lock"): DeleteDevice looks
 * the device up (the map has a lock of its own), takes the device's lock,
 * and only then the global one.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { DEVICES_BYTES = 64 * 1024 }; /* the devices' metadata: the payload of one instance */

struct dev_info {
    pthread_mutex_t lock;           /* Go: DevInfo.lock, B */
    const char *name;
};

struct device_set {
    pthread_mutex_t mu;             /* Go: DeviceSet's sync.Mutex, the global lock A */
    pthread_mutex_t infos_lock;     /* the fix's lock for the map alone */
    struct dev_info infos[2];       /* Go: infos map: "info1", "info2" */
    unsigned char *metadata;
    bool fixed;
    ll_chan *removing;              /* forced order: closed once G1 has dropped A to wait */
    ll_chan *removed;               /* forced order: G1's wait ends when this closes */
    pthread_t deleters[2];          /* G1, G2 */
};

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct device_set *new_device_set(ll_run *run, bool fixed)
{
    struct device_set *ds = ll_xmalloc(run, sizeof *ds);
    *ds = (struct device_set){.infos = {{.name = "info1"}, {.name = "info2"}},
                              .metadata = ll_xmalloc(run, DEVICES_BYTES), .fixed = fixed,
                              .removing = ll_chan_new(run, 0), .removed = ll_chan_new(run, 0)};
    memset(ds->metadata, 0x5a, DEVICES_BYTES);
    pthread_mutex_init(&ds->mu, NULL);
    pthread_mutex_init(&ds->infos_lock, NULL);
    for (int i = 0; i < 2; i++)
        pthread_mutex_init(&ds->infos[i].lock, NULL);
    return ds;
}

static void free_device_set(struct device_set *ds)
{
    for (int i = 0; i < 2; i++)
        pthread_mutex_destroy(&ds->infos[i].lock);
    pthread_mutex_destroy(&ds->infos_lock);
    pthread_mutex_destroy(&ds->mu);
    ll_chan_free(ds->removing);
    ll_chan_free(ds->removed);
    free(ds->metadata);
    free(ds);
}

static struct dev_info *lookup_device(struct device_set *ds, const char *hash)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(ds->infos[i].name, hash) == 0)
            return &ds->infos[i];
    return NULL;
}

static void remove_device_and_wait(struct device_set *ds)
{
    pthread_mutex_unlock(&ds->mu);           /* devices.Unlock() */
    void *unused;
    ll_chan_close(ds->removing);             /* forced order: the second caller may come now */
    ll_chan_recv(ds->removed, &unused);      /* Go: time.Sleep(300ns), until G2 waits for B */
    pthread_mutex_lock(&ds->mu);             /* leaky: G2 holds A, waiting for our B */
}

static LL_WAIT_SITE void delete_device(struct device_set *ds, const char *hash)
{
    struct dev_info *info;
    if (ds->fixed && LL_FIX_VALUE(true, false)) { /* FIX: B before A, always */
        pthread_mutex_lock(&ds->infos_lock); /* lookupDeviceWithLock */
        info = lookup_device(ds, hash);
        pthread_mutex_unlock(&ds->infos_lock);
        pthread_mutex_lock(&info->lock);     /* B */
        pthread_mutex_lock(&ds->mu);         /* A */
    } else {
        pthread_mutex_lock(&ds->mu);         /* A */
        info = lookup_device(ds, hash);
        pthread_mutex_lock(&info->lock);     /* B: leaky, the second caller waits here */
    }
    remove_device_and_wait(ds);              /* devices.deleteDevice(info) */
    pthread_mutex_unlock(&info->lock);
    pthread_mutex_unlock(&ds->mu);
}

static void *delete_info1(void *ds) { delete_device(ds, "info1"); return NULL; }

static struct device_set *start(ll_run *run, bool fixed)
{
    struct device_set *ds = new_device_set(run, fixed);
    ll_thread_start(run, &ds->deleters[0], delete_info1, ds); /* go ds.DeleteDevice("info1"): G1 */
    void *unused;
    ll_chan_recv(ds->removing, &unused);                       /* forced order: G1 dropped A, holds B */
    ll_thread_start(run, &ds->deleters[1], delete_info1, ds); /* go ds.DeleteDevice("info1"): G2 */
    ll_await_parked(run, ds->deleters[1], &ds->infos[0].lock, sizeof ds->infos[0].lock); /* G2 waits for B */
    ll_chan_close(ds->removed);                                /* G1's removal is over */
    return ds;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct device_set *ds = start(run, false);
    ll_await_parked(run, ds->deleters[0], &ds->mu, sizeof ds->mu); /* G1 waits for A, G2 holds it */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct device_set *ds = start(run, true);
    LL_FIX(pthread_join(ds->deleters[0], NULL)); /* FIX: G2 waits for B holding nothing: G1 retakes A */
    LL_FIX(pthread_join(ds->deleters[1], NULL)); /* and finishes, then G2 does: join both */
    LL_FIX(free_device_set(ds));                 /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "moby4951",
    .summary = "GoKer moby#4951 (AB-BA): DeleteDevice drops the global lock while it holds a device's\n"
               "lock; a second DeleteDevice takes the global lock and waits for the device's.",
    .leaky_summary = "global lock, then device lock: the two deleters deadlock, holding the device set",
    .fixed_summary = "device lock, then global lock: the second deleter waits holding nothing; both finish, freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = DEVICES_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }

/* openssl_once - C: openssl/openssl issue 1899, pull 1922 (pthread_once
 * re-entered): OPENSSL_init_crypto runs the base initialisation once with
 * pthread_once; an error inside it goes through the error stack, which
 * calls OPENSSL_init_crypto again, on the same once control, from inside
 * its own init routine: the thread waits for itself to finish, forever.
 *
 * The original (crypto/init.c of OpenSSL 1.1.0c; issue 1899, "`openssl
 * version` command hangs with 1.1.0c and `no-dso` option"):
 *
 *     OPENSSL_init_crypto():
 *       if (!RUN_ONCE(&base, ossl_init_base)) return 0;     // pthread_once on Unix
 *     ossl_init_base():
 *       init_lock = CRYPTO_THREAD_lock_new(); ...
 *       dso = DSO_dsobyaddr(&base_inited, ..);               // fails without DSO support
 *         -> ERR_put_error -> ERR_get_state
 *           -> OPENSSL_init_crypto -> RUN_ONCE(&base, ..)    // re-entered: waits for itself
 *       base_inited = 1;
 *
 * The pull request (levitte, merged as "Stop init loops"): "the libcrypto
 * init code would loop, causing a deadlock. This would typically happen if
 * something in ossl_init_base() caused an OpenSSL error, and the error
 * stack routines would recurse into the init code before the flag that
 * ossl_init_base() had been run was checked." (The same recursion hangs
 * CRYPTO_THREAD_run_once's hot loop on Windows: pull 1913.)
 *
 * The C form: struct libcrypto is one library state (the original's
 * statics, here one per call: --instances N makes N once controls), with
 * its `base` once control and base_inited flag; pthread_once's routine
 * takes no argument, so the thread's library is a thread-local pointer. The
 * base initialisation allocates the error string table (ERR_STRINGS_BYTES,
 * the payload); DSO_dsobyaddr is a stand-in that fails as it does without
 * DSO support. No interleaving to force: one thread, the same path every
 * time. glibc's pthread_once, entered again while its routine runs on the
 * same thread, sleeps in futex(2) on the once control (ll_await_parked on
 * it). Per instance one thread leaks (openssl_init_crypto, on a once
 * control), holding the library; nothing else reaches it (orphaned).
 *
 * The fix (the pull request's): ossl_init_base sets base_inited = 1 before
 * the step that can raise an error ("Everything needed to be initialized in
 * this function before threads come along MUST happen before base_inited
 * is set to 1"), and OPENSSL_init_crypto checks the flag before the once:
 * `if (!base_inited && !RUN_ONCE(&base, ossl_init_base))`. The recursion
 * returns at once; the error is recorded; the initialisation ends.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { ERR_STRINGS_BYTES = 64 * 1024 }; /* the error string table: the payload of one instance */

struct libcrypto {
    ll_run *run;
    pthread_once_t base;      /* static CRYPTO_ONCE base */
    int base_inited;          /* static int base_inited */
    bool fixed;
    unsigned char *err_strings;
    int errors;               /* the error stack's depth */
    pthread_t app;
};

static __thread struct libcrypto *this_lib; /* pthread_once's routine takes no argument */

static int openssl_init_crypto(struct libcrypto *lib);

/* A frame of its own (never inlined), so the tools charge the payload to it. */
__attribute__((noinline)) static struct libcrypto *new_libcrypto(ll_run *run, bool fixed)
{
    struct libcrypto *lib = ll_xmalloc(run, sizeof *lib);
    *lib = (struct libcrypto){.run = run, .base = PTHREAD_ONCE_INIT, .fixed = fixed};
    return lib;
}

static void free_libcrypto(struct libcrypto *lib)
{
    free(lib->err_strings);
    free(lib);
}

/* ERR_put_error -> ERR_get_state: the error stack makes sure the library is initialised. */
static void err_put_error(struct libcrypto *lib)
{
    if (!openssl_init_crypto(lib)) /* leaky: re-enters the once that is running */
        return;
    lib->errors++;
}

/* DSO_dsobyaddr without DSO support: fails, and says so. */
static void *dso_dsobyaddr(struct libcrypto *lib)
{
    err_put_error(lib);
    return NULL;
}

/* ossl_init_base: the once routine. */
static void ossl_init_base(void)
{
    struct libcrypto *lib = this_lib;
    lib->err_strings = ll_xmalloc(lib->run, ERR_STRINGS_BYTES); /* the base's tables */
    memset(lib->err_strings, 0x5a, ERR_STRINGS_BYTES);
    if (lib->fixed)
        LL_FIX(lib->base_inited = 1); /* FIX: set before anything that can raise an error */
    dso_dsobyaddr(lib);               /* "Deliberately leak a reference to ourselves" */
    lib->base_inited = 1;
}

static LL_WAIT_SITE int openssl_init_crypto(struct libcrypto *lib)
{
    this_lib = lib;
    if (lib->fixed && LL_FIX_VALUE(lib->base_inited, 0)) /* FIX: check the flag before the once */
        return 1;
    return pthread_once(&lib->base, ossl_init_base) == 0; /* leaky, re-entered: sleeps forever */
}

static void *app_thread(void *lib) { openssl_init_crypto(lib); return NULL; }

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct libcrypto *lib = new_libcrypto(run, false);
    ll_thread_start(run, &lib->app, app_thread, lib);
    ll_await_parked(run, lib->app, &lib->base, sizeof lib->base); /* inside its own once */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct libcrypto *lib = new_libcrypto(run, true);
    ll_thread_start(run, &lib->app, app_thread, lib);
    LL_FIX(pthread_join(lib->app, NULL)); /* FIX: the recursion returned; the initialisation ended */
    LL_FIX(free_libcrypto(lib));
}

static const ll_zoo_kernel kernel = {
    .name = "openssl_once",
    .summary = "C: openssl/openssl issue 1899, pull 1922 (pthread_once re-entered): an error inside the\n"
               "base initialisation re-enters OPENSSL_init_crypto, whose pthread_once waits for itself.",
    .leaky_summary = "the error stack re-enters the running pthread_once on the same thread: it sleeps forever",
    .fixed_summary = "base_inited is set before the failing step and checked before the once: the recursion returns",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = ERR_STRINGS_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }

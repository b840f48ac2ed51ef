/* agent.c - liballocstats: the process's malloc figures, on request, on an abstract unix
 * socket (include/allocstats.h is the contract; docs/memstats.md how memstats uses it).
 *
 * Load time (the constructor): a datagram socket, bound, moved to a high descriptor, and one
 * thread with every signal blocked. Any step that fails undoes the earlier ones and leaves
 * the library inert: no output, no error, nothing the host can see. Each request: one
 * datagram with its sender's credentials (SCM_CREDENTIALS), the uid checked, the
 * allocators' APIs looked up, one JSON datagram sent back.
 *
 * Why datagrams and not a listening stream socket: accept() takes the lowest free
 * descriptor number for the new connection before it even blocks (Linux reserves it in
 * accept4), so an agent waiting in accept() made the host's next open() return 4 instead
 * of 3 (measured: 8 runs of 10). recvmsg() on one socket creates no descriptor, ever. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "allocstats.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define AGENT_STACK (128 * 1024)  /* the figures need a few KiB; jemalloc's tsd set-up more */
#define ANSWER_MAX 4096
#define MALLCTL_ARENAS_ALL 4096   /* jemalloc's "all arenas" index (jemalloc.h), a stable ABI */

static int agent_fd = -1;
static dev_t agent_dev;  /* the socket's identity: a host that closes every descriptor (closefrom, */
static ino_t agent_ino;  /* close_range) may get this number back for a file of its own */

/* Is agent_fd still the agent's socket? If not, the agent must never touch it again. */
static int still_ours(void)
{
    struct stat st;
    return fstat(agent_fd, &st) == 0 && st.st_dev == agent_dev && st.st_ino == agent_ino;
}

/* ---- is NAME defined in a loaded object? (without dlsym: its failure mallocs) ---- */

struct lookup {
    const char *name;
    uint32_t hash;
    int found;
};

static uint32_t gnu_hash(const char *s)
{
    uint32_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

/* A pointer of the dynamic section: ld.so relocates them in place, except in read-only
 * dynamic sections (the vdso's), where they stay offsets. */
static uintptr_t dyn_ptr(uintptr_t value, uintptr_t base)
{
    return value < base ? value + base : value;
}

static int lookup_one(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct lookup *q = arg;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn)
        return 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const uint32_t *gh = NULL;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB)
            symtab = (const ElfW(Sym) *)dyn_ptr(d->d_un.d_ptr, info->dlpi_addr);
        else if (d->d_tag == DT_STRTAB)
            strtab = (const char *)dyn_ptr(d->d_un.d_ptr, info->dlpi_addr);
        else if (d->d_tag == DT_GNU_HASH)
            gh = (const uint32_t *)dyn_ptr(d->d_un.d_ptr, info->dlpi_addr);
    }
    if (!symtab || !strtab || !gh)
        return 0; /* no GNU hash table (a limit: Debian links everything with one) */
    uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2], bloom_shift = gh[3];
    if (nbuckets == 0 || bloom_size == 0)
        return 0;
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&gh[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    const uint32_t *chain = &buckets[nbuckets];
    const unsigned bits = sizeof(ElfW(Addr)) * 8;
    ElfW(Addr) word = bloom[(q->hash / bits) % bloom_size];
    ElfW(Addr) mask = ((ElfW(Addr))1 << (q->hash % bits)) | ((ElfW(Addr))1 << ((q->hash >> bloom_shift) % bits));
    if ((word & mask) != mask)
        return 0;
    uint32_t idx = buckets[q->hash % nbuckets];
    if (idx < symoffset)
        return 0;
    for (;; idx++) {
        uint32_t h = chain[idx - symoffset];
        const ElfW(Sym) *sym = &symtab[idx];
        if ((h | 1) == (q->hash | 1) && sym->st_shndx != SHN_UNDEF && strcmp(strtab + sym->st_name, q->name) == 0) {
            q->found = 1;
            return 1;
        }
        if (h & 1)
            return 0;
    }
}

/* NAME's address as dlsym(RTLD_DEFAULT) resolves it, or NULL; `from` the file defining it. */
static void *find(const char *name, const char **from)
{
    struct lookup q = {name, gnu_hash(name), 0};
    dl_iterate_phdr(lookup_one, &q);
    if (!q.found)
        return NULL;
    void *p = dlsym(RTLD_DEFAULT, name);
    Dl_info where;
    *from = p && dladdr(p, &where) && where.dli_fname && where.dli_fname[0] ? where.dli_fname : "?";
    return p;
}

/* ---- the answer ---- */

struct out {
    char buf[ANSWER_MAX];
    size_t len;
    int overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof o->buf - o->len)
        o->overflow = 1;
    else
        o->len += (size_t)n;
}

/* A file name as a JSON string: printable ASCII kept, the rest escaped or dropped. */
static void put_string(struct out *o, const char *s)
{
    put(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            put(o, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            put(o, "%c", c);
        else
            put(o, "\\u%04x", c);
    }
    put(o, "\"");
}

static const char *const TCMALLOC_PROPERTIES[] = {
    "generic.current_allocated_bytes", "generic.heap_size", "generic.total_physical_bytes",
    "tcmalloc.pageheap_free_bytes", "tcmalloc.pageheap_unmapped_bytes", "tcmalloc.central_cache_free_bytes",
    "tcmalloc.transfer_cache_free_bytes", "tcmalloc.thread_cache_free_bytes",
};

static void tcmalloc_figures(struct out *o)
{
    const char *from = NULL;
    int (*property)(const char *, size_t *) =
        (int (*)(const char *, size_t *))find("MallocExtension_GetNumericProperty", &from);
    if (!property)
        return;
    put(o, ",\"tcmalloc\":{\"from\":");
    put_string(o, from);
    for (size_t i = 0; i < sizeof TCMALLOC_PROPERTIES / sizeof TCMALLOC_PROPERTIES[0]; i++) {
        size_t value = 0;
        const char *key = strchr(TCMALLOC_PROPERTIES[i], '.') + 1;
        if (property(TCMALLOC_PROPERTIES[i], &value))
            put(o, ",\"%s\":%zu", key, value);
        else
            put(o, ",\"%s\":-1", key);
    }
    put(o, "}");
}

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static long long jemalloc_u64(mallctl_fn mallctl, const char *name)
{
    uint64_t value = 0;
    size_t len = sizeof value;
    return mallctl(name, &value, &len, NULL, 0) == 0 && value <= LLONG_MAX ? (long long)value : -1;
}

static long long jemalloc_size(mallctl_fn mallctl, const char *name)
{
    size_t value = 0, len = sizeof value;
    return mallctl(name, &value, &len, NULL, 0) == 0 ? (long long)value : -1;
}

static void jemalloc_figures(struct out *o)
{
    const char *from = NULL;
    mallctl_fn mallctl = (mallctl_fn)find("mallctl", &from);
    if (!mallctl)
        return;
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    mallctl("epoch", &epoch, &len, &epoch, len); /* refresh the stats snapshot */
    unsigned narenas = 0;
    len = sizeof narenas;
    long long n_arenas = mallctl("arenas.narenas", &narenas, &len, NULL, 0) == 0 ? (long long)narenas : -1;
    long long page = jemalloc_size(mallctl, "arenas.page");
    put(o, ",\"jemalloc\":{\"from\":");
    put_string(o, from);
    put(o, ",\"page\":%lld,\"narenas\":%lld", page, n_arenas);
    static const char *const totals[] = {"allocated", "active", "metadata", "resident", "mapped", "retained"};
    char name[96];
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        snprintf(name, sizeof name, "stats.%s", totals[i]);
        put(o, ",\"%s\":%lld", totals[i], jemalloc_size(mallctl, name));
    }
    /* Page counts, given in bytes: dirty and muzzy now, and the pages purged so far
     * (cumulative, uint64_t): jemalloc's retained also holds address space it reserved and
     * never touched, so what was given back shows only in the purge counts */
    static const struct {
        const char *stat, *key;
        bool u64;
    } pages[] = {{"pdirty", "dirty_bytes", false},
                 {"pmuzzy", "muzzy_bytes", false},
                 {"dirty_purged", "dirty_purged_bytes", true},
                 {"muzzy_purged", "muzzy_purged_bytes", true}};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        snprintf(name, sizeof name, "stats.arenas.%u.%s", (unsigned)MALLCTL_ARENAS_ALL, pages[i].stat);
        long long n = pages[i].u64 ? jemalloc_u64(mallctl, name) : jemalloc_size(mallctl, name);
        put(o, ",\"%s\":%lld", pages[i].key, n >= 0 && page > 0 ? n * page : -1);
    }
    static const char *const arena_bytes[] = {"tcache_bytes", "tcache_stashed_bytes", "internal"};
    for (size_t i = 0; i < sizeof arena_bytes / sizeof arena_bytes[0]; i++) {
        snprintf(name, sizeof name, "stats.arenas.%u.%s", (unsigned)MALLCTL_ARENAS_ALL, arena_bytes[i]);
        put(o, ",\"%s\":%lld", arena_bytes[i], jemalloc_size(mallctl, name));
    }
    put(o, "}");
}

static void mallinfo_figures(struct out *o)
{
    const char *from = NULL;
    struct mallinfo2 (*mi2)(void) = (struct mallinfo2 (*)(void))find("mallinfo2", &from);
    if (!mi2)
        return;
    struct mallinfo2 mi = mi2();
    put(o, ",\"mallinfo2\":{\"from\":");
    put_string(o, from);
    put(o, ",\"arena\":%zu,\"ordblks\":%zu,\"hblkhd\":%zu,\"uordblks\":%zu,\"fordblks\":%zu,\"keepcost\":%zu}",
        mi.arena, mi.ordblks, mi.hblkhd, mi.uordblks, mi.fordblks, mi.keepcost);
}

/* One request: a datagram from `from`, its sender's credentials in `cred`. */
static void answer(const struct sockaddr_un *from, socklen_t from_len, const struct ucred *cred)
{
    if (cred->uid != geteuid() && cred->uid != 0)
        return; /* another user: no answer */
    static struct out o; /* one request at a time: the agent's only thread writes it */
    o.len = 0;
    o.overflow = 0;
    put(&o, "{\"allocstats\":%d,\"pid\":%ld", ALLOCSTATS_FORMAT, (long)getpid());
    tcmalloc_figures(&o);
    jemalloc_figures(&o);
    mallinfo_figures(&o);
    put(&o, "}\n");
    if (o.overflow)
        return; /* never a truncated line */
    /* never waits: a client whose queue is full, or gone, gets nothing */
    sendto(agent_fd, o.buf, o.len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)from, from_len);
}

static void *agent(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "allocstats"); /* for itself: prctl, no file opened */
    for (;;) {
        char request[64];
        struct sockaddr_un from;
        /* room for the sender's credentials and nothing else: descriptors a client might
         * send (SCM_RIGHTS) find no room, so the kernel never installs them in the host */
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {request, sizeof request};
        struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control.buf, .msg_controllen = sizeof control.buf};
        if (!still_ours())
            return NULL; /* the host closed it (and may have reused the number): inert from now on */
        ssize_t n = recvmsg(agent_fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == ENOBUFS || errno == ENOMEM) {
                struct timespec pause = {0, 100 * 1000 * 1000}; /* never spin */
                nanosleep(&pause, NULL);
                continue;
            }
            return NULL; /* the socket is gone: inert from now on */
        }
        if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC) || msg.msg_namelen <= offsetof(struct sockaddr_un, sun_path))
            continue; /* more than a request, or a sender with no address to answer */
        const struct ucred *cred = NULL;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                cred = (const struct ucred *)CMSG_DATA(c);
        if (cred && still_ours()) /* a recvmsg that was waiting when the host closed it ends here */
            answer(&from, msg.msg_namelen, cred);
    }
}

/* ---- load time ---- */

static void close_in_child(void)
{
    /* the child has no agent thread: it keeps no socket either */
    if (agent_fd >= 0) {
        close(agent_fd);
        agent_fd = -1;
    }
}

/* The lowest descriptor number the socket may take: high above the host's. */
static int fd_floor(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > ALLOCSTATS_FD_FLOOR + 64)
        return ALLOCSTATS_FD_FLOOR;
    return lim.rlim_cur > 64 ? (int)lim.rlim_cur - 16 : -1; /* a tiny limit: stay inert */
}

__attribute__((constructor)) static void allocstats_start(void)
{
    int saved_errno = errno; /* the host never sees ours */
    int floor = fd_floor();
    int fd = floor < 0 ? -1 : socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0)
        goto out;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, ALLOCSTATS_SOCKET_PREFIX "%ld", (long)getpid());
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int high = -1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&addr, addr_len) != 0 ||
        (high = fcntl(fd, F_DUPFD_CLOEXEC, floor)) < 0) {
        close(fd);
        goto out;
    }
    struct stat st;
    if (fstat(high, &st) != 0) {
        close(fd);
        close(high);
        goto out;
    }
    agent_dev = st.st_dev;
    agent_ino = st.st_ino;
    close(fd);
    agent_fd = high;
    /* the fork handler first: once the thread runs, the socket must stay open (closing a
     * descriptor another thread waits on in recvmsg() would leave it reading whatever the
     * host opens next under that number) */
    pthread_attr_t attr;
    sigset_t all;
    sigfillset(&all);
    pthread_t thread;
    int started = pthread_atfork(NULL, NULL, close_in_child) == 0 && pthread_attr_init(&attr) == 0;
    if (started) {
        started = pthread_attr_setstacksize(&attr, AGENT_STACK) == 0 &&
                  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                  /* born with every signal blocked: the caller's mask is never touched */
                  pthread_attr_setsigmask_np(&attr, &all) == 0 &&
                  pthread_create(&thread, &attr, agent, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        close(agent_fd); /* no thread waits on it */
        agent_fd = -1;
    }
out:
    errno = saved_errno;
}

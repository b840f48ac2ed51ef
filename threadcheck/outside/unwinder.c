/* unwinder.c - unwind every stopped thread with elfutils' libdw, then name
 * every distinct return address once.
 *
 * One Dwfl for the whole process: the threads share one address space, so
 * the modules, their call-frame information (.eh_frame, .debug_frame) and
 * libdw's caches of it are loaded once, before any thread is stopped, and
 * serve all of them. libdw does the unwinding (CFI, with its frame-pointer
 * fallback); what we supply through Dwfl_Thread_Callbacks is what it cannot
 * know by itself: which threads there are, their registers (read with ptrace
 * by stopper.c) and the target's memory, read from /proc/PID/mem a page at a
 * time through a small direct-mapped cache (a stack's words are read many
 * times while unwinding; one pread per page instead of one PTRACE_PEEKDATA
 * per word is most of the speed difference with eu-stack and gdb).
 *
 * Each (PC, activation) pair becomes one location; ten thousand threads
 * blocked at the same place share a handful of locations, and naming them
 * (symbol tables, DWARF line tables, inlined-call chains) happens once per
 * location, after the threads have been let go. */
#include "threaddump.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE_BYTES 4096u
#define CACHE_PAGES 256u /* 1 MiB: a few pages per stack, and the stacks are read one after another */

struct cached_page {
    uint64_t addr;
    bool valid, readable;
    unsigned char data[PAGE_BYTES];
};

struct unwinder {
    struct target *t;
    Dwfl *dwfl;
    Dwfl_Callbacks callbacks; /* must outlive dwfl */
    char *debuginfo_path;
    size_t next_index;        /* next_thread's position in t->threads */
    struct thread *current;
    struct cached_page *pages;
    /* (pc, activation) -> location index + 1, open addressing */
    uint32_t *slots;
    size_t nslots, locations_cap;
    /* the frames of the thread being unwound */
    uint64_t *scratch_pc;
    bool *scratch_activation;
    int depth, max_frames;
    Dwfl_Module **dwfl_modules; /* parallel to t->modules */
    size_t modules_cap;
};

/* ---- memory ---- */

/* Copies len bytes at addr from the target. False if any is unreadable. */
static bool read_target(struct unwinder *u, uint64_t addr, void *out, size_t len)
{
    unsigned char *dst = out;
    while (len > 0) {
        uint64_t page = addr & ~(uint64_t)(PAGE_BYTES - 1);
        struct cached_page *p = &u->pages[(page / PAGE_BYTES) % CACHE_PAGES];
        if (!p->valid || p->addr != page) {
            p->addr = page;
            p->valid = true;
            p->readable = page <= INT64_MAX - PAGE_BYTES &&
                          pread(u->t->mem_fd, p->data, PAGE_BYTES, (off_t)page) == (ssize_t)PAGE_BYTES;
        }
        size_t offset = (size_t)(addr - page), chunk = PAGE_BYTES - offset;
        if (chunk > len)
            chunk = len;
        if (p->readable) {
            memcpy(dst, p->data + offset, chunk);
        } else if (addr > INT64_MAX || pread(u->t->mem_fd, dst, chunk, (off_t)addr) != (ssize_t)chunk) {
            return false; /* a page only partly mapped is read exactly; else unmapped */
        }
        dst += chunk;
        addr += chunk;
        len -= chunk;
    }
    return true;
}

static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
    (void)dwfl;
    struct unwinder *u = arg;
    return read_target(u, addr, result, sizeof *result);
}

/* ---- threads and registers ---- */

static pid_t next_thread(Dwfl *dwfl, void *arg, void **thread_argp)
{
    (void)dwfl;
    struct unwinder *u = arg;
    while (u->next_index < u->t->nthreads) {
        struct thread *th = &u->t->threads[u->next_index++];
        if ((th->fate == FATE_STOPPED && th->have_regs) || (th->fate == FATE_UNSTOPPED && th->nr >= 0)) {
            u->current = th;
            *thread_argp = th;
            return th->tid;
        }
    }
    return 0;
}

/* A thread left running (FATE_UNSTOPPED) sleeps in a system call: its user
 * registers are saved in the kernel and do not change until it returns, but
 * /proc shows only some of them: the stack pointer, the pc and the call's
 * arguments (the argument registers, unchanged by the call). That is enough
 * for every frame whose call-frame rule starts from the stack pointer; a
 * frame that needs another register (a frame pointer) ends the stack there. */
static bool set_proc_registers(Dwfl_Thread *thread, const struct thread *th)
{
#if defined(__x86_64__)
    static const int arg_regs[6] = {5, 4, 1, 10, 8, 9}; /* rdi rsi rdx r10 r8 r9 */
    for (int i = 0; i < 6; i++)
        if (!dwfl_thread_state_registers(thread, arg_regs[i], 1, &th->args[i]))
            return false;
    Dwarf_Word sp = th->sp, pc = th->pc;
    return dwfl_thread_state_registers(thread, 7, 1, &sp) && dwfl_thread_state_registers(thread, 16, 1, &pc);
#elif defined(__aarch64__)
    for (int i = 0; i < 6; i++)
        if (!dwfl_thread_state_registers(thread, i, 1, &th->args[i]))
            return false;
    Dwarf_Word sp = th->sp;
    if (!dwfl_thread_state_registers(thread, 31, 1, &sp))
        return false;
    dwfl_thread_state_register_pc(thread, th->pc);
    return true;
#endif
}

/* The DWARF register numbering of the psABI, filled from ptrace's view. */
static bool set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
    const struct thread *th = thread_arg;
    if (th->fate == FATE_UNSTOPPED)
        return set_proc_registers(thread, th);
    const struct user_regs_struct *r = &th->regs;
#if defined(__x86_64__)
    const Dwarf_Word regs[17] = {r->rax, r->rdx, r->rcx, r->rbx, r->rsi, r->rdi, r->rbp, r->rsp, r->r8,
                                 r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, r->rip};
    return dwfl_thread_state_registers(thread, 0, 17, regs);
#elif defined(__aarch64__)
    Dwarf_Word regs[32];
    for (int i = 0; i < 31; i++)
        regs[i] = r->regs[i];
    regs[31] = r->sp;
    if (!dwfl_thread_state_registers(thread, 0, 32, regs))
        return false;
    dwfl_thread_state_register_pc(thread, r->pc);
    return true;
#else
#error "threaddump knows the registers of x86_64 and aarch64 only"
#endif
}

static const Dwfl_Thread_Callbacks thread_callbacks = {
    .next_thread = next_thread,
    .memory_read = memory_read,
    .set_initial_registers = set_initial_registers,
};

/* ---- setting up ---- */

static int prime_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start, void *arg)
{
    (void)userdata, (void)name, (void)start, (void)arg;
    Dwarf_Addr bias;
    dwfl_module_eh_cfi(mod, &bias); /* loads the ELF file and indexes .eh_frame_hdr */
    return DWARF_CB_OK;
}

struct unwinder *unwinder_new(struct target *t)
{
    struct unwinder *u = calloc(1, sizeof *u);
    if (!u)
        goto fail;
    u->t = t;
    u->callbacks = (Dwfl_Callbacks){.find_elf = dwfl_linux_proc_find_elf,
                                    .find_debuginfo = dwfl_standard_find_debuginfo,
                                    .debuginfo_path = &u->debuginfo_path};
    u->pages = calloc(CACHE_PAGES, sizeof *u->pages);
    u->dwfl = dwfl_begin(&u->callbacks);
    if (!u->pages || !u->dwfl)
        goto fail;
    int err = dwfl_linux_proc_report(u->dwfl, t->pid);
    if (err != 0) {
        fprintf(stderr, "threaddump: cannot read the modules of %d (/proc/%d/maps): %s\n", t->pid, t->pid,
                err > 0 ? strerror(err) : dwfl_errmsg(-1));
        goto fail_quiet;
    }
    if (dwfl_report_end(u->dwfl, NULL, NULL) != 0 || !dwfl_attach_state(u->dwfl, NULL, t->pid, &thread_callbacks, u)) {
        fprintf(stderr, "threaddump: libdw cannot take process %d: %s\n", t->pid, dwfl_errmsg(-1));
        goto fail_quiet;
    }
    dwfl_getmodules(u->dwfl, prime_module, u, 0);
    return u;
fail:
    fprintf(stderr, "threaddump: out of memory\n");
fail_quiet:
    unwinder_free(u);
    return NULL;
}

void unwinder_free(struct unwinder *u)
{
    if (!u)
        return;
    if (u->dwfl)
        dwfl_end(u->dwfl);
    free(u->pages);
    free(u->slots);
    free(u->scratch_pc);
    free(u->scratch_activation);
    free(u->dwfl_modules);
    free(u);
}

/* ---- unwinding ---- */

/* The index of the location (pc, activation), made on first sight.
 * UINT32_MAX when out of memory. */
static uint32_t intern(struct unwinder *u, uint64_t pc, bool activation)
{
    struct target *t = u->t;
    if (2 * (t->nlocations + 1) > u->nslots) { /* grow and rehash at half full */
        size_t nslots = u->nslots ? 2 * u->nslots : 1024;
        uint32_t *slots = calloc(nslots, sizeof *slots);
        if (!slots)
            return UINT32_MAX;
        for (size_t i = 0; i < t->nlocations; i++) {
            uint64_t key = t->locations[i].pc * 2 + t->locations[i].activation;
            size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull >> 20) & (nslots - 1);
            while (slots[h])
                h = (h + 1) & (nslots - 1);
            slots[h] = (uint32_t)i + 1;
        }
        free(u->slots);
        u->slots = slots;
        u->nslots = nslots;
    }
    uint64_t key = pc * 2 + activation;
    size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull >> 20) & (u->nslots - 1);
    for (; u->slots[h]; h = (h + 1) & (u->nslots - 1)) {
        const struct location *l = &t->locations[u->slots[h] - 1];
        if (l->pc == pc && l->activation == activation)
            return u->slots[h] - 1;
    }
    if (t->nlocations == u->locations_cap) {
        size_t cap = u->locations_cap ? 2 * u->locations_cap : 256;
        struct location *more = realloc(t->locations, cap * sizeof *more);
        if (!more)
            return UINT32_MAX;
        t->locations = more;
        u->locations_cap = cap;
    }
    t->locations[t->nlocations] = (struct location){.pc = pc, .activation = activation, .module = -1};
    u->slots[h] = (uint32_t)t->nlocations + 1;
    return (uint32_t)t->nlocations++;
}

static int on_frame(Dwfl_Frame *state, void *arg)
{
    struct unwinder *u = arg;
    Dwarf_Addr pc;
    bool activation;
    if (!dwfl_frame_pc(state, &pc, &activation) || pc == 0)
        return DWARF_CB_ABORT;
    u->scratch_pc[u->depth] = pc;
    u->scratch_activation[u->depth] = activation;
    return ++u->depth >= u->max_frames ? DWARF_CB_ABORT : DWARF_CB_OK;
}

static int on_thread(Dwfl_Thread *thread, void *arg)
{
    struct unwinder *u = arg;
    struct thread *th = u->current;
    u->depth = 0;
    int r = dwfl_thread_getframes(thread, on_frame, u);
    /* libdw may end a complete stack with an error ("no matching address
     * range" past the outermost frame); only a stack of one frame or none
     * says the unwind itself failed. */
    char why[sizeof th->error] = "";
    if (r == -1 && u->depth <= 1)
        snprintf(why, sizeof why, "unwinding stopped after %d frame%s: %s", u->depth, u->depth == 1 ? "" : "s",
                 dwfl_errmsg(-1));
    if (u->depth >= u->max_frames)
        snprintf(why, sizeof why, "stack truncated at --max-frames %d", u->max_frames);
    if (why[0] && th->error[0]) { /* an unstopped thread's note first */
        size_t len = strlen(th->error);
        snprintf(th->error + len, sizeof th->error - len, "; %s", why);
    } else if (why[0]) {
        snprintf(th->error, sizeof th->error, "%s", why);
    }
    th->stack = malloc((size_t)(u->depth ? u->depth : 1) * sizeof *th->stack);
    if (!th->stack) {
        snprintf(th->error, sizeof th->error, "out of memory");
        return DWARF_CB_OK;
    }
    for (int i = 0; i < u->depth; i++) {
        uint32_t id = intern(u, u->scratch_pc[i], u->scratch_activation[i]);
        if (id == UINT32_MAX)
            break;
        th->stack[th->depth++] = id;
    }
    return DWARF_CB_OK;
}

void unwind_all(struct unwinder *u, int max_frames)
{
    u->max_frames = max_frames;
    u->scratch_pc = malloc((size_t)max_frames * sizeof *u->scratch_pc);
    u->scratch_activation = malloc((size_t)max_frames * sizeof *u->scratch_activation);
    if (!u->scratch_pc || !u->scratch_activation) {
        fprintf(stderr, "threaddump: out of memory\n");
        return;
    }
    u->next_index = 0;
    if (dwfl_getthreads(u->dwfl, on_thread, u) == -1)
        fprintf(stderr, "threaddump: libdw: %s\n", dwfl_errmsg(-1));
}

/* ---- naming ---- */

/* C++ names through libstdc++'s demangler, when the process can load it;
 * a C program never needs it. NULL when not a mangled name. */
static char *demangle(const char *name)
{
    static char *(*cxa_demangle)(const char *, char *, size_t *, int *);
    static bool tried;
    if (!name || strncmp(name, "_Z", 2) != 0)
        return NULL;
    if (!tried) {
        tried = true;
        void *lib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        if (lib)
            *(void **)&cxa_demangle = dlsym(lib, "__cxa_demangle");
    }
    int status = -1;
    char *out = cxa_demangle ? cxa_demangle(name, NULL, NULL, &status) : NULL;
    if (status != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* GCC names the specialised copies it makes of a function "f.isra.0",
 * "f.constprop.0", "f.part.0", "f.cold": the source name is "f" (the
 * scripts strip the same suffixes from heap profiles); and a versioned
 * symbol "f@@GLIBC_2.3.2" is "f". */
static char *source_name(const char *symbol)
{
    if (!symbol)
        return NULL;
    static const char *const suffixes[] = {".isra", ".constprop", ".part", ".cold", ".lto_priv"};
    size_t len = strcspn(symbol, "@"); /* a symbol version: pthread_cond_wait@@GLIBC_2.3.2 */
    for (const char *dot = strchr(symbol, '.'); dot; dot = strchr(dot + 1, '.'))
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
            if (strncmp(dot, suffixes[i], strlen(suffixes[i])) == 0) {
                len = (size_t)(dot - symbol);
                goto cut;
            }
cut:;
    char *plain = strndup(symbol, len);
    char *readable = demangle(plain);
    if (readable) {
        free(plain);
        return readable;
    }
    return plain;
}

/* The name of a subprogram or inlined-subroutine DIE: demangled linkage
 * name for C++, DW_AT_name otherwise (both through abstract origins). */
static char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *linkage = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
    if (!linkage)
        linkage = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
    char *readable = demangle(linkage);
    if (readable)
        return readable;
    /* Not dwarf_diename(): it does not follow DW_AT_abstract_origin, which
     * an out-of-line copy of an inline function names itself through. */
    const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
    return name ? strdup(name) : NULL;
}

static bool push_frame(struct location *l, struct frame f)
{
    struct frame *more = realloc(l->frames, (l->nframes + 1) * sizeof *more);
    if (!more)
        return false;
    l->frames = more;
    l->frames[l->nframes++] = f;
    return true;
}

/* The file an inlined call was made from: DW_AT_call_file indexes the
 * compilation unit's file table. */
static const char *call_site(Dwarf_Die *cudie, Dwarf_Die *inlined, int *line)
{
    Dwarf_Attribute attr;
    Dwarf_Word file_index = 0, call_line = 0;
    *line = 0;
    if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &attr), &call_line) == 0)
        *line = (int)call_line;
    Dwarf_Files *files;
    size_t nfiles;
    if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &attr), &file_index) != 0 ||
        dwarf_getsrcfiles(cudie, &files, &nfiles) != 0 || file_index >= nfiles)
        return NULL;
    return dwarf_filesrc(files, file_index, NULL, NULL);
}

static void name_location(struct unwinder *u, struct location *l)
{
    /* A return address points after the call: look up the call itself. */
    Dwarf_Addr addr = l->activation ? l->pc : l->pc - 1;
    Dwfl_Module *mod = dwfl_addrmodule(u->dwfl, addr);
    if (!mod) {
        push_frame(l, (struct frame){0});
        return;
    }
    for (size_t i = 0; i < u->t->nmodules; i++)
        if (u->dwfl_modules[i] == mod)
            l->module = (int)i;

    GElf_Off offset = 0;
    GElf_Sym sym;
    const char *symbol = dwfl_module_addrinfo(mod, addr, &offset, &sym, NULL, NULL, NULL);
    uint64_t pc_offset = symbol ? offset + (l->pc - addr) : 0;

    /* Line information only inside a compilation unit that covers addr:
     * past the end of one (crt1.o's _start after main, say) the line table
     * would still answer with its last row. */
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, addr, &bias);
    if (cudie && dwarf_haspc(cudie, addr - bias) <= 0)
        cudie = NULL;
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *dl = cudie ? dwfl_module_getsrc(mod, addr) : NULL;
    if (dl)
        file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);

    /* Inlined calls: the scopes around addr, innermost first. Each inlined
     * subroutine is a frame of its own, at the line we are in; the frame
     * around it is at the line of the call (DW_AT_call_file/line). */
    Dwarf_Die *scopes = NULL;
    int nscopes = cudie ? dwarf_getscopes(cudie, addr - bias, &scopes) : 0;
    bool have_physical = false;
    for (int i = 0; i < nscopes; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram && tag != DW_TAG_entry_point)
            continue;
        bool inlined = tag == DW_TAG_inlined_subroutine;
        /* The physical function goes by its symbol (what the linker, nm and
         * the other tools say: pause, not glibc's internal __libc_pause);
         * an inlined call has only its DWARF name. */
        char *name = !inlined && symbol ? source_name(symbol) : die_name(&scopes[i]);
        struct frame f = {.function = name, .file = file ? strdup(file) : NULL, .line = line, .inlined = inlined};
        if (!inlined) {
            f.symbol = symbol ? strdup(symbol) : NULL;
            f.offset = pc_offset;
        }
        push_frame(l, f);
        if (!inlined) {
            have_physical = true;
            break;
        }
        file = call_site(cudie, &scopes[i], &line);
    }
    free(scopes);
    if (!have_physical) /* no DWARF here (a stripped library): the symbol table's word */
        push_frame(l, (struct frame){.function = source_name(symbol), .symbol = symbol ? strdup(symbol) : NULL,
                                     .offset = pc_offset, .file = file ? strdup(file) : NULL, .line = line});
}

static int collect_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start, void *arg)
{
    (void)userdata, (void)start;
    struct unwinder *u = arg;
    struct target *t = u->t;
    Dwarf_Addr bias;
    if (!dwfl_module_getelf(mod, &bias))
        return DWARF_CB_OK; /* a mapped file that is not ELF (locale archives): no code there */
    if (t->nmodules == u->modules_cap)
        return DWARF_CB_ABORT;
    struct module *m = &t->modules[t->nmodules];
    u->dwfl_modules[t->nmodules++] = mod;
    Dwarf_Addr low = 0, high = 0;
    dwfl_module_info(mod, NULL, &low, &high, NULL, NULL, NULL, NULL);
    *m = (struct module){.name = strdup(name ? name : "?"), .start = low, .end = high};
    const unsigned char *bits;
    GElf_Addr vaddr;
    int len = dwfl_module_build_id(mod, &bits, &vaddr);
    for (int i = 0; i < len && i < 64; i++)
        snprintf(m->build_id + 2 * i, 3, "%02x", bits[i]);
    return DWARF_CB_OK;
}

static int count_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start, void *arg)
{
    (void)mod, (void)userdata, (void)name, (void)start;
    ++*(size_t *)arg;
    return DWARF_CB_OK;
}

void symbolize_all(struct unwinder *u)
{
    struct target *t = u->t;
    size_t count = 0;
    dwfl_getmodules(u->dwfl, count_module, &count, 0);
    t->modules = calloc(count ? count : 1, sizeof *t->modules);
    u->dwfl_modules = calloc(count ? count : 1, sizeof *u->dwfl_modules);
    if (!t->modules || !u->dwfl_modules)
        return;
    u->modules_cap = count;
    dwfl_getmodules(u->dwfl, collect_module, u, 0);
    for (size_t i = 0; i < t->nlocations; i++)
        name_location(u, &t->locations[i]);
}

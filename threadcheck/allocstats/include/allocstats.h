/* allocstats.h - an opt-in agent that tells `leaklab memstats` what the
 * process's malloc says about itself (docs/memstats.md, "tcmalloc and jemalloc").
 *
 * Why it exists. memstats itemizes RSS from outside: it walks glibc's arenas
 * through /proc/PID/mem with the layouts of libc's debug information. It cannot
 * do that for tcmalloc or jemalloc (Debian ships them without debug information
 * in its main archive, and their internal layouts change between versions);
 * but both answer exactly about themselves, in-process: gperftools'
 * MallocExtension_GetNumericProperty, jemalloc's mallctl. liballocstats is the
 * smallest in-process route to those answers, and it is opt-in: the program
 * must be started with it,
 *
 *     LD_PRELOAD=/path/to/liballocstats.so ./program
 *
 * (a process already running cannot be given it; memstats then says "not
 * itemized" and names this library).
 *
 * The contract (what a client may rely on):
 *   - The agent reads datagrams on the abstract unix socket
 *     "@leaklab-allocstats.<pid>" (SOCK_DGRAM; the name starts with a NUL byte,
 *     nothing in the file system). A client binds a socket of its own (any
 *     address; autobind, bind() with only the family, will do), sends one
 *     datagram of at most 64 bytes (its content is ignored), and receives one
 *     datagram back: one JSON line. A request carrying anything besides its
 *     sender's credentials (descriptors, SCM_RIGHTS) gets no answer, and no
 *     descriptor is ever installed in the host (the agent's control buffer has
 *     room for the credentials alone). A client that must know who answered sets
 *     SO_PASSCRED on its own socket: the kernel attaches the answering process's
 *     pid (memstats accepts an answer only from the process it asked; the "pid"
 *     in the line is what the process sees of itself, in its pid namespace).
 *   - Only a sender whose uid (SCM_CREDENTIALS, filled in by the kernel) is the
 *     process's effective uid, or root (which may read the process's memory
 *     anyway), gets an answer; anyone else gets none.
 *   - The line: {"allocstats": ALLOCSTATS_FORMAT, "pid": N,
 *       "tcmalloc": {...} | absent, "jemalloc": {...} | absent,
 *       "mallinfo2": {...} | absent}
 *     Each object is present when its API is defined in the process at the time
 *     of the request (looked up in the loaded objects, then dlsym(RTLD_DEFAULT):
 *     nothing is linked), with "from" the file that defines it, and figures in
 *     bytes as the allocator counts them:
 *       tcmalloc: current_allocated_bytes, heap_size, total_physical_bytes,
 *                 pageheap_free_bytes, pageheap_unmapped_bytes,
 *                 central_cache_free_bytes, transfer_cache_free_bytes,
 *                 thread_cache_free_bytes (gperftools' property names;
 *                 gperftools 2.10 has no metadata property: metadata is
 *                 total_physical_bytes - heap_size + pageheap_unmapped_bytes,
 *                 as tcmalloc.cc computes total_physical_bytes); a property
 *                 the library does not know is -1;
 *       jemalloc: after refreshing "epoch": page, narenas, allocated, active,
 *                 metadata, resident, mapped, retained (stats.*), dirty_bytes
 *                 and muzzy_bytes (stats.arenas.<MALLCTL_ARENAS_ALL>.pdirty and
 *                 .pmuzzy times the page size), dirty_purged_bytes and
 *                 muzzy_purged_bytes (stats.arenas.<ALL>.dirty_purged and
 *                 .muzzy_purged, cumulative page counts, times the page size),
 *                 tcache_bytes, tcache_stashed_bytes, internal
 *                 (stats.arenas.<ALL>.*); a name the library does not know is -1;
 *       mallinfo2: arena, ordblks, hblkhd, uordblks, fordblks, keepcost (of
 *                 whichever mallinfo2 the process resolves: glibc's, or the
 *                 allocator's own).
 *
 * Manners (the rules for a library someone else preloads):
 *   - It never prints, never exits, never installs a signal handler.
 *   - Meant to be preloaded: its constructor then runs before the host has a
 *     thread of its own. Loaded with dlopen() into a running multi-threaded
 *     program, its socket would hold a low number for the instant before it is
 *     moved high, where another thread's open() could see it.
 *   - It never creates a descriptor after load time: a listening stream
 *     socket's accept() would (Linux reserves the lowest free number for the
 *     connection while accept() waits, so the host's next open() would get
 *     another number); a datagram socket's recvmsg() does not.
 *   - Nothing at load time can fail the host: if the socket, its bind, its
 *     move to a high descriptor or the thread cannot be made, the library
 *     stays inert, silently.
 *   - The socket's descriptor is moved above the host's (F_DUPFD_CLOEXEC from
 *     ALLOCSTATS_FD_FLOOR, or just below RLIMIT_NOFILE if that is lower), so
 *     the host's own open() returns the numbers it returns without the library;
 *     close-on-exec, and closed in a fork()ed child (pthread_atfork). A host
 *     that closes every descriptor (closefrom, close_range) and gets that number
 *     back for a file of its own is left alone: the agent checks, before it reads
 *     and before it answers, that the descriptor is still its socket (device and
 *     inode), and goes inert when it is not.
 *   - One thread, named "allocstats" (pthread_setname_np), with every signal
 *     blocked: no process-directed signal is ever delivered to it, so a host
 *     waiting in sigwaitinfo() or relying on which thread takes a signal sees
 *     what it sees without the library. The thread blocks in recvmsg(), and is
 *     visible to anything that counts threads (/proc/PID/task, `leaklab
 *     threads`); it is not a leaked thread (it runs whenever a request
 *     arrives). liborphans preloaded beside it cannot stop that thread (its
 *     stop signal is blocked there like every other) and calls its analysis
 *     incomplete rather than guess.
 *   - The agent thread never calls malloc: a failing dlsym would (its error
 *     message), and in glibc a new thread's first malloc creates an arena.
 *     Creating the thread costs the host's heap what glibc allocates for any
 *     new thread (its TLS vector: 448 bytes, measured), and calling jemalloc's
 *     mallctl makes jemalloc set up its per-thread data for the agent thread at
 *     the first request, as it would for any thread that calls it.
 *   - After fork() the child has no agent (threads do not survive fork): a
 *     child that should answer must exec a program started with the preload.
 *     An exec'd program keeps LD_PRELOAD and gets an agent of its own.
 *   - Abstract sockets belong to a network namespace: a client in another one
 *     (a container's, say) cannot connect.
 *
 * It has no functions to call: preloading it is its whole API.
 */
#ifndef ALLOCSTATS_H
#define ALLOCSTATS_H

#define ALLOCSTATS_VERSION "1.0.0"
#define ALLOCSTATS_FORMAT 1                      /* the "allocstats" field of the answer */
#define ALLOCSTATS_SOCKET_PREFIX "leaklab-allocstats." /* + the pid, in the abstract namespace */
#define ALLOCSTATS_FD_FLOOR 900                  /* the socket descriptor's lowest number */

#endif

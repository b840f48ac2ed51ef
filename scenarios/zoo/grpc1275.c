/* grpc1275 - GoKer grpc#1275 (channel): a reader blocks reading a stream;
 * CloseStream() should hand the reader a message and does not, so the test
 * times out and the reader waits forever.
 *
 * The Go original (golang/go src/runtime/testdata/testgoroutineleakprofile/
 * goker/grpc1275.go; the fix: grpc/grpc-go pull 1275):
 *
 *     func (r *recvBufferReader) Read(p []byte) (int, error) {
 *         select { case <-r.recv.get(): }          // G2 waits here
 *         return 0, nil }
 *     func (t *http2Client) CloseStream(s *Stream) {}   // should send the reader a message
 *     func testInflightStreamClosing() {           // G1
 *         stream := client.NewStream()             // recv.c: make(chan bool)
 *         donec := make(chan bool)
 *         go func() { defer close(donec); stream.Read([]byte{1}) }()   // G2
 *         client.CloseStream(stream)
 *         timeout := time.NewTimer(300 * time.Nanosecond)
 *         select { case <-donec: ...  case <-timeout.C: } }   // G1 times out and returns
 *
 * Go's goroutineleak profile reports testInflightStreamClosing.func1
 * [chan receive] (not flaky in Go's test). The GoKer description: "It is
 * the client.CloseStream() method called by the main goroutine that should
 * send the message, but it is not. The patch is to send out this message."
 *
 * The C form: the stream's receive buffer is a rendezvous ll_chan, donec an
 * ll_chan, the timer an ll_chan that closes itself 1 ms on
 * (ll_chan_close_after: the shortest wait it takes; Go's 300 ns). G1 is
 * main; it calls CloseStream once G2 sleeps in its Read, the order of the
 * GoKer trace. The stream holds its receive window (WINDOW_BYTES, the
 * payload). Main forgets the stream after the timeout: only G2 reaches it
 * (orphaned).
 *
 * What the tools see: see expected/zoo/grpc1275.toml (native only so far:
 * the truth, checked on every run).
 *
 * The fix (the pull request's): CloseStream sends the stream's reader a
 * message (an error), so Read returns.
 */
#include "leaklab.h"

#include <stdlib.h>
#include <string.h>

enum { WINDOW_BYTES = 64 * 1024 }; /* the stream's receive window: the payload of one instance */
enum { TIMEOUT_MS = 1 };           /* Go: 300 ns */

struct stream {
    ll_chan *recv;                  /* Go: recvBuffer.c */
    ll_chan *donec;
    unsigned char *window;
    pthread_t g2;
};

__attribute__((noinline)) static struct stream *new_stream(ll_run *run)
{
    struct stream *s = ll_xmalloc(run, sizeof *s);
    *s = (struct stream){.recv = ll_chan_new(run, 0), .donec = ll_chan_new(run, 0),
                         .window = ll_xmalloc(run, WINDOW_BYTES)};
    memset(s->window, 0x5a, WINDOW_BYTES);
    return s;
}

static void free_stream(struct stream *s)
{
    ll_chan_free(s->recv);
    ll_chan_free(s->donec);
    free(s->window);
    free(s);
}

static LL_WAIT_SITE void recv_buffer_reader_read(struct stream *s)
{
    void *msg;
    ll_chan_recv(s->recv, &msg); /* select { case <-r.recv.get(): } */
}

/* G2. */
static void *reader(void *arg)
{
    struct stream *s = arg;
    recv_buffer_reader_read(s); /* stream.Read -> io.ReadFull -> recvBufferReader.Read */
    ll_chan_close(s->donec);
    return NULL;
}

static void close_stream(struct stream *s, bool fixed)
{
    static char closing; /* the error the reader gets */
    if (fixed)
        LL_FIX(ll_chan_send(s->recv, &closing)); /* FIX: hand the reader a message */
}

/* G1. */
static struct stream *test_inflight_stream_closing(ll_run *run, bool fixed)
{
    struct stream *s = new_stream(run);
    ll_thread_start(run, &s->g2, reader, s);
    ll_chan_await_parked(run, s->recv, s->g2); /* the trace's order: G2 reads first */
    close_stream(s, fixed);
    ll_chan *timeout = ll_chan_new(run, 0);
    ll_chan_close_after(timeout, TIMEOUT_MS);
    ll_select_case cases[] = {{.chan = s->donec}, {.chan = timeout}};
    ll_select(cases, 2, false);
    ll_chan_free(timeout);
    return s;
}

static void leaky_instance(ll_run *run, long long instance)
{
    (void)instance;
    (void)test_inflight_stream_closing(run, false); /* timed out: G2 still reads */
}

static void fixed_instance(ll_run *run, long long instance)
{
    (void)instance;
    struct stream *s = test_inflight_stream_closing(run, true);
    LL_FIX(pthread_join(s->g2, NULL)); /* FIX: Read got its message: join G2 */
    LL_FIX(free_stream(s));            /* FIX: and free what Go's GC would */
}

static const ll_zoo_kernel kernel = {
    .name = "grpc1275",
    .summary = "GoKer grpc#1275 (channel): CloseStream() should hand the stream's blocked reader a\n"
               "message and does not; the test times out and the reader waits forever.",
    .leaky_summary = "CloseStream sends nothing: the reader waits on the receive buffer forever, holding the stream",
    .fixed_summary = "CloseStream sends the reader a message: Read returns, joined, the stream freed",
    .leaky = leaky_instance,
    .fixed = fixed_instance,
    .instance_bytes = WINDOW_BYTES,
};

int main(int argc, char **argv) { return ll_zoo_main(&kernel, argc, argv); }

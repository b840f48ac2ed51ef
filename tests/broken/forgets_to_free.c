/* forgets_to_free.c - blocked_workers with free() compiled out.
 *
 * Its fixed variant still closes the channel and joins every worker, but no
 * worker frees its buffer: the fix done halfway. Built from the very same
 * source, it must turn the fixed variant's memory checks red under every
 * tool (tests/broken/expect_red.py); a suite that stayed green here would be
 * checking nothing. */
#include <stdlib.h>

#define free(pointer) ((void)(pointer))
#include "blocked_workers.c"

#include "block.h"
#include "clock.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

bool block_cancelled(const struct tctx *ctx)
{
    return ctx->interrupts && ctx->interrupts() > ctx->interrupts_before;
}

/* The eventfd only wakes the loop: the count of presses is the truth. */
static void drain_cancel(void *ud, int fd, uint32_t events)
{
    (void)ud, (void)events;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0) {
        /* already drained by another wait: nothing to do */
    }
}

void block_watch_cancel(struct tctx *ctx, int fd)
{
    ctx->cancel_fd = fd;
    if (fd >= 0)
        loop_watch(ctx->loop, fd, EPOLLIN, drain_cancel, ctx);
}

bool block_until(struct tctx *ctx, const bool *done)
{
    while (!*done) {
        if (block_cancelled(ctx))
            return false;
        loop_run_once(ctx->loop, NS_PER_SEC);
    }
    return true;
}

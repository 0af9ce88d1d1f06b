#ifndef TIDE_BLOCK_H
#define TIDE_BLOCK_H
#include <stdbool.h>

#include "ctx.h"

/* Blocking calls outside a virtual user (setup, teardown, the prompt): the
 * context's private loop runs until the call is done, or until a Ctrl-C
 * (or SIGTERM) that came after ctx->interrupts_before cancels it. The
 * cancel eventfd wakes the wait at once: nothing polls a counter. */

/* Runs ctx's loop until *done; false when cancelled first. */
bool block_until(struct tctx *ctx, const bool *done);
/* Whether a blocking call of ctx must stop now. */
bool block_cancelled(const struct tctx *ctx);
/* ctx's blocking calls wake when fd (an eventfd the signal handler writes)
 * becomes readable; fd < 0: no wake-up but the loop's own. */
void block_watch_cancel(struct tctx *ctx, int fd);

#endif

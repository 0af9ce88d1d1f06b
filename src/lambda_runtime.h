#ifndef TIDE_LAMBDA_RUNTIME_H
#define TIDE_LAMBDA_RUNTIME_H
#include "signals.h"

/* tide lambda: the AWS Lambda custom runtime loop against
 * $AWS_LAMBDA_RUNTIME_API: each invocation's event is a worker job, its
 * response the job's results document (README, "AWS Lambda"). Returns only
 * on Ctrl-C/SIGTERM (130) or when the Runtime API is unusable (2). */
int cmd_lambda(int argc, char **argv, const struct signals *sig);

#endif

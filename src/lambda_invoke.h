#ifndef TIDE_LAMBDA_INVOKE_H
#define TIDE_LAMBDA_INVOKE_H
#include <stdbool.h>
#include <stddef.h>

/* tide run --workers N --via lambda:FUNCTION[:QUALIFIER]: each worker is one
 * Lambda Invoke call (RequestResponse), signed with AWS Signature Version 4
 * by libcurl, its event the worker's job, its payload the results document. */

#define LAMBDA_MAX_SECONDS 900      /* the longest a Lambda invocation may run */
/* The most `tide lambda` stops a load ahead of its deadline (lambda_runtime.c):
 * a load is checked to fit with it. */
#define LAMBDA_STOP_MARGIN_MAX 10.0
#define LAMBDA_ATTEMPTS 5           /* a throttled invoke is tried at most this often */

struct lambda_target {
    char function[65];              /* a function name: letters, digits, - and _ */
    char qualifier[129];            /* a version or alias; "": none */
    char region[64];
    char url[2400];                 /* the Invoke URL */
    const char *key, *secret, *token;   /* from the environment; token NULL when unset */
};

/* Checks "lambda:FUNCTION[:QUALIFIER]" into t; false with the reason in err. */
bool lambda_via_parse(const char *via, struct lambda_target *t, char *err, size_t errlen);

/* Checks an endpoint URL given with --lambda-endpoint; false with err. */
bool lambda_endpoint_valid(const char *url, char *err, size_t errlen);

/* t from via, the environment's credentials and region, and endpoint (NULL:
 * https://lambda.REGION.amazonaws.com); false with err naming what is missing. */
bool lambda_target_load(const char *via, const char *endpoint, struct lambda_target *t, char *err, size_t errlen);

/* One worker's invocation, blocking (a child process of its own runs it):
 * job (JSON) as the event, the payload written to standard output when it
 * is a results document. A throttle is retried with backoff while attempts
 * remain and the retry would start before retry_until (wall clock); each
 * retry and the final failure are one line on standard error, secrets
 * blanked. timeout bounds each attempt (seconds). 0 when a document was
 * handed back, else 5. */
int lambda_invoke(const struct lambda_target *t, const char *job, size_t len, double timeout, double retry_until);

#endif

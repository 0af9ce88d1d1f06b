/* How a run's load is split: shares of users over threads, the first id of
 * each share, and the schedules (ramp targets, arrival times). Pure
 * arithmetic on plain values: no clock, no Lua, no state. */
#include "split.h"

#include <math.h>

unsigned split_share(long long total, unsigned threads, unsigned thread)
{
    return (unsigned)(total / threads + ((long long)thread < total % threads));
}

unsigned split_first_id(const struct options *o, unsigned threads, unsigned scen, unsigned thread)
{
    unsigned id = 1;
    for (unsigned s = 0; s < scen; s++)
        id += (unsigned)scen_max_vus(&o->scen[s]);
    for (unsigned t = 0; t < thread; t++)
        id += split_share(scen_max_vus(&o->scen[scen]), threads, t);
    return id;
}

unsigned ramp_target(const struct scen *s, double t)
{
    double from = (double)s->start_vus;
    for (int i = 0; i < s->nstages; i++) {
        const struct stage *st = &s->stages[i];
        if (t < st->duration)
            return (unsigned)floor(from + (st->target - from) * t / st->duration + 1e-9);
        t -= st->duration;
        from = st->target;
    }
    return (unsigned)floor(from + 1e-9);
}

double arrivals_by(const struct scen *s, double t)
{
    double unit = s->time_unit > 0 ? s->time_unit : 1;
    t = fmin(t, s->duration);
    if (s->executor == EXEC_CONSTANT_ARRIVAL_RATE)
        return t * s->rate / unit;
    double r0 = s->start_rate / unit, n = 0;
    for (int i = 0; i < s->nstages && t > 0; i++) {
        double d = s->stages[i].duration, r1 = s->stages[i].target / unit;
        double in = fmin(t, d), r_in = r0 + (r1 - r0) * in / d;
        n += (r0 + r_in) / 2 * in;
        t -= in;
        r0 = r1;
    }
    return n;
}

/* Arrival k happens when the integral of the rate reaches k. */
double arrival_offset(const struct scen *s, uint64_t k)
{
    double unit = s->time_unit > 0 ? s->time_unit : 1, need = (double)k;
    if (s->executor == EXEC_CONSTANT_ARRIVAL_RATE) {
        double t = need * unit / s->rate;
        return t < s->duration ? t : -1;
    }
    double r0 = s->start_rate / unit, offset = 0;
    for (int i = 0; i < s->nstages; i++) {
        double d = s->stages[i].duration, r1 = s->stages[i].target / unit;
        double in_stage = (r0 + r1) / 2 * d;
        if (need < in_stage) {
            double a = (r1 - r0) / (2 * d);
            double tau = fabs(a) < 1e-12 ? need / r0 : (-r0 + sqrt(r0 * r0 + 4 * a * need)) / (2 * a);
            return offset + tau;
        }
        need -= in_stage;
        offset += d;
        r0 = r1;
    }
    return -1;
}

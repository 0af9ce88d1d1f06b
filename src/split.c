/* How a run's load is split: shares of users over segments and threads,
 * the first id of each share, and the schedules (ramp targets, arrival
 * times). Pure arithmetic on plain values: no clock, no Lua, no state. */
#include "split.h"

#include <math.h>

long long split_count(long long total, unsigned parts, unsigned part)
{
    return total / parts + ((long long)part < total % parts);
}

unsigned split_share(long long total, unsigned threads, unsigned thread)
{
    return (unsigned)split_count(total, threads, thread);
}

long long split_before(long long total, unsigned parts, unsigned part)
{
    long long n = part < parts ? part : parts;
    return n * (total / parts) + (n < total % parts ? n : total % parts);
}

long long split_segment(long long total, const struct share *sh)
{
    return split_count(total, sh->segs ? sh->segs : 1, sh->seg);
}

unsigned split_part(long long total, const struct share *sh)
{
    return split_share(split_segment(total, sh), sh->threads ? sh->threads : 1, sh->thread);
}

long long split_pool(long long total, long long users, const struct share *sh, long long *before)
{
    unsigned segs = sh->segs ? sh->segs : 1;
    unsigned holders = users > 0 && users < segs ? (unsigned)users : segs;
    unsigned seg = sh->seg < holders ? sh->seg : holders;
    *before = split_before(total, holders, seg);
    return seg < holders ? split_count(total, holders, seg) : 0;
}

unsigned split_arrival_offset(const struct share *sh)
{
    return sh->seg + (sh->segs ? sh->segs : 1) * sh->thread;
}

unsigned split_arrival_stride(const struct share *sh)
{
    return (sh->segs ? sh->segs : 1) * (sh->threads ? sh->threads : 1);
}

struct share split_thread(const struct options *o, unsigned threads, unsigned thread)
{
    return (struct share){.seg = o->segments ? o->segment : 0, .segs = o->segments ? o->segments : 1,
                          .thread = thread, .threads = threads ? threads : 1};
}

long long split_segment_vus(const struct options *o)
{
    struct share sh = split_thread(o, 1, 0);
    long long n = 0;
    for (int i = 0; i < o->nscen; i++)
        n += split_segment(scen_max_vus(&o->scen[i]), &sh);
    return n;
}

void split_fit_threads(struct options *o)
{
    long long vus = split_segment_vus(o);
    if ((long long)o->threads > vus)
        o->threads = vus > 0 ? (unsigned)vus : 1;
}

unsigned split_scen_first_id(const struct options *o, unsigned scen)
{
    unsigned id = 1;
    for (unsigned s = 0; s < scen; s++)
        id += (unsigned)scen_max_vus(&o->scen[s]);
    return id;
}

unsigned split_first_id(const struct options *o, unsigned scen, const struct share *sh)
{
    long long all = scen_max_vus(&o->scen[scen]);
    return split_scen_first_id(o, scen) + (unsigned)split_before(all, sh->segs ? sh->segs : 1, sh->seg) +
           (unsigned)split_before(split_segment(all, sh), sh->threads ? sh->threads : 1, sh->thread);
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

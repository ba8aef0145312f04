/* The engine's rules: steps, accesses, placement, the demotion cascade, link costs, metrics.
 * Mirrors kvgym/sim/engine.py (read its docstring for the semantics) and kvgym/sim/costs.py.
 * Included by module.c. */
#include "engine.h"

/* Forward declarations of the policy, prefetcher and observation parts. */
static void pol_on_access(Engine *e, int32_t p, int loc);
static void pol_on_insert(Engine *e, int32_t p, int t);        /* tier-0 arrival, backing cold insert */
static void pol_on_evict(Engine *e, int32_t p, int t);         /* before the page leaves tier t */
static void pol_on_evict_hook(Engine *e, int32_t p, int t);    /* Python on_evict (after removal) */
static void pol_enter(Engine *e, int32_t p, int t);            /* policy-owned tier: p added */
static void pol_leave(Engine *e, int32_t p, int t);            /* policy-owned tier: p removed (not evicted) */
static void pol_pin(Engine *e, int32_t p, int t);
static void pol_unpin(Engine *e, int32_t p);
static int32_t pol_choose(Engine *e, int t);
static uint64_t pol_key(Engine *e, int32_t p, int t, int64_t *b);
static int64_t pre_propose(Engine *e);                         /* fills e->pf_list, returns count */
static void pre_on_access(Engine *e, int32_t p, int loc);
static void obs_touch(Engine *e, int32_t p);                   /* recency list (observation) */
static void obs_enter(Engine *e, int32_t p);
static void obs_leave(Engine *e, int32_t p);
static void obs_victim(Engine *e, int32_t v);
static void obs_pin(Engine *e, int32_t p);
static void obs_unpin(Engine *e, int32_t p);
static int obs_eviction(Engine *e);
static int obs_prefetch(Engine *e);
static int obs_on(Engine *e);

static inline int pinned(const Engine *e, int32_t p) { return e->pg[p].pin == e->stamp; }
static inline int64_t gpos(const Engine *e) { return e->pos_base + e->cur; }

static void fail(Engine *e, int code, int tier, int64_t page) {
    if (e->err) return;
    e->err = code; e->err_tier = tier; e->err_page = page; e->err_step = e->s;
}

/* ------------------------------------------------------------------------- link costs ---- */
/* Time of one copy of ``bytes`` over link L: on an idle link the measured curve (piecewise linear
 * between points; the first point's time below it; the last segment's slope above it); behind
 * another copy on a busy link max(issue_us, bytes / wire). Alpha-beta links: alpha + bytes/beta. */
static double link_time(const Link *L, int64_t bytes, int queued) {
    double b = (double)bytes;
    if (!L->curve) return L->alpha + b / L->beta;
    if (queued) {
        double w = b / L->wire;
        return L->issue_us >= w ? L->issue_us : w;
    }
    int64_t n = L->npts;
    if (b <= L->x[0]) return L->y[0];
    int64_t i = 0;
    while (i + 2 < n && b > L->x[i + 1]) i++;
    return L->y[i] + ((b - L->x[i]) * (L->y[i + 1] - L->y[i])) / (L->x[i + 1] - L->x[i]);
}

static void charge(Engine *e, int src, int dst, int32_t p, int kind) {
    const Link *L = &e->link[src][dst];
    int64_t bytes = e->info[p].size;
    if (e->serial) {
        e->clk.serial_total += link_time(L, bytes, 0) + e->info[p].decode;
        return;
    }
    int li = src > dst ? src : dst;
    double *fr = e->clk.free[li];
    int64_t ch = 0;
    for (int64_t c = 1; c < e->t[li].channels; c++)
        if (fr[c] < fr[ch]) ch = c;
    int queued = fr[ch] > e->clk.issue;
    double start = e->clk.issue >= fr[ch] ? e->clk.issue : fr[ch];
    double fin = start + link_time(L, bytes, queued);
    fr[ch] = fin;
    if (kind == 0) { if (fin > e->clk.ready) e->clk.ready = fin; }
    else if (kind == 1) e->pg[p].ready = fin;
}

/* ---------------------------------------------------------------------- placement ---- */
static inline void tier_heap_push(Engine *e, int32_t p, int t) {
    Tier *T = &e->t[t];
    uint64_t k;
    int64_t b2 = e->pg[p].ins;
    if (T->key == K_LAST) k = key_i64(e->pg[p].last_access);
    else k = pol_key(e, p, t, &b2);
    if (ih_push(&T->heap, e->hpos, p, k, b2) < 0) fail(e, E_INTERNAL, t, p);
}

/* p joins tier t's victim order (after every hook of its arrival ran). */
static void tier_enter(Engine *e, int32_t p, int t) {
    int key = e->t[t].key;
    if (key == K_NONE || key == K_ARRIVAL) return;
    if (key == K_OWN) { pol_enter(e, p, t); return; }
    if (!pinned(e, p)) tier_heap_push(e, p, t);
}

static void tier_leave(Engine *e, int32_t p, int t) {
    int key = e->t[t].key;
    if (key == K_NONE || key == K_ARRIVAL) return;
    if (key == K_OWN) { pol_leave(e, p, t); return; }
    if (e->hpos[p] != NIL) ih_remove(&e->t[t].heap, e->hpos, p);
}

static void add_page(Engine *e, int32_t p, int t) {
    Tier *T = &e->t[t];
    PageState *g = &e->pg[p];
    g->tier = (int8_t)t;
    g->ins = e->ins_ctr++;
    T->n++;
    T->used += e->info[p].size;
    if (T->used > e->m.peak_bytes[t]) e->m.peak_bytes[t] = T->used;
    if (pinned(e, p)) T->npin++;
    if (t > 0 || e->track_order) ls_push_back(&T->order, e->oprev, e->onext, p, 0);
    if (t == 0 && obs_on(e)) obs_enter(e, p);
}

static void remove_page(Engine *e, int32_t p, int t) {
    Tier *T = &e->t[t];
    e->pg[p].tier = -1;
    T->n--;
    T->used -= e->info[p].size;
    if (pinned(e, p)) T->npin--;
    if (t > 0 || e->track_order) ls_remove(&T->order, e->oprev, e->onext, p, 0);
    if (t == 0 && obs_on(e)) obs_leave(e, p);
}

static void make_room(Engine *e, int t, int32_t x);

/* Evict v from tier t: demote it to t + 1 (making room there first) or drop it from the last tier. */
static void evict(Engine *e, int32_t v, int t) {
    Tier *T = &e->t[t];
    if (T->key == K_LAST || T->key == K_POLICY) {
        if (e->hpos[v] != NIL) ih_remove(&T->heap, e->hpos, v);
    }
    pol_on_evict(e, v, t);
    remove_page(e, v, t);
    e->m.evictions[t]++;
    pol_on_evict_hook(e, v, t);
    if (e->err) return;
    if (t == 0) {
        PageState *g = &e->pg[v];
        g->evict_step = e->s;
        g->ready = NAN;
        if (g->pending) { g->pending = 0; e->n_pending--; e->m.prefetch_wasted++; }
        if (obs_on(e)) obs_victim(e, v);
    }
    if (t + 1 < e->nt) {
        make_room(e, t + 1, v);
        if (e->err) return;
        add_page(e, v, t + 1);
        charge(e, t, t + 1, v, 2);
        e->m.link_bytes_demotion[t + 1] += e->info[v].size;
        tier_enter(e, v, t + 1);
    }
}

static int32_t tier_choose(Engine *e, int t) {
    Tier *T = &e->t[t];
    if (T->key == K_OWN) return pol_choose(e, t);
    if (T->key == K_ARRIVAL) return ls_first_unpinned(&T->order, e->onext, e->pg, e->stamp);
    return T->heap.n ? T->heap.p[0] : NIL;
}

/* Make room in tier t >= 1 (or tier 0 under a compiled chooser) for page x. */
static void make_room(Engine *e, int t, int32_t x) {
    Tier *T = &e->t[t];
    int64_t need = e->info[x].size;
    while (T->used + need > T->cap) {
        if (T->n - T->npin <= 0) { fail(e, E_PINNED, t, x); return; }
        int32_t v = tier_choose(e, t);
        if (e->err) return;
        if (v == NIL || e->pg[v].tier != t || pinned(e, v)) { fail(e, E_INTERNAL, t, v); return; }
        evict(e, v, t);
        if (e->err) return;
    }
}

/* A page resident nowhere enters the backing tier (free: no time, no bytes). */
static void cold_insert(Engine *e, int32_t p) {
    int b = e->backing;
    make_room(e, b, p);
    if (e->err) return;
    add_page(e, p, b);
    pol_on_insert(e, p, b);
    if (e->err) return;
    tier_enter(e, p, b);
}

/* ------------------------------------------------------------------------ steps ---- */
static void step_begin(Engine *e) {
    int64_t s = e->step[e->cur];
    e->s = s;
    if (e->ctxbuf) { e->ctxbuf[1] = s; e->ctxbuf[2] = e->pos_base + e->begin; e->ctxbuf[3] = e->pos_base + e->end; }
    e->stamp++;
    e->m.steps++;
    e->step_misses = 0;
    e->npf = 0;
    e->n_spages = 0;
    e->step_bytes = 0;
    int64_t stamp = e->stamp, fp16sum = 0, nlay = 0;
    double dec = 0.0;
    int64_t *mlay = e->mark64, *mseq = e->mark64 + e->n_layers;
    for (int64_t j = e->cur; j < e->end; j++) {
        if (j + 8 < e->end) {  /* the pages' records are random reads: start them early */
            __builtin_prefetch(&e->pg[e->page[j + 8]]);
            __builtin_prefetch(&e->info[e->page[j + 8]]);
        }
        int32_t p = (int32_t)e->page[j];
        dec += e->info[p].decode;
        int32_t q = e->info[p].seq;
        if (mseq[q] != stamp) { mseq[q] = stamp; e->m.tokens++; }
        PageState *g = &e->pg[p];
        if (g->pin == stamp) continue;
        g->pin = stamp;
        e->spages[e->n_spages++] = p;
        fp16sum += e->info[p].fp16;
        e->step_bytes += e->info[p].size;
        int32_t l = e->info[p].layer;
        if (mlay[l] != stamp) { mlay[l] = stamp; nlay++; }
        int t = g->tier;
        if (t >= 0) {
            e->t[t].npin++;
            if (t == 0 && obs_on(e)) obs_pin(e, p);
            int key = e->t[t].key;
            if (key == K_OWN) pol_pin(e, p, t);
            else if ((key == K_LAST || key == K_POLICY) && e->hpos[p] != NIL) ih_remove(&e->t[t].heap, e->hpos, p);
        }
    }
    if (!e->serial) {
        Clock *c = &e->clk;
        c->t0 = c->issue = c->ready = c->now;
        double a = (double)nlay * e->floor_us, b = (double)fp16sum / e->attn_bytes_per_us;
        c->step_compute = (a >= b ? a : b) + dec;
    }
}

static void step_end(Engine *e) {
    /* Every page of the step is in tier 0 now: it becomes a candidate again. */
    int t0key = e->t[0].key;
    for (int64_t i = 0; i < e->n_spages; i++) {
        int32_t p = e->spages[i];
        if (obs_on(e)) obs_unpin(e, p);
        if (t0key == K_OWN) pol_unpin(e, p);
        else if (t0key == K_LAST || t0key == K_POLICY) tier_heap_push(e, p, 0);
    }
    for (int t = 0; t < e->nt; t++) e->t[t].npin = 0;
    e->stamp++;  /* nothing is pinned between steps */
    Clock *c = &e->clk;
    if (e->serial) {
        e->m.stall_us = e->m.total_time_us = c->serial_total;
    } else {
        double stall = c->ready - c->t0;
        e->m.stall_us += stall;
        e->m.compute_us += c->step_compute;
        c->now = c->t0 + stall + c->step_compute;
        e->m.total_time_us = c->now;
    }
}

static void finish(Engine *e) {
    /* Prefetches still pending at the end are wasted. */
    e->m.prefetch_wasted += e->n_pending;
    if (e->n_pending) {
        for (int64_t p = 0; p < e->n_pages; p++) e->pg[p].pending = 0;
        e->n_pending = 0;
    }
}

/* One access (local index e->cur): hooks, counters, then a hit or the start of a promotion. */
static void do_access(Engine *e) {
    int32_t p = (int32_t)e->page[e->cur];
    PageState *g = &e->pg[p];
    int loc = g->tier;
    int64_t s = e->s;
    e->ctx_pos = gpos(e);
    e->cur_obs = e->cur;
    g->used = ++e->use_ctr;
    if (e->ctxbuf) e->ctxbuf[0] = e->ctx_pos;
    pol_on_access(e, p, loc);
    pre_on_access(e, p, loc);
    if (e->err) return;
    if (g->evict_step >= 0 && s - g->evict_step <= e->regret_horizon && loc != 0) g->regret++;
    g->last_access = s;
    g->freq++;
    if (e->weight) g->weight_sum += (double)e->weight[e->cur];
    e->m.accesses++;
    if (obs_on(e)) obs_touch(e, p);
    if (loc == 0) {
        e->m.hits++;
        e->m.tier_hits[0]++;
        if (e->serial) {
            e->clk.serial_total += e->hit_base_us + e->info[p].decode;
        } else if (!isnan(g->ready)) {  /* a prefetch still in flight: wait for it */
            double r = g->ready;
            g->ready = NAN;
            if (r > e->clk.ready) e->clk.ready = r;
            if (r > e->clk.t0) e->m.prefetch_late++;
        }
        g->seen = 1;
        if (g->pending) { g->pending = 0; e->n_pending--; e->m.prefetch_useful++; }
        e->cur++;
        return;
    }
    e->m.misses++;
    e->step_misses++;
    e->incoming = p;
    e->kind = 0;
    e->phase = PH_ROOM;
    if (loc < 0) {
        e->m.full_misses++;
        int first = !g->seen;
        e->m.first_touch_misses += first;
        if (first && e->create) { e->src = -1; return; }
        cold_insert(e, p);
        if (e->err) return;
        loc = e->backing;
    } else {
        e->m.tier_hits[loc]++;
    }
    tier_leave(e, p, loc);
    remove_page(e, p, loc);
    e->src = loc;
}

/* Tier 0 has room for e->incoming: place it (promotion, prefetch or created page). */
static void place_incoming(Engine *e) {
    int32_t p = e->incoming;
    add_page(e, p, 0);
    e->pg[p].insert_step = e->s;
    if (e->src >= 0) {
        charge(e, e->src, 0, p, e->kind);
        if (e->kind == 0) e->m.link_bytes_demand[e->src] += e->info[p].size;
        else e->m.link_bytes_prefetch[e->src] += e->info[p].size;
    }
    pol_on_insert(e, p, 0);
    if (e->err) return;
    tier_enter(e, p, 0);
    if (e->kind == 0) {
        e->pg[p].seen = 1;
        if (e->pg[p].pending) { e->pg[p].pending = 0; e->n_pending--; e->m.prefetch_useful++; }
        e->cur++;
        e->phase = PH_ACCESS;
    } else {
        e->phase = e->pf_external ? PH_PF_DECIDE : PH_PF;
    }
}

/* Start a prefetch of page c (the prefetcher's or the agent's choice), as the engine's _prefetch. */
static void start_prefetch(Engine *e, int32_t c) {
    PageState *g = &e->pg[c];
    if (g->tier < 0) { cold_insert(e, c); if (e->err) return; }
    if (g->pending) return;
    g->pending = 1;
    e->n_pending++;
    e->m.prefetch_issued++;
    int src = g->tier;
    tier_leave(e, c, src);
    remove_page(e, c, src);
    e->incoming = c;
    e->src = src;
    e->kind = 1;
    e->phase = PH_ROOM;
}

enum { ST_NEED = 3 };  /* internal: the current chunk ends inside a step */

/* Run until the end, a decision (external choosers), an error, or the end of the current chunk. */
static int advance(Engine *e) {
    for (;;) {
        if (e->err) return ST_ERROR;
        switch (e->phase) {
        case PH_STEP: {
            if (e->cur >= e->n_acc) {
                if (e->more) return ST_NEED;
                finish(e);
                e->phase = PH_DONE;
                return ST_DONE;
            }
            int64_t end = e->cur, s = e->step[e->cur];
            while (end < e->n_acc && e->step[end] == s) end++;
            if (end == e->n_acc && e->more) return ST_NEED;
            e->begin = e->cur;
            e->end = end;
            step_begin(e);
            e->phase = PH_ACCESS;
            break;
        }
        case PH_ACCESS:
            if (e->cur < e->end) { do_access(e); break; }
            if (e->pf_external) {
                if (!e->serial) e->clk.issue = e->clk.ready;
                e->phase = PH_PF_DECIDE;
            } else if (e->prefetch_on && e->pre && e->max_prefetch > 0) {
                if (!e->serial) e->clk.issue = e->clk.ready;
                e->phase = PH_PF_BEGIN;
            } else {
                e->phase = PH_STEP_END;
            }
            break;
        case PH_ROOM: {
            Tier *T = &e->t[0];
            int32_t p = e->incoming;
            if (T->used + e->info[p].size > T->cap) {
                if (T->n - T->npin <= 0) { fail(e, E_PINNED, 0, p); break; }
                if (e->external) return obs_eviction(e) ? ST_EVICT : ST_ERROR;
                int32_t v = tier_choose(e, 0);
                if (e->err) break;
                if (v == NIL || e->pg[v].tier != 0 || pinned(e, v)) { fail(e, E_INTERNAL, 0, v); break; }
                evict(e, v, 0);
                break;
            }
            place_incoming(e);
            break;
        }
        case PH_PF_BEGIN:
            e->pf_n = pre_propose(e);
            e->pf_i = 0;
            e->phase = PH_PF;
            break;
        case PH_PF: {
            if (e->pf_i >= e->pf_n) { e->phase = PH_STEP_END; break; }
            int32_t c = e->pf_list[e->pf_i++];
            if (c < 0 || c >= e->n_pages || e->pg[c].tier == 0) break;
            start_prefetch(e, c);
            if (e->phase == PH_PF) break;  /* it was pending already */
            break;
        }
        case PH_PF_DECIDE:
            if (e->step_misses > 0 && e->npf < e->max_prefetch && obs_prefetch(e)) return ST_PREFETCH;
            e->phase = PH_STEP_END;
            break;
        case PH_STEP_END:
            step_end(e);
            e->phase = PH_STEP;
            break;
        case PH_DONE:
            return ST_DONE;
        }
    }
}

/* The pending decision gets its answer: an eviction victim, or a prefetch slot (0 = none). */
static int act_evict(Engine *e, int32_t v) {
    if (e->phase != PH_ROOM || v < 0 || v >= e->n_pages || e->pg[v].tier != 0 || pinned(e, v)) {
        fail(e, E_VICTIM, 0, v);
        return ST_ERROR;
    }
    evict(e, v, 0);
    return advance(e);
}

static int act_prefetch(Engine *e, int32_t c) {  /* c < 0: no prefetch, ends the step's prefetch phase */
    if (e->phase != PH_PF_DECIDE) { fail(e, E_VICTIM, 0, c); return ST_ERROR; }
    if (c < 0) { e->phase = PH_STEP_END; return advance(e); }
    e->npf++;
    start_prefetch(e, c);
    if (e->phase == PH_PF_DECIDE) return advance(e);
    return advance(e);
}

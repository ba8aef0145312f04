/* The compiled policies: each one is the rule of its baselines/<name>.py, with a structure that
 * decides in O(1) or O(log n) (amortized where stated). Included by module.c.
 *
 * Pinning: pages of the current step are pinned. Heap-ordered tiers take pinned pages out of the
 * heap at the step start and put them back at its end (their keys only change while pinned);
 * list-ordered policies keep pinned pages in place and skip them (a cursor per list remembers
 * where the pinned prefix ends, so a walk costs O(1) amortized per step). */
#include "policy.h"

#define LEVEL (((int64_t)1) << 40)

static inline int pinned_(const Engine *e, int32_t p) { return e->pg[p].pin == e->stamp; }
static inline int64_t sizeof_(const Engine *e, int32_t p) { return e->info[p].size; }

/* ============================================================== Python hooks ===== */
static int py_call3(Engine *e, PyObject *obj, const char *name, int64_t a, int64_t b, int64_t c) {
    PyObject *r = PyObject_CallMethod(obj, name, "LLL", (long long)a, (long long)b, (long long)c);
    if (!r) { e->err = E_INTERNAL; e->err_tier = -2; return -1; }  /* err_tier -2: a Python error is set */
    Py_DECREF(r);
    return 0;
}
static void py_hook(Engine *e, int which, int32_t p, int t) {
    static const char *names[3] = {"_kv_on_access", "_kv_on_insert", "_kv_on_evict"};
    for (int i = 0; i < 2; i++) {
        PyObject *o = e->pol->hooks[i];
        if (o && o != Py_None) {
            if (py_call3(e, o, names[which], p, t, e->s) < 0) return;
        }
    }
}

/* ============================================================== LRU ===== */
/* Tier 0 as a list in order of last use (PageState.used): a use moves a page to the back. */
static void lru_touch(Engine *e, int32_t p) {
    Policy *P = e->pol;
    ls_remove(&P->L[0], P->prev, P->next, p, 0);
    ls_push_back(&P->L[0], P->prev, P->next, p, 0);
}

/* ============================================================== FIFO ===== */
static void fifo_enter(Engine *e, int32_t p) {
    Policy *P = e->pol;
    ls_push_back(&P->L[0], P->prev, P->next, p, 0);
    P->where[p] = 1;
}

/* ============================================================== CLOCK ===== */
/* Queue oldest first; the victim is the first unpinned page with the smallest counter (what the
 * hand of libcachesim's Clock reaches); on_evict applies the sweep: full rounds lower every
 * counter, pages passed before the victim lose one and move to the back. */
static int32_t clock_choose(Engine *e) {
    Policy *P = e->pol;
    int64_t best = INT64_MAX;
    int32_t v = NIL;
    for (int32_t q = P->L[0].head; q != NIL; q = P->next[q]) {
        if (pinned_(e, q)) continue;
        if (P->cnt[q] == 0) return q;
        if (P->cnt[q] < best) { best = P->cnt[q]; v = q; }
    }
    return v;
}
static void clock_evict(Engine *e, int32_t v) {
    Policy *P = e->pol;
    int64_t rounds = P->cnt[v];
    if (rounds)
        for (int32_t q = P->L[0].head; q != NIL; q = P->next[q]) P->cnt[q] = P->cnt[q] > rounds ? P->cnt[q] - rounds : 0;
    for (;;) {
        int32_t q = P->L[0].head;
        ls_remove(&P->L[0], P->prev, P->next, q, 0);
        if (q == v) break;
        if (P->cnt[q] > 0) P->cnt[q]--;
        ls_push_back(&P->L[0], P->prev, P->next, q, 0);
    }
    P->where[v] = 0;
}

/* ============================================================== SIEVE ===== */
/* Queue oldest first (nothing moves); the hand walks toward newer pages, wrapping to the oldest. */
static int32_t sieve_choose(Engine *e) {
    Policy *P = e->pol;
    int32_t start = P->hand != NIL ? P->hand : P->L[0].head;
    int32_t q = start, first_unpinned = NIL;
    if (q == NIL) return NIL;
    do {
        if (!pinned_(e, q)) {
            if (!P->cnt[q]) return q;
            if (first_unpinned == NIL) first_unpinned = q;
        }
        q = P->next[q] != NIL ? P->next[q] : P->L[0].head;
    } while (q != start);
    return first_unpinned;  /* every candidate visited: a full sweep clears them all */
}
static void sieve_evict(Engine *e, int32_t v) {
    Policy *P = e->pol;
    if (P->cnt[v]) {
        for (int32_t q = P->L[0].head; q != NIL; q = P->next[q]) P->cnt[q] = 0;
    } else {
        int32_t q = P->hand != NIL ? P->hand : P->L[0].head;
        while (q != v) {
            P->cnt[q] = 0;
            q = P->next[q] != NIL ? P->next[q] : P->L[0].head;
        }
    }
    P->hand = P->next[v];  /* NIL: the victim was the newest, the hand restarts at the oldest */
    ls_remove(&P->L[0], P->prev, P->next, v, 0);
    P->where[v] = 0;
}

/* ============================================================== ARC ===== */
enum { T1 = 0, T2 = 1, B1 = 2, B2 = 3 };
static inline void arc_move(Engine *e, int32_t p, int to) {
    Policy *P = e->pol;
    int64_t s = sizeof_(e, p);
    if (P->where[p]) ls_remove(&P->L[P->where[p] - 1], P->prev, P->next, p, s);
    if (to >= 0) { ls_push_back(&P->L[to], P->prev, P->next, p, s); P->where[p] = (uint8_t)(to + 1); }
    else P->where[p] = 0;
}
static int32_t arc_first(Engine *e, int l, int skip_pinned) {
    Policy *P = e->pol;
    if (!skip_pinned) return P->L[l].head;
    return ls_first_unpinned(&P->L[l], P->next, e->pg, e->stamp);
}
/* REPLACE: victim and the ghost list it goes to. */
static int32_t arc_replace(Engine *e, int skip, int *ghost) {
    Policy *P = e->pol;
    int in_b2 = P->ghost_hit != NIL && P->ghost_list == 2;
    double t1b = (double)P->L[T1].bytes;
    int t1_first = (P->L[T1].bytes > 0 && (t1b > P->arc_p || (t1b == P->arc_p && in_b2))) || P->L[T2].bytes == 0;
    int a = t1_first ? T1 : T2, b = t1_first ? T2 : T1;
    int32_t v = arc_first(e, a, skip);
    if (v != NIL) { *ghost = a == T1 ? 1 : 2; return v; }
    v = arc_first(e, b, skip);
    *ghost = b == T1 ? 1 : 2;
    return v;
}
/* The procedure's victim, its ghost list (0: none) and the ghost list to drop one entry from (0). */
static int32_t arc_plan(Engine *e, int skip, int *ghost, int *drop) {
    Policy *P = e->pol;
    *drop = 0;
    if (P->ghost_hit != NIL) return arc_replace(e, skip, ghost);
    if (P->L[T1].bytes + P->L[B1].bytes + P->incoming > P->cap) {
        if (P->L[B1].bytes > 0) { *drop = 1; return arc_replace(e, skip, ghost); }
        int32_t v = arc_first(e, T1, skip);
        if (v != NIL) { *ghost = 0; return v; }
        return arc_replace(e, skip, ghost);
    }
    if (P->L[T1].bytes + P->L[B1].bytes + P->L[T2].bytes + P->L[B2].bytes >= 2 * P->cap && P->L[B2].bytes > 0) *drop = 2;
    return arc_replace(e, skip, ghost);
}
static void arc_on_access(Engine *e, int32_t p, int loc) {
    Policy *P = e->pol;
    P->version++;
    P->ghost_hit = NIL;
    int64_t s = sizeof_(e, p);
    if (loc == 0) { arc_move(e, p, T2); return; }  /* T1 hit -> T2; T2 hit -> T2's MRU end */
    P->incoming = s;
    if (P->where[p] == B1 + 1) {
        double r = (double)P->L[B2].bytes / (double)P->L[B1].bytes;
        double delta = (r < 1.0 ? 1.0 : r) * (double)s;
        double np = P->arc_p + delta, cap = (double)P->cap;
        P->arc_p = np > cap ? cap : np;
        arc_move(e, p, -1);
        P->ghost_hit = p; P->ghost_list = 1;
    } else if (P->where[p] == B2 + 1) {
        double r = (double)P->L[B1].bytes / (double)P->L[B2].bytes;
        double delta = (r < 1.0 ? 1.0 : r) * (double)s;
        double np = P->arc_p - delta;
        P->arc_p = np < 0.0 ? 0.0 : np;
        arc_move(e, p, -1);
        P->ghost_hit = p; P->ghost_list = 2;
    }
}
static void arc_enter(Engine *e, int32_t p) {
    Policy *P = e->pol;
    P->version++;
    if (P->where[p] == B1 + 1 || P->where[p] == B2 + 1) arc_move(e, p, -1);  /* a prefetched ghost */
    if (P->ghost_hit == p) { arc_move(e, p, T2); P->ghost_hit = NIL; }
    else arc_move(e, p, T1);
}
static int32_t arc_choose(Engine *e) {
    Policy *P = e->pol;
    int ghost, drop;
    int32_t v = arc_plan(e, 1, &ghost, &drop);
    P->plan_victim = v;
    P->plan_version = P->version;
    return v;
}
static void arc_evict(Engine *e, int32_t v) {
    Policy *P = e->pol;
    int ghost, drop;
    int32_t pv = arc_plan(e, P->plan_version == P->version && P->plan_victim == v, &ghost, &drop);
    if (pv != v) { ghost = P->where[v] == T1 + 1 ? 1 : 2; drop = 0; }  /* chosen from outside */
    if (drop == 1) arc_move(e, P->L[B1].head, -1);
    else if (drop == 2) arc_move(e, P->L[B2].head, -1);
    arc_move(e, v, ghost == 1 ? B1 : ghost == 2 ? B2 : -1);
    P->version++;
    P->plan_victim = NIL;
}

/* ============================================================== S3-FIFO ===== */
enum { SMALL = 0, MAIN = 1 };
static inline void s3_push(Engine *e, int32_t p, int q) {
    Policy *P = e->pol;
    ls_push_back(&P->L[q], P->prev, P->next, p, sizeof_(e, p));
    P->where[p] = (uint8_t)(q + 1);
    if (pinned_(e, p)) P->L[q].npin++;
}
static inline void s3_pop(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int q = P->where[p] - 1;
    ls_remove(&P->L[q], P->prev, P->next, p, sizeof_(e, p));
    P->where[p] = 0;
    if (pinned_(e, p)) P->L[q].npin--;
}
static void s3_to_ghost(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t s = sizeof_(e, p);
    if (P->ghost_cap <= 0 || P->in_ghost[p] || s > P->ghost_cap) return;
    while (P->ghost.bytes + s > P->ghost_cap) {
        int32_t g = P->ghost.head;
        ls_remove(&P->ghost, P->gprev, P->gnext, g, sizeof_(e, g));
        P->in_ghost[g] = 0;
    }
    ls_push_back(&P->ghost, P->gprev, P->gnext, p, s);
    P->in_ghost[p] = 1;
}
static void s3_on_access(Engine *e, int32_t p, int loc) {
    Policy *P = e->pol;
    P->version++;
    P->ghost_hit = NIL;
    if (loc == 0) P->cnt[p]++;
    else if (P->in_ghost[p]) {
        ls_remove(&P->ghost, P->gprev, P->gnext, p, sizeof_(e, p));
        P->in_ghost[p] = 0;
        P->ghost_hit = p;
    }
}
static void s3_enter(Engine *e, int32_t p) {
    Policy *P = e->pol;
    P->version++;
    P->cnt[p] = 0;
    int64_t s = sizeof_(e, p);
    if (P->ghost_hit == p) { P->ghost_hit = NIL; s3_push(e, p, MAIN); }
    else if (s >= P->small_cap || (!P->has_evicted && P->L[SMALL].bytes >= P->small_cap)) s3_push(e, p, MAIN);
    else s3_push(e, p, SMALL);
}
static inline int64_t c3(int64_t f) { return f < 3 ? f : 3; }
/* Dry run of the eviction procedure (no side effects): the victim. */
static int32_t s3_dry_small(Engine *e, int64_t *n_moved) {
    Policy *P = e->pol;
    int64_t thr = P->ipar[0];
    for (int32_t q = P->L[SMALL].head; q != NIL; q = P->next[q]) {
        if (pinned_(e, q)) continue;
        if (P->cnt[q] >= thr) { (*n_moved)++; continue; }
        return q;
    }
    return NIL;
}
static int32_t s3_dry_main(Engine *e, int64_t n_moved) {
    /* order = main, then the pages the small walk would move (counter 0): first unpinned page with
     * the smallest min(counter, 3) */
    Policy *P = e->pol;
    int64_t best = INT64_MAX;
    int32_t v = NIL;
    for (int32_t q = P->L[MAIN].head; q != NIL; q = P->next[q]) {
        if (pinned_(e, q)) continue;
        int64_t c = c3(P->cnt[q]);
        if (c == 0) return q;
        if (c < best) { best = c; v = q; }
    }
    if (n_moved > 0) {  /* the first moved page (counter 0) */
        int64_t thr = P->ipar[0];
        for (int32_t q = P->L[SMALL].head; q != NIL; q = P->next[q])
            if (!pinned_(e, q) && P->cnt[q] >= thr) return q;
    }
    return v;
}
static int32_t s3_choose(Engine *e) {
    Policy *P = e->pol;
    int from_small = !(P->L[MAIN].bytes > P->main_cap || P->L[SMALL].bytes == 0);
    int64_t moved = 0;
    int32_t v = NIL;
    if (from_small) v = s3_dry_small(e, &moved);
    if (v == NIL) {
        int main_ok = P->L[MAIN].n - P->L[MAIN].npin > 0 || moved > 0;
        if (main_ok) v = s3_dry_main(e, moved);
        else if (!from_small) {
            v = s3_dry_small(e, &moved);
            if (v == NIL) v = s3_dry_main(e, moved);
        }
    }
    P->plan_victim = v;
    P->plan_version = P->version;
    return v;
}
/* The procedure with its side effects, as libcachesim runs it: returns the page evicted. */
static int32_t s3_walk_small(Engine *e) {
    Policy *P = e->pol;
    int64_t thr = P->ipar[0];
    int32_t q = P->L[SMALL].head;
    while (q != NIL) {
        int32_t nx = P->next[q];
        if (!pinned_(e, q)) {
            if (P->cnt[q] >= thr) { s3_pop(e, q); P->cnt[q] = 0; s3_push(e, q, MAIN); }
            else return q;
        }
        q = nx;
    }
    return NIL;
}
static int32_t s3_walk_main(Engine *e) {
    Policy *P = e->pol;
    for (;;) {
        int32_t q = P->L[MAIN].head;
        int64_t c = c3(P->cnt[q]);
        if (c == 0 && !pinned_(e, q)) return q;
        P->cnt[q] = c > 0 ? c - 1 : 0;
        s3_pop(e, q);
        s3_push(e, q, MAIN);
    }
}
static void s3_evict(Engine *e, int32_t v) {
    Policy *P = e->pol;
    int planned = P->plan_version == P->version && P->plan_victim == v;
    P->has_evicted = 1;
    if (planned) {
        int from_small = !(P->L[MAIN].bytes > P->main_cap || P->L[SMALL].bytes == 0);
        int32_t got = NIL;
        if (from_small) got = s3_walk_small(e);
        if (got == NIL) {
            if (P->L[MAIN].n - P->L[MAIN].npin > 0) got = s3_walk_main(e);
            else if (!from_small) {
                got = s3_walk_small(e);
                if (got == NIL) got = s3_walk_main(e);
            } else got = s3_walk_main(e);
        }
        if (got != v) { e->err = E_INTERNAL; return; }
    }
    int in_small = P->where[v] == SMALL + 1;
    s3_pop(e, v);
    if (in_small) s3_to_ghost(e, v);
    P->version++;
    P->plan_victim = NIL;
}

/* ============================================================== keyed heaps ===== */
/* LFU, heavy_hitter, predictive, windowed_recency, belady, cost_aware_tiered (GDSF): the engine's
 * tier heaps ordered by pol_key. */
static double gdsf_value(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int fall = e->nt > 1 ? 1 : e->backing;
    /* serving: the load from the fastest tier below holding a copy, else the recompute */
    double cost = (e->refetch ? e->refetch(e, p) : link_time(&e->link[fall][0], e->info[p].size, 0) + e->info[p].decode)
                  + P->par[2];
    return (pow(1.0 + (double)P->cnt[p], P->par[0]) * cost) / pow((double)e->info[p].size, P->par[1]);
}
static void windowed_on_access(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t W = P->ipar[0];
    P->ring[(P->ring_head + P->ring_len) % P->ring_cap] = p;
    P->ring_len++;
    P->cnt[p]++;
    if (P->ring_len > W) {
        int32_t q = P->ring[P->ring_head];
        P->ring_head = (P->ring_head + 1) % P->ring_cap;
        P->ring_len--;
        P->cnt[q]--;
        int t = e->pg[q].tier;
        if (t >= 0 && e->hpos[q] != NIL && e->t[t].key == K_POLICY) {
            int64_t b;
            ih_rekey(&e->t[t].heap, e->hpos, q, pol_key(e, q, t, &b));
        }
    }
}

/* ============================================================== banded groups ===== */
/* cost_aware: ((fw*f) + ((rw*l)/S)) - (sp*kib);  regret_aware: ((fw*f) + ((rw*l)/S)) + (w*r).
 * Pages sharing (f, static term) form a group, ordered inside by their last access (the only
 * moving part); groups are ordered by B = fw*f -/+ term. The recency part lies in [-|rw|, |rw|],
 * so only groups with B - |rw| - slack <= best score so far can hold the victim. */
static double band_term(Engine *e, int32_t p) {
    Policy *P = e->pol;
    return P->id == P_COSTAWARE ? P->par[2] * P->kib[p] : P->par[2] * P->val[p];
}
static inline double band_score(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t s = e->s > 1 ? e->s : 1;
    double a = (P->par[0] * (double)e->pg[p].freq) + ((P->par[1] * (double)e->pg[p].last_access) / (double)s);
    return P->id == P_COSTAWARE ? a - band_term(e, p) : a + band_term(e, p);
}
static inline uint64_t band_inkey(Engine *e, int32_t p) {
    double rw = e->pol->par[1];
    int64_t l = e->pg[p].last_access;
    return rw > 0 ? key_i64(l) : rw < 0 ? key_i64(-l) : 0;
}
static uint64_t gm_hash(int64_t f, uint64_t z, int t) {
    return hm_hash(f * 1000003 + (int64_t)(z ^ (z >> 29)) * 31 + t);
}
static int gm_grow(GMap *m) {
    int64_t nc = m->cap ? 2 * m->cap : 64;
    GMap big = {0};
    big.f = malloc((size_t)nc * 8); big.z = malloc((size_t)nc * 8);
    big.t = malloc((size_t)nc * 4); big.gid = malloc((size_t)nc * 4);
    if (!big.f || !big.z || !big.t || !big.gid) return -1;
    big.cap = nc;
    for (int64_t i = 0; i < nc; i++) big.gid[i] = NIL;
    for (int64_t i = 0; i < m->cap; i++)
        if (m->gid[i] != NIL) {
            uint64_t j = gm_hash(m->f[i], m->z[i], m->t[i]) & (uint64_t)(nc - 1);
            while (big.gid[j] != NIL) j = (j + 1) & (uint64_t)(nc - 1);
            big.f[j] = m->f[i]; big.z[j] = m->z[i]; big.t[j] = m->t[i]; big.gid[j] = m->gid[i]; big.n++;
        }
    free(m->f); free(m->z); free(m->t); free(m->gid);
    *m = big;
    return 0;
}
static int64_t gm_slot(GMap *m, int64_t f, uint64_t z, int t) {
    uint64_t mask = (uint64_t)m->cap - 1, j = gm_hash(f, z, t) & mask;
    while (m->gid[j] != NIL && !(m->f[j] == f && m->z[j] == z && m->t[j] == t)) j = (j + 1) & mask;
    return (int64_t)j;
}
static void gm_delete(GMap *m, int64_t j) {  /* backward-shift deletion for linear probing */
    uint64_t mask = (uint64_t)m->cap - 1, i = (uint64_t)j;
    m->gid[i] = NIL; m->n--;
    for (;;) {
        i = (i + 1) & mask;
        if (m->gid[i] == NIL) return;
        uint64_t home = gm_hash(m->f[i], m->z[i], m->t[i]) & mask;
        /* can the entry at i move to hole j? yes if home is not in (j, i] cyclically */
        int in_range = (j <= (int64_t)i) ? (home > (uint64_t)j && home <= i) : (home > (uint64_t)j || home <= i);
        if (!in_range) {
            m->f[j] = m->f[i]; m->z[j] = m->z[i]; m->t[j] = m->t[i]; m->gid[j] = m->gid[i];
            m->gid[i] = NIL;
            j = (int64_t)i;
        }
    }
}
static int32_t band_group(Engine *e, int32_t p, int t) {  /* find or create p's group in tier t */
    Policy *P = e->pol;
    int64_t f = e->pg[p].freq;
    double Z = band_term(e, p);
    double Zn = Z + 0.0;
    uint64_t zb; memcpy(&zb, &Zn, 8);
    if (2 * (P->gmap.n + 1) > P->gmap.cap && gm_grow(&P->gmap) < 0) { e->err = E_INTERNAL; return NIL; }
    int64_t j = gm_slot(&P->gmap, f, zb, t);
    if (P->gmap.gid[j] != NIL) return P->gmap.gid[j];
    int32_t g;
    if (P->free_group != NIL) { g = P->free_group; P->free_group = P->groups[g].next_free; }
    else {
        if (P->n_groups == P->groups_cap) {
            int64_t c = P->groups_cap ? 2 * P->groups_cap : 64;
            P->groups = kv_grow(P->groups, c, sizeof(Group));
            P->gpos = kv_grow(P->gpos, c, 4);
            if (!P->groups || !P->gpos) { e->err = E_INTERNAL; return NIL; }
            P->groups_cap = c;
        }
        g = (int32_t)P->n_groups++;
    }
    Group *G = &P->groups[g];
    G->f = f; G->zbits = zb; G->t = t; G->root = NIL; G->n = 0;
    G->X = P->par[0] * (double)f; G->Z = Z;
    G->B = P->id == P_COSTAWARE ? G->X - Z : G->X + Z;
    P->gmap.f[j] = f; P->gmap.z[j] = zb; P->gmap.t[j] = t; P->gmap.gid[j] = g; P->gmap.n++;
    if (ih_push(&P->gheap[t], P->gpos, g, key_f64(G->B), g) < 0) e->err = E_INTERNAL;
    return g;
}
static void band_add(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    int32_t g = band_group(e, p, t);
    if (g == NIL) return;
    Group *G = &P->groups[g];
    pf_push(&P->pf, &G->root, p, band_inkey(e, p), e->pg[p].ins);
    G->n++;
    P->page_group[p] = g;
}
static void band_del(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int32_t g = P->page_group[p];
    if (g == NIL) return;
    Group *G = &P->groups[g];
    pf_remove(&P->pf, &G->root, p);
    P->page_group[p] = NIL;
    if (--G->n == 0) {
        ih_remove(&P->gheap[G->t], P->gpos, g);
        gm_delete(&P->gmap, gm_slot(&P->gmap, G->f, G->zbits, G->t));
        G->next_free = P->free_group;
        P->free_group = g;
    }
}
static int32_t band_choose(Engine *e, int t) {
    Policy *P = e->pol;
    IHeap *h = &P->gheap[t];
    double rw = fabs(P->par[1]);
    int32_t best = NIL;
    double bs = 0.0;
    int64_t popped = 0;
    if (P->scratch_cap < h->n) {
        P->scratch = kv_grow(P->scratch, h->n, 4);
        P->scratch_cap = h->n;
        if (!P->scratch) { e->err = E_INTERNAL; return NIL; }
    }
    while (h->n) {
        int32_t g = h->p[0];
        Group *G = &P->groups[g];
        double slack = 1e-12 * (fabs(G->X) + fabs(G->Z) + rw) + 1e-300;
        if (best != NIL && G->B - rw - slack > bs) break;
        ih_remove(h, P->gpos, g);
        P->scratch[popped++] = g;
        int32_t p = G->root;
        double sc = band_score(e, p);
        if (best == NIL || sc < bs || (sc == bs && e->pg[p].ins < e->pg[best].ins)) { best = p; bs = sc; }
    }
    for (int64_t i = 0; i < popped; i++) {
        int32_t g = P->scratch[i];
        ih_push(h, P->gpos, g, key_f64(P->groups[g].B), g);
    }
    return best;
}
static void regret_on_access(Engine *e, int32_t p) {
    Policy *P = e->pol;
    double r = P->val[p] * P->par[3];
    int64_t ev = P->aux[p];
    if (ev >= 0) {
        P->aux[p] = -1;
        int64_t gap = e->s - ev, h = P->ipar[0];
        if (gap <= h) r = r + (double)(h - gap + 1) / (double)h;
    }
    P->val[p] = r;
}

/* ============================================================== belady_size ===== */
static inline uint64_t bs_inkey(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t nx = P->nextu[p];
    if (nx > e->n_future) nx = e->n_future;
    return key_i64(-nx);
}
static void bs_add(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    pf_push(&P->pf, &P->sroot[t * P->n_sclass + P->sclass[p]], p, bs_inkey(e, p), e->pg[p].ins);
}
static void bs_del(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    pf_remove(&P->pf, &P->sroot[t * P->n_sclass + P->sclass[p]], p);
}
static int32_t bs_choose(Engine *e, int t) {
    Policy *P = e->pol;
    int32_t best = NIL;
    double bv = 0.0;
    for (int64_t c = 0; c < P->n_sclass; c++) {
        int32_t p = P->sroot[t * P->n_sclass + c];
        if (p == NIL) continue;
        int64_t nx = P->nextu[p];
        double sz = (double)e->info[p].size;
        double v = nx >= e->n_future ? P->never + sz : (double)(nx - e->ctx_pos) * sz;
        if (best == NIL || v > bv || (v == bv && e->pg[p].ins < e->pg[best].ins)) { best = p; bv = v; }
    }
    return best;
}

/* ============================================================== streaming_llm, h2o ===== */
/* Per tier and class (streaming: 0 middle, 1 recent, 2 sink; h2o: 1 recent), a pairing heap per
 * sequence by (token_end, insertion), and a heap of sequences by (token_end - length, insertion)
 * of their first page: the largest distance to its sequence's end goes first. */
#define SD_IDX(P, e, t, c, q) ((((int64_t)(t) * 3 + (c)) * (e)->n_seqs) + (q))
static void sd_refresh(Engine *e, int t, int c, int32_t q) {
    Policy *P = e->pol;
    int64_t i = SD_IDX(P, e, t, c, q);
    int32_t r = P->sd_root[i];
    int32_t *pos = P->sd_pos + ((int64_t)t * 3 + c) * e->n_seqs;
    IHeap *h = &P->sd_heap[t][c];
    if (pos[q] != NIL) ih_remove(h, pos, q);
    if (r != NIL) ih_push(h, pos, q, key_i64(e->tok_end[r] - P->length[q]), e->pg[r].ins);
}
static inline int sd_class(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t dist = P->length[e->info[p].seq] - e->tok_end[p];
    if (P->id == P_STREAMING) {
        if (e->tok_start[p] < P->ipar[0]) return 2;
        return dist < P->ipar[1] ? 1 : 0;
    }
    return dist < P->ipar[0] ? 1 : 0;  /* h2o: 1 recent, 0 by attention mass */
}
static inline double h2o_mass(Engine *e, int32_t p) {
    return e->weight ? e->pg[p].weight_sum : (double)e->pg[p].freq;  /* a weight column, or counts */
}
static void sd_add(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    int c = sd_class(e, p);
    P->cls[p] = (uint8_t)c;
    if (P->id == P_H2O && c == 0) {
        if (ih_push(&P->mass[t], e->hpos, p, key_f64(h2o_mass(e, p)), e->pg[p].ins) < 0) e->err = E_INTERNAL;
        return;
    }
    int32_t q = e->info[p].seq;
    int64_t i = SD_IDX(P, e, t, c, q);
    int32_t old = P->sd_root[i];
    pf_push(&P->pf, &P->sd_root[i], p, key_i64(e->tok_end[p]), e->pg[p].ins);
    if (P->sd_root[i] != old) sd_refresh(e, t, c, q);
}
static void sd_del(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    int c = P->cls[p];
    if (P->id == P_H2O && c == 0) { ih_remove(&P->mass[t], e->hpos, p); return; }
    int32_t q = e->info[p].seq;
    int64_t i = SD_IDX(P, e, t, c, q);
    int32_t old = P->sd_root[i];
    pf_remove(&P->pf, &P->sd_root[i], p);
    if (P->sd_root[i] != old) sd_refresh(e, t, c, q);
}
static int32_t sd_choose(Engine *e, int t) {
    Policy *P = e->pol;
    if (P->id == P_H2O) {
        if (P->mass[t].n) return P->mass[t].p[0];
        IHeap *h = &P->sd_heap[t][1];
        return h->n ? P->sd_root[SD_IDX(P, e, t, 1, h->p[0])] : NIL;
    }
    for (int c = 0; c < 3; c++) {
        IHeap *h = &P->sd_heap[t][c];
        if (h->n) return P->sd_root[SD_IDX(P, e, t, c, h->p[0])];
    }
    return NIL;
}
/* Sequence q grew: recent pages that fell out of the window change class; distances changed. */
static void sd_grow(Engine *e, int32_t q) {
    Policy *P = e->pol;
    int64_t W = P->id == P_STREAMING ? P->ipar[1] : P->ipar[0];
    int ncls = P->id == P_STREAMING ? 3 : 2;
    for (int t = 0; t < e->nt; t++) {
        if (e->t[t].key != K_OWN) continue;
        int64_t i = SD_IDX(P, e, t, 1, q);
        while (P->sd_root[i] != NIL && P->length[q] - e->tok_end[P->sd_root[i]] >= W) {
            int32_t p = P->sd_root[i];
            pf_remove(&P->pf, &P->sd_root[i], p);
            sd_add(e, p, t);
        }
        for (int c = 0; c < ncls; c++) if (!(P->id == P_H2O && c == 0)) sd_refresh(e, t, c, q);
    }
}

/* ============================================================== dispatch ===== */
static void pol_on_access(Engine *e, int32_t p, int loc) {
    Policy *P = e->pol;
    if (!P) return;
    switch (P->id) {
    case P_LRU: if (loc == 0) lru_touch(e, p); break;
    case P_LFU: if (loc == 0) { P->clock++; P->cnt[p]++; P->aux[p] = P->clock; } break;
    case P_CLOCK: if (loc == 0 && P->cnt[p] < P->ipar[0]) P->cnt[p]++; break;
    case P_SIEVE: if (loc == 0) P->cnt[p] = 1; break;
    case P_ARC: arc_on_access(e, p, loc); break;
    case P_S3FIFO: s3_on_access(e, p, loc); break;
    case P_WINDOWED: windowed_on_access(e, p); break;
    case P_REGRET: regret_on_access(e, p); break;
    case P_GDSF: P->cnt[p]++; P->val[p] = P->inflation + gdsf_value(e, p); break;
    case P_BELADY: case P_BELADY_SIZE: P->nextu[p] = e->next_pos[e->ctx_pos]; break;
    case P_H2O: case P_STREAMING: {
        int32_t q = e->info[p].seq;
        if (e->tok_end[p] > P->length[q]) { P->length[q] = e->tok_end[p]; sd_grow(e, q); }
        break;
    }
    case P_RADIX_LRU: radix_touch(P, p); break;
    case P_HITS_PER_TOKEN: if (loc == 0) { P->cnt[p]++; hpt_set(e, p); } break;
    case P_SESSION: sess_touch(e, p); break;
    default: break;
    }
    if (P->hooks[0] || P->hooks[1]) py_hook(e, 0, p, loc);
}

static void pol_on_insert(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    e->pg[p].used = ++e->use_ctr;
    if (t == 0) {
        switch (P->id) {
        case P_LFU: P->clock++; P->cnt[p] = 1; P->aux[p] = P->clock; break;
        case P_GDSF: P->val[p] = P->inflation + gdsf_value(e, p); break;
        case P_VLLM_LRU: vl_insert(e, p); break;
        case P_RADIX_LRU: radix_touch(P, p); break;
        case P_HITS_PER_TOKEN: P->cnt[p] = 1; hpt_set(e, p); break;
        case P_SESSION: sess_touch(e, p); break;
        default: break;
        }
    }
    if (P->hooks[0] || P->hooks[1]) py_hook(e, 1, p, t);
}

static void pol_on_evict_hook(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    if (P && (P->hooks[0] || P->hooks[1])) py_hook(e, 2, p, t);
}

/* A page enters a tier whose order the policy owns (K_OWN). */
static void pol_enter(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    if (t == 0) {
        switch (P->id) {
        case P_LRU: case P_FIFO: fifo_enter(e, p); return;
        case P_CLOCK: P->cnt[p] = 0; fifo_enter(e, p); return;
        case P_SIEVE: P->cnt[p] = 0; fifo_enter(e, p); return;
        case P_ARC: arc_enter(e, p); return;
        case P_S3FIFO: s3_enter(e, p); return;
        case P_VLLM_ARC: va_move(e, p, VT1); return;
        case P_LMCACHE_LRU: fifo_enter(e, p); return;
        default: break;
        }
    }
    if (pinned_(e, p)) return;
    switch (P->id) {
    case P_COSTAWARE: case P_REGRET: band_add(e, p, t); break;
    case P_SESSION: sess_attach(e, p); break;
    case P_BELADY_SIZE: bs_add(e, p, t); break;
    case P_H2O: case P_STREAMING: sd_add(e, p, t); break;
    default: break;
    }
}

/* A page leaves a policy-owned tier without being its victim (promotion out of a lower tier). */
static void pol_leave(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    if (pinned_(e, p)) return;  /* pinned pages are out of the structures already */
    switch (P->id) {
    case P_COSTAWARE: case P_REGRET: band_del(e, p); break;
    case P_SESSION: sess_detach(e, p); break;
    case P_BELADY_SIZE: bs_del(e, p, t); break;
    case P_H2O: case P_STREAMING: sd_del(e, p, t); break;
    default: break;
    }
}

static void pol_pin(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    switch (P->id) {
    case P_S3FIFO: if (t == 0 && P->where[p]) P->L[P->where[p] - 1].npin++; break;
    case P_COSTAWARE: case P_REGRET: band_del(e, p); break;
    case P_SESSION: sess_detach(e, p); break;
    case P_BELADY_SIZE: bs_del(e, p, t); break;
    case P_H2O: case P_STREAMING: sd_del(e, p, t); break;
    default: break;
    }
}

static void pol_unpin(Engine *e, int32_t p) {  /* step end; p is in tier 0 */
    Policy *P = e->pol;
    switch (P->id) {
    case P_S3FIFO: P->L[SMALL].npin = P->L[MAIN].npin = 0; break;
    case P_COSTAWARE: case P_REGRET: band_add(e, p, 0); break;
    case P_BELADY_SIZE: bs_add(e, p, 0); break;
    case P_H2O: case P_STREAMING: sd_add(e, p, 0); break;
    case P_SESSION: sess_attach(e, p); break;
    default: break;
    }
}

/* One tier-0 page unpinned while others stay pinned (a serving tier's view): the step-end
 * pol_unpin, except that S3-FIFO's pinned counts drop by this page only. */
static void pol_unpin_one(Engine *e, int32_t p) {
    Policy *P = e->pol;
    if (P->id == P_S3FIFO) { if (P->where[p]) P->L[P->where[p] - 1].npin--; }
    else pol_unpin(e, p);
}

/* Victim among the unpinned residents of tier t (tier 0, or a policy-owned lower tier). */
static int32_t pol_choose(Engine *e, int t) {
    Policy *P = e->pol;
    if (t == 0) {
        switch (P->id) {
        case P_LRU: case P_FIFO: return ls_first_unpinned(&P->L[0], P->next, e->pg, e->stamp);
        case P_CLOCK: return clock_choose(e);
        case P_SIEVE: return sieve_choose(e);
        case P_ARC: return arc_choose(e);
        case P_S3FIFO: return s3_choose(e);
        case P_VLLM_ARC: return va_choose(e);
        case P_LMCACHE_LRU: return ls_first_unpinned(&P->L[0], P->next, e->pg, e->stamp);
        case P_SESSION: return sess_choose(e);
        default: break;
        }
    }
    switch (P->id) {
    case P_COSTAWARE: case P_REGRET: return band_choose(e, t);
    case P_BELADY_SIZE: return bs_choose(e, t);
    case P_H2O: case P_STREAMING: return sd_choose(e, t);
    case P_PY: {
        Tier *T = &e->t[t];
        int64_t n = 0;
        for (int32_t q = T->order.head; q != NIL; q = e->onext[q])
            if (!pinned_(e, q)) P->cand_buf[n++] = q;
        PyObject *r = PyObject_CallFunction(P->chooser, "iL", t, (long long)n);
        if (!r) { e->err = E_INTERNAL; e->err_tier = -2; return NIL; }
        long long v = PyLong_AsLongLong(r);
        Py_DECREF(r);
        if (v == -1 && PyErr_Occurred()) { e->err = E_INTERNAL; e->err_tier = -2; return NIL; }
        return (int32_t)v;
    }
    default: return NIL;
    }
}

/* The policy's victim was chosen (by it or from outside): update its structures. */
static void pol_on_evict(Engine *e, int32_t p, int t) {
    Policy *P = e->pol;
    if (!P) return;
    int own = e->t[t].key == K_OWN;
    switch (P->id) {
    case P_LRU: case P_FIFO: if (t == 0) { ls_remove(&P->L[0], P->prev, P->next, p, 0); P->where[p] = 0; } break;
    case P_CLOCK: if (t == 0) clock_evict(e, p); break;
    case P_SIEVE: if (t == 0) sieve_evict(e, p); break;
    case P_ARC: if (t == 0) arc_evict(e, p); break;
    case P_S3FIFO: if (t == 0) s3_evict(e, p); break;
    case P_GDSF: if (t == 0) P->inflation = P->val[p]; break;
    case P_REGRET: P->aux[p] = e->s; if (own) band_del(e, p); break;
    case P_COSTAWARE: if (own) band_del(e, p); break;
    case P_BELADY_SIZE: if (own) bs_del(e, p, t); break;
    case P_H2O: case P_STREAMING: if (own) sd_del(e, p, t); break;
    case P_VLLM_ARC: if (t == 0) va_evict(e, p); break;
    case P_LMCACHE_LRU: if (t == 0) { ls_remove(&P->L[0], P->prev, P->next, p, 0); P->where[p] = 0; } break;
    case P_HITS_PER_TOKEN: if (t == 0) P->inflation = P->val[p]; break;
    case P_SESSION: if (own) sess_detach(e, p); break;
    default: break;
    }
}

/* Key of a page in an engine-owned heap ordered by the policy (K_POLICY). */
static uint64_t pol_key(Engine *e, int32_t p, int t, int64_t *b) {
    Policy *P = e->pol;
    (void)t;
    switch (P->id) {
    case P_LRU: return key_i64(e->pg[p].used);
    case P_MRU: return key_i64(-e->pg[p].used);  /* the most recent use is the smallest key */
    case P_LFU: *b = P->aux[p]; return key_i64(P->cnt[p]);
    case P_HEAVY: return key_i64(e->pg[p].freq * 10000 + e->pg[p].last_access);
    case P_PREDICTIVE: return key_i64(e->pg[p].freq * 100 + e->pg[p].last_access);
    case P_WINDOWED: return key_i64(P->cnt[p] * 1000000 + e->pg[p].last_access);
    case P_BELADY: return key_i64(-P->nextu[p]);
    case P_GDSF: return key_f64(P->val[p]);
    case P_VLLM_LRU: return key_i64(P->rank[p]);
    case P_RADIX_LRU: return radix_key(e, p);
    case P_HITS_PER_TOKEN: return key_f64(P->val[p]);
    default: return 0;
    }
}

/* The compiled prefetchers (baselines/sequential.py, markov.py, oracle_lookahead.py) and the call
 * into a Python prefetcher. Each fills e->pf_list with at most max_prefetch proposals (the engine
 * cuts the list there anyway, and proposing has no side effects). Included by module.c. */
#include "policy.h"

static int pf_reserve(Engine *e, int64_t n) {
    if (n <= e->pf_cap) return 0;
    e->pf_list = kv_grow(e->pf_list, n, 4);
    e->pf_cap = n;
    return e->pf_list ? 0 : -1;
}

/* ------------------------------------------------------------------ sequential ---- */
static int64_t seq_propose(Engine *e) {
    Prefetcher *F = e->pre;
    int64_t depth = F->ipar[0], maxp = e->max_prefetch, out = 0, ncur = 0;
    int64_t st = ++F->mstamp;
    if (F->cur_cap < e->n_spages) {
        F->cur = kv_grow(F->cur, e->n_spages, 4); F->nxt = kv_grow(F->nxt, e->n_spages, 4);
        F->cur_cap = e->n_spages;
        if (!F->cur || !F->nxt) { e->err = E_INTERNAL; return 0; }
    }
    for (int64_t i = 0; i < e->n_spages; i++) { F->mark[e->spages[i]] = st; F->cur[ncur++] = e->spages[i]; }
    for (int64_t d = 0; d < depth && out < maxp; d++) {
        int64_t n2 = 0;
        for (int64_t i = 0; i < ncur; i++) {
            int64_t q = F->succ[F->cur[i]];
            if (q >= 0) F->nxt[n2++] = (int32_t)q;
        }
        if (!n2) break;
        for (int64_t i = 0; i < n2 && out < maxp; i++) {
            int32_t q = F->nxt[i];
            if (e->pg[q].tier != 0 && F->mark[q] != st) { F->mark[q] = st; e->pf_list[out++] = q; }
        }
        int32_t *tmp = F->cur; F->cur = F->nxt; F->nxt = tmp;
        ncur = n2;
    }
    return out;
}

/* ---------------------------------------------------------------------- markov ---- */
/* Successor lists per page kept sorted by (count desc, first seen asc): an increment bubbles the
 * entry up past entries it now beats. */
static int markov_count(Engine *e, int32_t a, int32_t b) {
    Prefetcher *F = e->pre;
    int64_t key = (int64_t)a * e->n_pages + b;
    int64_t *ix = hm_find(&F->pair, key);
    int64_t i;
    if (!ix) {
        if (F->sn[a] == F->scap[a]) {
            int64_t c = F->scap[a] ? 2 * F->scap[a] : 4;
            F->sb[a] = kv_grow(F->sb[a], c, 4); F->sc[a] = kv_grow(F->sc[a], c, 8); F->ss[a] = kv_grow(F->ss[a], c, 8);
            if (!F->sb[a] || !F->sc[a] || !F->ss[a]) return -1;
            F->scap[a] = c;
        }
        i = F->sn[a]++;
        F->sb[a][i] = b; F->sc[a][i] = 1; F->ss[a][i] = i;
        if (hm_put(&F->pair, key, i) < 0) return -1;
    } else {
        i = *ix;
        F->sc[a][i]++;
    }
    int32_t *sb = F->sb[a]; int64_t *sc = F->sc[a], *ss = F->ss[a];
    while (i > 0 && (sc[i - 1] < sc[i] || (sc[i - 1] == sc[i] && ss[i - 1] > ss[i]))) {
        int32_t tb = sb[i]; sb[i] = sb[i - 1]; sb[i - 1] = tb;
        int64_t tc = sc[i]; sc[i] = sc[i - 1]; sc[i - 1] = tc;
        int64_t ts = ss[i]; ss[i] = ss[i - 1]; ss[i - 1] = ts;
        *hm_find(&F->pair, (int64_t)a * e->n_pages + sb[i]) = i;
        i--;
    }
    *hm_find(&F->pair, (int64_t)a * e->n_pages + sb[i]) = i;
    return 0;
}
static int64_t markov_propose(Engine *e) {
    Prefetcher *F = e->pre;
    int64_t k = F->ipar[1], minc = F->ipar[0], maxp = e->max_prefetch, out = 0;
    int64_t st = ++F->mstamp;
    int single = e->end - e->begin == 1;
    for (int64_t i = 0; i < e->n_spages; i++) F->mark[e->spages[i]] = st;
    for (int64_t i = 0; i < e->n_spages && out < maxp; i++) {
        int32_t a = e->spages[i];
        int64_t n = F->sn[a] < k ? F->sn[a] : k;
        for (int64_t j = 0; j < n && out < maxp; j++) {
            if (F->sc[a][j] < minc) continue;
            int32_t b = F->sb[a][j];
            if (single) { if (b != a) e->pf_list[out++] = b; continue; }
            if (F->mark[b] != st) { F->mark[b] = st; e->pf_list[out++] = b; }
        }
    }
    return out;
}

/* ------------------------------------------------------------ oracle_lookahead ---- */
static int64_t lookahead_propose(Engine *e) {
    Prefetcher *F = e->pre;
    int64_t depth = F->ipar[0], horizon = F->ipar[1], maxp = e->max_prefetch, out = 0;
    int64_t st = ++F->mstamp;
    for (int64_t i = 0; i < e->n_spages; i++) F->mark[e->spages[i]] = st;
    int64_t lo = e->ctx_pos + 1, hi = lo + horizon;
    if (hi > F->trace_n) hi = F->trace_n;
    for (int64_t i = lo; i < hi && out < depth && out < maxp; i++) {
        int32_t q = (int32_t)F->trace_page[i];
        if (e->pg[q].tier == 0 || F->mark[q] == st) continue;
        F->mark[q] = st;
        e->pf_list[out++] = q;
    }
    return out;
}

/* ---------------------------------------------------------------- dispatch ---- */
static void pre_on_access(Engine *e, int32_t p, int loc) {
    Prefetcher *F = e->pre;
    (void)loc;
    if (!F || F->id != F_MARKOV) return;
    if (F->prev >= 0 && markov_count(e, (int32_t)F->prev, p) < 0) e->err = E_INTERNAL;
    F->prev = p;
}

static int64_t pre_propose(Engine *e) {
    Prefetcher *F = e->pre;
    if (pf_reserve(e, e->max_prefetch > 0 ? e->max_prefetch : 1) < 0) { e->err = E_INTERNAL; return 0; }
    switch (F->id) {
    case F_SEQUENTIAL: return seq_propose(e);
    case F_MARKOV: return markov_propose(e);
    case F_LOOKAHEAD: return lookahead_propose(e);
    case F_PY: {
        PyObject *r = PyObject_CallNoArgs(F->propose);
        if (!r) { e->err = E_INTERNAL; e->err_tier = -2; return 0; }
        long long n = PyLong_AsLongLong(r);
        Py_DECREF(r);
        if (n == -1 && PyErr_Occurred()) { e->err = E_INTERNAL; e->err_tier = -2; return 0; }
        if (n > e->max_prefetch) n = e->max_prefetch;
        for (long long i = 0; i < n; i++) {
            int64_t v = F->py_out[i];
            e->pf_list[i] = (v < 0 || v >= e->n_pages) ? NIL : (int32_t)v;
        }
        return n;
    }
    default: return 0;
    }
}

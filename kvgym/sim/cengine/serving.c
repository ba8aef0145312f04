/* The compiled serving engine: the rules of kvgym/sim/serving/engine.py (its module docstring is the
 * specification) in C, function for function (s_lookup is _lookup, s_admit is _admit, ...), every
 * hook in the specification's order and every float operation in its association; built without
 * FMA contraction, so times are equal to the last bit. tests/test_serving_properties.py holds the
 * two together. Python side: kvgym/sim/serving/compiled.py. Included by module.c.
 *
 * Each tier's policy runs in a *view*: an Engine of one tier (this tier seen as tier 0, sizes in
 * blocks) with its own page records (the tier's ctx arrays) and Policy, so every compiled policy
 * of policy.c and policy_serving.c runs here unchanged. A block that is not a candidate (tier 0: a
 * running request's pin; lower tiers: a lookup pin; any tier: the store batch in progress) is
 * "pinned" in its view (pin == stamp == 1), as the decode engine pins a step's pages: list-ordered
 * policies skip it, keyed ones take it out of their heap. A Python policy gets the same hooks
 * through callbacks (and its candidates, in the tier's insertion order, for ``scores``).
 *
 * What stays in Python (called, never re-derived): the roofline (BatchCompute.iteration_us, once
 * per iteration), link times (transfer_us, tabulated per batch size before the run), the
 * recompute time of a block (cost_aware_tiered), and the metrics' summaries. */
#include <stdarg.h>
#include "policy.h"

enum { RS_WAITING = 0, RS_PREFILL, RS_DECODE, RS_DONE };
enum { OV_ASYNC = 0, OV_LAYERWISE, OV_SYNC };
enum { AD_ALWAYS = 0, AD_THRESHOLD, AD_SKETCH, AD_PY };
/* Python hooks of a tier's policy (None where the policy has none). */
enum { H_ACCESS = 0, H_INSERT, H_EVICT, H_CHOOSE, H_LOAD, H_OFFER, H_MISS, H_FINISHED, H_COUNT };
/* Python admission hooks. */
enum { HA_REFERENCE = 0, HA_OFFER, HA_ADMIT, HA_COUNT };
enum { SE_NONE = 0, SE_PY, SE_SIM };

typedef struct {
    Engine v;              /* the tier as its policy sees it */
    Policy pol;
    int py;                /* a Python policy: hooks below */
    PyObject *hook[H_COUNT];
    int64_t cap, used, peak;
    int64_t nblk;          /* residents that are not candidates */
    uint8_t *prot;         /* per block: protected by the store batch in progress */
    uint8_t *flags;        /* per request sequence slot: RQ_* */
    int64_t *nobs;         /* per request: blocks observed (reported to request hooks) */
} STier;

typedef struct {
    int64_t requests, accesses, hits, prompt_blocks, prompt_tokens, output_tokens, output_blocks;
    int64_t broken, computed, saved, iterations;
    int64_t prefix_hits[KV_MAX_TIERS], prefix_tokens[KV_MAX_TIERS], loads[KV_MAX_TIERS], stores[KV_MAX_TIERS];
    int64_t skipped[KV_MAX_TIERS], failed[KV_MAX_TIERS], evictions[KV_MAX_TIERS], drops[KV_MAX_TIERS];
    int64_t lb_load[KV_MAX_TIERS], lb_store[KV_MAX_TIERS];
    double compute_us;
} SCounters;

typedef struct {
    int kind;
    /* threshold: vLLM's bounded tracker, oldest first */
    int64_t thr, max_keys, n_keys;
    int32_t *kprev, *knext, khead, ktail;
    int64_t *count;
    uint8_t *tracked;
    /* tinylfu / presence_lfu: Dynamo's count-min sketch */
    uint64_t *table;
    int64_t words, samples, sample_size, min_count;
    int strict;
    PyObject *hook[HA_COUNT];
} SAdmission;

typedef struct {
    /* ---- the trace ---- */
    int64_t nr, nb, B;
    const double *arrival;          /* zeros without timing */
    const int64_t *P, *O, *off, *blk, *ooff, *oblk, *parent;
    int64_t *soff;                  /* per request: first sequence slot (its chain, then output blocks) */
    /* ---- the config ---- */
    int T, write_back, gpu_first, overlap, timing, pin, gpc, cpt, sob;
    int64_t max_running, budget, layers, block_bytes, regret_horizon;
    const double *ltab;             /* ltab[(s * 2 + busy) * (M + 1) + m]: transfer_us over link s */
    int64_t M;
    const double *load1;            /* per tier: one block over its link (refetch) */
    const double *recompute;        /* per block: an iteration recomputing it alone (refetch) */
    PyObject *compute;              /* BatchCompute.iteration_us */
    STier tier[KV_MAX_TIERS];
    SAdmission adm;
    /* ---- state ---- */
    uint8_t *in_tier;               /* [t * nb + b] (Python reads it) */
    int64_t *kids;                  /* [t * nb + b]: resident children (Python reads it) */
    uint8_t *lowpin;                /* [t * nb + b] */
    int64_t *pin0;
    int64_t anon, n_pinned0, reserved;
    int64_t *focus;                 /* [request, chain position, step] (Python reads it) */
    double link_free[KV_MAX_TIERS];
    int8_t *state;
    int64_t *prefix, *pos, *gen, *loaded, *anon_of, *growth_left, *out_done, *pend_n;
    double *admit_us, *first_us, *finish_us, *landed;
    double *span_lo, *span_hi;      /* [r * T + s]: earliest start / latest end of r's loads on link s */
    uint8_t *has_span;
    int32_t *pend;                  /* per request, from soff: the pending store batch (slots) */
    int64_t *running, n_running;
    /* ---- scratch ---- */
    int8_t *src;                    /* lookup: source tier per chain position */
    int32_t *batch_r; int64_t *batch_take, n_batch;
    int32_t *first_chunk; int64_t n_first;
    int32_t *offer_buf[KV_MAX_TIERS + 1];  /* store batches, one per tier (the cascade) */
    uint8_t *ok_buf[KV_MAX_TIERS + 1];
    int64_t *arr_b, *arr_p, *cands; /* hook arguments (Python reads them) */
    uint8_t *arr_f, *adm_ok;
    SCounters m;
    int err;
    char msg[256];
} SEngine;

/* ------------------------------------------------------------------------- helpers ---- */
static inline int64_t s_step(const SEngine *S) { return S->focus[2]; }
static inline int64_t s_nchain(const SEngine *S, int64_t r) { return S->off[r + 1] - S->off[r]; }
static inline int64_t s_full(const SEngine *S, int64_t r) { return S->P[r] / S->B; }
/* Cacheable blocks of r's chain: the partial tail is anonymous unless cache_partial_tail. */
static inline int64_t s_cacheable(const SEngine *S, int64_t r) {
    int64_t n = s_nchain(S, r);
    return (S->P[r] % S->B == 0 || S->cpt) ? n : n - 1;
}
/* Sequence slot i of r: its chain (0 .. n-1), then its output blocks. */
static inline int64_t s_slot_block(const SEngine *S, int64_t r, int64_t i) {
    int64_t n = s_nchain(S, r);
    return i < n ? S->blk[S->off[r] + i] : S->oblk[S->ooff[r] + i - n];
}
static inline int64_t s_slot_pos(const SEngine *S, int64_t r, int64_t i) {
    int64_t n = s_nchain(S, r);
    return i < n ? i : s_full(S, r) + i - n;
}
static inline uint8_t *s_flag(SEngine *S, int t, int64_t r, int64_t i) { return &S->tier[t].flags[S->soff[r] + i]; }
static inline int s_in(const SEngine *S, int t, int64_t b) { return S->in_tier[(int64_t)t * S->nb + b]; }
static inline void s_focus(SEngine *S, int64_t r, int64_t pos) { S->focus[0] = r; S->focus[1] = pos; }
static inline Engine *s_view(SEngine *S, int t) {
    Engine *v = &S->tier[t].v;
    v->s = v->ctx_pos = S->focus[2];
    return v;
}
static void s_fail(SEngine *S, const char *msg) {
    if (S->err) return;
    S->err = SE_SIM;
    snprintf(S->msg, sizeof S->msg, "%s", msg);
}
static int s_pycall(SEngine *S, PyObject *fn, const char *fmt, ...) {
    if (S->err) return -1;
    va_list ap;
    va_start(ap, fmt);
    PyObject *args = Py_VaBuildValue(fmt, ap);
    va_end(ap);
    if (!args) { S->err = SE_PY; return -1; }
    PyObject *r = PyObject_CallObject(fn, args);
    Py_DECREF(args);
    if (!r) { S->err = SE_PY; return -1; }
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------- the views: candidates, keys ---- */
/* Cursors of list-ordered policies assume that blocks before them stay pinned: forget them. */
static void sv_cursors(Engine *v) {
    for (int i = 0; i < 4; i++) v->pol->L[i].cstamp = -1;
    v->t[0].order.cstamp = -1;
}
/* A resident block of view v stops being a candidate. */
static void sv_detach(Engine *v, int32_t b) {
    int key = v->t[0].key;
    if (key == K_OWN) pol_pin(v, b, 0);
    else if (key == K_POLICY && v->hpos[b] != NIL) ih_remove(&v->t[0].heap, v->hpos, b);
}
/* A resident block of view v becomes a candidate. */
static void sv_attach(Engine *v, int32_t b) {
    int key = v->t[0].key;
    if (key == K_OWN) { pol_unpin_one(v, b); sv_cursors(v); }
    else if (key == K_POLICY) tier_heap_push(v, b, 0);
}
/* A candidate's key may have changed (one of its hooks ran): put it back in order. */
static void sv_rekey(Engine *v, int32_t b) {
    int key = v->t[0].key;
    if (key == K_POLICY) {
        if (v->hpos[b] != NIL) { ih_remove(&v->t[0].heap, v->hpos, b); tier_heap_push(v, b, 0); }
    } else if (key == K_OWN) {
        switch (v->pol->id) {
        case P_COSTAWARE: case P_REGRET: case P_H2O: case P_STREAMING: pol_leave(v, b, 0); pol_enter(v, b, 0); break;
        default: break;  /* lists and session_aware keep their order in their own hooks */
        }
    }
}
static inline int s_candidate(const SEngine *S, int t, int64_t b) {
    return s_in(S, t, b) && S->tier[t].v.pg[b].pin != 1;
}
static void s_rekey(SEngine *S, int t, int64_t b) {
    if (!S->tier[t].py && s_candidate(S, t, b)) sv_rekey(&S->tier[t].v, (int32_t)b);
}
/* Whether b is a candidate of tier t changed: tier 0 pins, lookup pins, the store batch. */
static void s_reblock(SEngine *S, int t, int64_t b) {
    STier *X = &S->tier[t];
    int want = (t == 0 ? S->pin0[b] > 0 : S->lowpin[(int64_t)t * S->nb + b]) || X->prot[b];
    PageState *g = &X->v.pg[b];
    if (want == (g->pin == 1)) return;
    g->pin = want;
    if (!s_in(S, t, b)) return;
    X->nblk += want ? 1 : -1;
    if (X->py) return;
    if (want) sv_detach(&X->v, (int32_t)b);
    else sv_attach(&X->v, (int32_t)b);
}

/* Refetch of block p from view v's tier (ServingContext.refetch_us): one block over the link of
 * the fastest tier below holding a copy, else the iteration that recomputes just p. */
static double sv_refetch(const Engine *v, int32_t p) {
    const SEngine *S = v->host;
    for (int u = v->host_tier + 1; u < S->T; u++)
        if (s_in(S, u, p)) return S->load1[u];
    return S->recompute[p];
}

/* ------------------------------------------------------------------- admission ---- */
/* Dynamo's sketch, with observe.c's splitmix64 (baselines/admission.py's hash). */
static void sk_increment(SAdmission *A, uint64_t key) {
    int added = 0;
    for (uint64_t i = 0; i < 4; i++) {
        uint64_t h = splitmix64(4 * key + i), w = h % (uint64_t)A->words, off = (h & 15) * 4;
        if (((A->table[w] >> off) & 0xF) != 0xF) { A->table[w] += 1ULL << off; added = 1; }
    }
    if (!added) return;
    if (++A->samples >= A->sample_size) {
        int64_t odd = 0;
        for (int64_t i = 0; i < A->words; i++) {
            odd += __builtin_popcountll(A->table[i] & 0x1111111111111111ULL);
            A->table[i] = (A->table[i] >> 1) & 0x7777777777777777ULL;
        }
        int64_t s = (A->samples >> 1) - (odd >> 2);
        A->samples = s > 0 ? s : 0;
    }
}
static int64_t sk_estimate(const SAdmission *A, uint64_t key) {
    int64_t best = 16;
    for (uint64_t i = 0; i < 4; i++) {
        uint64_t h = splitmix64(4 * key + i), w = h % (uint64_t)A->words, off = (h & 15) * 4;
        int64_t c = (int64_t)((A->table[w] >> off) & 0xF);
        if (c < best) best = c;
    }
    return best;
}
static void th_unlink(SAdmission *A, int32_t k) {
    int32_t a = A->kprev[k], b = A->knext[k];
    if (a != NIL) A->knext[a] = b; else A->khead = b;
    if (b != NIL) A->kprev[b] = a; else A->ktail = a;
    A->kprev[k] = A->knext[k] = NIL;
}
static void th_append(SAdmission *A, int32_t k) {
    A->kprev[k] = A->ktail; A->knext[k] = NIL;
    if (A->ktail != NIL) A->knext[A->ktail] = k; else A->khead = k;
    A->ktail = k;
}
static void adm_reference(SEngine *S, int64_t b) {
    SAdmission *A = &S->adm;
    if (A->kind == AD_SKETCH) sk_increment(A, (uint64_t)b);
    else if (A->kind == AD_PY && A->hook[HA_REFERENCE] != Py_None) s_pycall(S, A->hook[HA_REFERENCE], "(L)", (long long)b);
}
/* Every offer counts each offered block (present or not); n blocks in S->arr_b. */
static void adm_offer(SEngine *S, int64_t n) {
    SAdmission *A = &S->adm;
    const int64_t *keys = S->arr_b;
    if (A->kind == AD_PY) {
        if (A->hook[HA_OFFER] != Py_None) s_pycall(S, A->hook[HA_OFFER], "(L)", (long long)n);
        return;
    }
    if (A->kind != AD_THRESHOLD || A->thr < 2) return;
    int64_t prot = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t k = (int32_t)keys[i];
        if (!A->tracked[k]) continue;
        th_unlink(A, k); th_append(A, k);
        A->count[k]++;
        prot++;
    }
    int64_t unprot = A->n_keys - prot;
    for (int64_t i = 0; i < n; i++) {
        int32_t k = (int32_t)keys[i];
        if (A->tracked[k]) continue;
        if (A->n_keys >= A->max_keys) {
            if (unprot == 0) continue;
            int32_t old = A->khead;  /* the oldest key, unprotected (the offer's keys moved to the end) */
            th_unlink(A, old);
            A->tracked[old] = 0; A->count[old] = 0; A->n_keys--;
            unprot--;
        }
        th_append(A, k);
        A->tracked[k] = 1; A->count[k] = 1; A->n_keys++;
    }
}
/* Admit the n candidates in S->arr_b: S->adm_ok[i]. */
static void adm_admit(SEngine *S, int64_t n) {
    SAdmission *A = &S->adm;
    for (int64_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)S->arr_b[i];
        switch (A->kind) {
        case AD_THRESHOLD: S->adm_ok[i] = A->thr < 2 || A->count[k] >= A->thr; break;
        case AD_SKETCH: { int64_t est = sk_estimate(A, k); S->adm_ok[i] = A->strict ? est > A->min_count : est >= A->min_count; break; }
        case AD_PY: break;
        default: S->adm_ok[i] = 1; break;
        }
    }
    if (A->kind == AD_PY) s_pycall(S, A->hook[HA_ADMIT], "(L)", (long long)n);
}

/* ------------------------------------------------------------------ residency ---- */
static void s_peak(SEngine *S, int t) {
    STier *X = &S->tier[t];
    int64_t held = X->used + (t == 0 ? S->anon : 0);
    if (held > X->peak) X->peak = held;
}
static inline int64_t s_free(const SEngine *S, int t) {
    return S->tier[t].cap - S->tier[t].used - (t == 0 ? S->anon : 0);
}
static void s_kids(SEngine *S, int t, int64_t b, int d) {
    int64_t p = S->parent[b];
    if (p < 0) return;
    S->kids[(int64_t)t * S->nb + p] += d;
    if (S->tier[t].pol.id == P_RADIX_LRU) s_rekey(S, t, p);  /* its order reads kids: leaves first */
}
static void s_add(SEngine *S, int t, int64_t b) {
    STier *X = &S->tier[t];
    Engine *v = &X->v;
    PageState *g = &v->pg[b];
    S->in_tier[(int64_t)t * S->nb + b] = 1;
    X->used++;
    g->tier = 0;
    g->ins = v->ins_ctr++;
    v->t[0].n++;
    ls_push_back(&v->t[0].order, v->oprev, v->onext, (int32_t)b, 0);
    if (g->pin == 1) X->nblk++;
    s_kids(S, t, b, +1);
    s_peak(S, t);
}
static void s_insert(SEngine *S, int t, int64_t b) {
    STier *X = &S->tier[t];
    s_add(S, t, b);
    X->v.pg[b].insert_step = s_step(S);
    if (X->py) {
        if (X->hook[H_INSERT] != Py_None) s_pycall(S, X->hook[H_INSERT], "(LiL)", (long long)b, 0, (long long)s_step(S));
        return;
    }
    Engine *v = s_view(S, t);
    pol_on_insert(v, (int32_t)b, 0);
    tier_enter(v, (int32_t)b, 0);
}
/* b leaves tier t: an eviction (counted, evict_step set) or a write-back load; then on_evict. */
static void s_remove(SEngine *S, int t, int64_t b, int evicted) {
    STier *X = &S->tier[t];
    Engine *v = X->py ? &X->v : s_view(S, t);
    PageState *g = &v->pg[b];
    if (!X->py) {  /* the policy's structures first, as the decode engine's evict() */
        if (v->t[0].key == K_POLICY && v->hpos[b] != NIL) ih_remove(&v->t[0].heap, v->hpos, (int32_t)b);
        pol_on_evict(v, (int32_t)b, 0);
    }
    S->in_tier[(int64_t)t * S->nb + b] = 0;
    X->used--;
    g->tier = -1;
    v->t[0].n--;
    ls_remove(&v->t[0].order, v->oprev, v->onext, (int32_t)b, 0);
    if (g->pin == 1) X->nblk--;
    s_kids(S, t, b, -1);
    if (evicted) {
        S->m.evictions[t]++;
        g->evict_step = s_step(S);
    }
    if (X->py && X->hook[H_EVICT] != Py_None) s_pycall(S, X->hook[H_EVICT], "(LiL)", (long long)b, 0, (long long)s_step(S));
}
static void s_pin(SEngine *S, int64_t b) {
    if (S->pin0[b]++ == 0) { S->n_pinned0++; s_reblock(S, 0, b); }
}
static void s_unpin(SEngine *S, int64_t b) {
    if (--S->pin0[b] == 0) { S->n_pinned0--; s_reblock(S, 0, b); }
}

/* ------------------------------------------------------------------------ hooks ---- */
static void s_access(SEngine *S, int t, int64_t b) {
    STier *X = &S->tier[t];
    int loc = s_in(S, t, b) ? 0 : -1;
    if (t == 0) { adm_reference(S, b); if (S->err) return; }
    PageState *g = &X->v.pg[b];
    if (X->py) {
        if (X->hook[H_ACCESS] != Py_None && s_pycall(S, X->hook[H_ACCESS], "(LiL)", (long long)b, loc, (long long)s_step(S)) < 0) return;
    } else {
        Engine *v = s_view(S, t);
        g->used = ++v->use_ctr;
        pol_on_access(v, (int32_t)b, loc);
    }
    int64_t step = s_step(S);
    if (g->evict_step >= 0 && step - g->evict_step <= S->regret_horizon && loc != 0) g->regret++;
    g->last_access = step;
    g->freq++;
    s_rekey(S, t, b);
}
/* Report the n blocks in S->arr_b / arr_p to tier t's request hook ``h`` (H_LOAD, H_OFFER). */
static void s_request_hook(SEngine *S, int t, int64_t r, int h, int64_t n) {
    STier *X = &S->tier[t];
    if (X->py) {
        if (X->hook[h] != Py_None) s_pycall(S, X->hook[h], "(LLL)", (long long)r, (long long)n, (long long)s_step(S));
        return;
    }
    Engine *v = s_view(S, t);
    pol_request_access(v, h == H_LOAD, r, S->arr_b, S->arr_p, n);
    for (int64_t i = 0; i < n; i++) s_rekey(S, t, S->arr_b[i]);
}
/* _observe: the slots not yet reported for r in tier t go to hook h, chain order. */
static void s_observe(SEngine *S, int t, int64_t r, const int32_t *slots, int64_t n, int h) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *f = s_flag(S, t, r, slots[i]);
        if (*f & RQ_OBSERVED) continue;
        *f |= RQ_OBSERVED;
        S->tier[t].nobs[r]++;
        S->arr_b[k] = s_slot_block(S, r, slots[i]);
        S->arr_p[k] = s_slot_pos(S, r, slots[i]);
        k++;
    }
    if (k) s_request_hook(S, t, r, h, k);
}

/* ------------------------------------------------------------------ eviction ---- */
static int32_t s_choose(SEngine *S, int t) {
    STier *X = &S->tier[t];
    if (X->py) {
        int64_t n = 0;
        for (int32_t q = X->v.t[0].order.head; q != NIL; q = X->v.onext[q])
            if (X->v.pg[q].pin != 1) S->cands[n++] = q;
        PyObject *r = PyObject_CallFunction(X->hook[H_CHOOSE], "L", (long long)n);
        if (!r) { S->err = SE_PY; return NIL; }
        long long v = PyLong_AsLongLong(r);
        Py_DECREF(r);
        if (v == -1 && PyErr_Occurred()) { S->err = SE_PY; return NIL; }
        return (int32_t)v;
    }
    Engine *v = s_view(S, t);
    if (v->t[0].key == K_OWN) return pol_choose(v, 0);
    return v->t[0].heap.n ? v->t[0].heap.p[0] : NIL;
}
static void s_evict(SEngine *S, int t, int64_t v);
static int s_make_room(SEngine *S, int t, int64_t need) {
    STier *X = &S->tier[t];
    while (s_free(S, t) < need) {
        if (X->v.t[0].n - X->nblk <= 0) return 0;
        int32_t v = s_choose(S, t);
        if (S->err) return 0;
        if (v < 0 || v >= S->nb || !s_candidate(S, t, v)) {
            char m[160];
            snprintf(m, sizeof m, "internal: tier %d's policy chose block %d, not an evictable resident", t, v);
            s_fail(S, m);
            return 0;
        }
        s_evict(S, t, v);
        if (S->err) return 0;
    }
    return 1;
}
static void s_room0(SEngine *S) {
    if (s_make_room(S, 0, 1) || S->err) return;
    char m[200];
    snprintf(m, sizeof m, "internal: tier 0 has no evictable block at step %lld (the admission reservation "
             "should prevent this)", (long long)s_step(S));
    s_fail(S, m);
}
static void s_evict(SEngine *S, int t, int64_t v) {
    s_remove(S, t, v, 1);
    if (S->err) return;
    for (int u = t + 1; u < S->T; u++)
        if (s_in(S, u, v)) return;  /* a copy remains below: not a drop */
    if (S->write_back && t + 1 < S->T) {
        int ok = s_make_room(S, t + 1, 1);
        if (S->err) return;
        if (ok) {
            int64_t req = S->focus[0], pos = S->focus[1];
            s_focus(S, req, -1);  /* a demotion has no chain position */
            s_insert(S, t + 1, v);
            s_focus(S, req, pos);
            S->m.stores[t + 1]++;
            S->m.lb_store[t + 1] += S->block_bytes;
            return;
        }
    }
    S->m.drops[t]++;
}

/* ---------------------------------------------------------------------- stores ---- */
/* _store: offer the n slots of r in ``slots`` to tier t; 0 when the admitted blocks did not fit. */
static int s_store(SEngine *S, int t, int64_t r, const int32_t *slots, int64_t n) {
    if (t >= S->T || n == 0) return 1;
    STier *X = &S->tier[t];
    int adm = t == 1;
    if (adm) {
        for (int64_t i = 0; i < n; i++) S->arr_b[i] = s_slot_block(S, r, slots[i]);
        adm_offer(S, n);
        if (S->err) return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        S->focus[2]++;
        s_focus(S, r, s_slot_pos(S, r, slots[i]));
        s_access(S, t, s_slot_block(S, r, slots[i]));
        if (S->err) return 0;
    }
    uint8_t *ok = S->ok_buf[t];  /* 1: present; 2: admitted */
    int64_t nc = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t b = s_slot_block(S, r, slots[i]);
        ok[i] = s_in(S, t, b) ? 1 : 0;
        if (!ok[i]) S->arr_b[nc++] = b;
    }
    if (nc) {
        if (adm) { adm_admit(S, nc); if (S->err) return 0; }
        else memset(S->adm_ok, 1, (size_t)nc);
    }
    int64_t na = 0;
    for (int64_t i = 0, c = 0; i < n; i++)
        if (!ok[i]) { if (S->adm_ok[c++]) { ok[i] = 2; na++; } }
    S->m.skipped[t] += nc - na;
    /* store misses: admitted, first time for r */
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *f = s_flag(S, t, r, slots[i]);
        if (ok[i] != 2 || (*f & RQ_MISS_SEEN)) continue;
        *f |= RQ_MISS_SEEN;
        S->arr_b[k] = s_slot_block(S, r, slots[i]);
        S->arr_p[k] = s_slot_pos(S, r, slots[i]);
        k++;
    }
    if (k) {
        if (X->py) { if (X->hook[H_MISS] != Py_None) s_pycall(S, X->hook[H_MISS], "(LLL)", (long long)r, (long long)k, (long long)s_step(S)); }
        else pol_store_miss(s_view(S, t), S->arr_b, k);
        if (S->err) return 0;
    }
    /* request access: present or admitted */
    int32_t *stored = S->offer_buf[t + 1];
    int64_t ns = 0;
    for (int64_t i = 0; i < n; i++) if (ok[i]) stored[ns++] = slots[i];
    s_observe(S, t, r, stored, ns, H_OFFER);
    if (S->err) return 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *f = s_flag(S, t, r, slots[i]);
        if (ok[i] == 1 && !(*f & RQ_INSERTED)) *f |= RQ_REUSED;
    }
    ns = 0;
    for (int64_t i = 0; i < n; i++) if (ok[i] == 2) stored[ns++] = slots[i];
    if (!ns) return 1;
    for (int64_t i = 0; i < n; i++) {  /* the offer is protected from its own evictions */
        int64_t b = s_slot_block(S, r, slots[i]);
        X->prot[b] = 1;
        s_reblock(S, t, b);
    }
    int fits = s_free(S, t) + (X->v.t[0].n - X->nblk) >= ns;
    if (fits) {
        s_focus(S, r, -1);
        s_make_room(S, t, ns);
    } else {
        S->m.failed[t]++;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t b = s_slot_block(S, r, slots[i]);
        X->prot[b] = 0;
        s_reblock(S, t, b);
    }
    if (S->err || !fits) return 0;
    for (int64_t i = 0; i < ns; i++) {
        s_focus(S, r, s_slot_pos(S, r, stored[i]));
        s_insert(S, t, s_slot_block(S, r, stored[i]));
        if (S->err) return 0;
        *s_flag(S, t, r, stored[i]) |= RQ_INSERTED;
        S->m.stores[t]++;
        S->m.lb_store[t] += S->block_bytes;
    }
    s_store(S, t + 1, r, stored, ns);
    return !S->err;
}
/* _offer: r's pending batch plus the ``n`` new slots, as one batch to tier 1. */
static void s_offer(SEngine *S, int64_t r, const int32_t *slots, int64_t n) {
    if (S->write_back || S->T < 2) return;
    int32_t *pend = S->pend + S->soff[r];
    int64_t np = S->pend_n[r];
    int32_t *batch = S->offer_buf[1];
    memcpy(batch, pend, (size_t)np * 4);
    memcpy(batch + np, slots, (size_t)n * 4);
    int64_t nb = np + n;
    if (!nb) return;
    int ok = s_store(S, 1, r, batch, nb);
    if (S->err) return;
    if (ok) S->pend_n[r] = 0;
    else { memcpy(pend, batch, (size_t)nb * 4); S->pend_n[r] = nb; }
}

/* -------------------------------------------------------------------- admission ---- */
static int64_t s_lookup(SEngine *S, int64_t r) {
    int64_t P = S->P[r], B = S->B;
    int64_t u0 = P > 0 ? (P - 1) / B : 0, full = P / B;
    const int64_t *chain = S->blk + S->off[r];
    int low = S->gpc ? 0 : 1;
    int64_t j = 0;
    if (S->gpu_first && low == 0) {
        while (j < u0 && s_in(S, 0, chain[j])) S->src[j++] = 0;
        low = 1;
    }
    for (; j < full; j++) {
        int lo = j < u0 ? low : (low > 1 ? low : 1);
        int u = lo;
        while (u < S->T && !s_in(S, u, chain[j])) u++;
        if (u >= S->T) break;
        S->src[j] = (int8_t)u;
    }
    return j;
}
static int64_t s_growth(const SEngine *S, int64_t r) {
    int64_t P = S->P[r], O = S->O[r], B = S->B;
    return O > 0 ? (P + O - 1 + B - 1) / B - (P + B - 1) / B : 0;
}
static int s_fits(SEngine *S, int64_t r) {
    if (!S->pin || S->tier[0].cap == INT64_MAX) return 1;
    const int64_t *chain = S->blk + S->off[r];
    int64_t nc = s_cacheable(S, r), mine = 0, fresh = 0;
    for (int64_t j = 0; j < nc; j++) {
        if (!s_in(S, 0, chain[j])) fresh++;
        else if (S->pin0[chain[j]] == 0) mine++;
    }
    fresh += nc < s_nchain(S, r);
    return S->n_pinned0 + S->anon + S->reserved + mine + fresh + s_growth(S, r) <= S->tier[0].cap;
}
static void s_admit(SEngine *S, int64_t r, double now) {
    int T = S->T;
    const int64_t *chain = S->blk + S->off[r];
    int64_t n = s_nchain(S, r), nc = s_cacheable(S, r), P = S->P[r], B = S->B;
    int64_t k = s_lookup(S, r);
    S->prefix[r] = k;
    S->pos[r] = P > 0 ? (k * B < P - 1 ? k * B : P - 1) : 0;
    S->admit_us[r] = now;
    if (S->pin) {
        for (int64_t j = 0; j < nc; j++) if (s_in(S, 0, chain[j])) s_pin(S, chain[j]);
        int64_t g = s_growth(S, r);
        S->growth_left[r] = g;
        S->reserved += g;
    }
    for (int64_t j = 0; j < k; j++)
        if (S->src[j] > 0) {
            S->lowpin[(int64_t)S->src[j] * S->nb + chain[j]] = 1;
            s_reblock(S, S->src[j], chain[j]);
        }
    int64_t batch[KV_MAX_TIERS] = {0};
    for (int64_t j = 0; j < n; j++) {
        int64_t b = chain[j];
        if (j >= nc) {  /* the anonymous tail: a slot of r's own (none without pinning) */
            if (S->pin) {
                s_room0(S);
                if (S->err) return;
                S->anon++; S->anon_of[r]++;
                s_peak(S, 0);
            }
            continue;
        }
        S->focus[2]++;
        s_focus(S, r, j);
        int in0 = s_in(S, 0, b);
        S->m.accesses++;
        S->m.hits += in0;
        if (j >= k) {
            for (int u = 0; u < T; u++) if (s_in(S, u, b)) { S->m.broken++; break; }
        }
        s_access(S, 0, b);
        if (S->err) return;
        if (j < k && S->src[j] > 0) {
            int s = S->src[j];
            s_access(S, s, b);
            if (S->err) return;
            S->lowpin[(int64_t)s * S->nb + b] = 0;
            s_reblock(S, s, b);
            if (S->write_back) { s_remove(S, s, b, 0); if (S->err) return; }
            if (!in0) {  /* else the load lands in the copy tier 0 already holds (and pins) */
                s_room0(S);
                if (S->err) return;
                s_insert(S, 0, b);
                if (S->err) return;
                if (S->pin) s_pin(S, b);
            }
            batch[s]++;
            S->m.loads[s]++;
            S->m.lb_load[s] += S->block_bytes;
        } else if (!in0) {
            s_room0(S);
            if (S->err) return;
            s_insert(S, 0, b);
            if (S->err) return;
            if (S->pin) s_pin(S, b);
        }
        uint8_t *f = s_flag(S, 0, r, j);
        if (in0 && !(*f & RQ_INSERTED)) *f |= RQ_REUSED;
        else if (!in0) *f |= RQ_INSERTED;
    }
    if (k) {
        int32_t *idx = S->offer_buf[0];
        for (int t = 0; t < T; t++) {
            int64_t m = 0;
            for (int64_t j = 0; j < k; j++) if (S->src[j] == t) idx[m++] = (int32_t)j;
            if (!m) continue;
            s_observe(S, t, r, idx, m, H_LOAD);
            if (S->err) return;
            if (t > 0)
                for (int64_t i = 0; i < m; i++) {
                    uint8_t *f = s_flag(S, t, r, idx[i]);
                    if (!(*f & RQ_INSERTED)) *f |= RQ_REUSED;
                }
        }
    }
    for (int64_t j = 0; j < nc; j++) {  /* tier 0 observes every block r holds */
        uint8_t *f = s_flag(S, 0, r, j);
        if (!(*f & RQ_OBSERVED)) { *f |= RQ_OBSERVED; S->tier[0].nobs[r]++; }
    }
    int64_t loaded = 0;
    double landed = now;
    for (int s = 1; s < T; s++) {
        if (!batch[s]) continue;
        loaded += batch[s];
        int busy = S->link_free[s] > now;
        double start = now >= S->link_free[s] ? now : S->link_free[s];
        double dur = S->timing ? S->ltab[((int64_t)s * 2 + busy) * (S->M + 1) + batch[s]] : 0.0;
        double end = start + dur;
        S->link_free[s] = end;
        S->span_lo[r * T + s] = start;
        S->span_hi[r * T + s] = end;
        S->has_span[r * T + s] = 1;
        if (end > landed) landed = end;
    }
    S->loaded[r] = loaded;
    S->landed[r] = landed;
    for (int64_t j = 0; j < k; j++) { S->m.prefix_hits[S->src[j]]++; S->m.prefix_tokens[S->src[j]] += B; }
    S->m.prompt_blocks += n;
    S->m.prompt_tokens += P;
    S->m.saved += S->pos[r];
    S->m.computed += P - S->pos[r];
    S->state[r] = RS_PREFILL;
}

/* ------------------------------------------------------------------------ decode ---- */
static void s_grow(SEngine *S, int64_t r) {
    int64_t p = S->P[r] + S->gen[r] - 1;
    if (p % S->B == 0 && S->pin) {
        s_room0(S);
        if (S->err) return;
        S->anon++; S->anon_of[r]++;
        S->reserved--; S->growth_left[r]--;
        s_peak(S, 0);
    }
}
/* The block at chain position j (>= F) of r just filled up; returns the slot to offer, or -1. */
static int64_t s_complete_block(SEngine *S, int64_t r, int64_t j) {
    int64_t nout = S->ooff[r + 1] - S->ooff[r];
    if (!nout) return -1;
    int64_t slot = s_nchain(S, r) + j - s_full(S, r);
    int64_t b = S->oblk[S->ooff[r] + j - s_full(S, r)];
    S->m.output_blocks++;
    if (S->anon_of[r] > 0) { S->anon--; S->anon_of[r]--; }
    S->focus[2]++;
    s_focus(S, r, j);
    int in0 = s_in(S, 0, b);
    s_access(S, 0, b);
    if (S->err) return -1;
    uint8_t *f = s_flag(S, 0, r, slot);
    if (!(*f & RQ_OBSERVED)) { *f |= RQ_OBSERVED; S->tier[0].nobs[r]++; }
    if (!in0) {
        s_room0(S);
        if (S->err) return -1;
        s_insert(S, 0, b);
        if (S->err) return -1;
        *f |= RQ_INSERTED;
    } else if (!(*f & RQ_INSERTED)) *f |= RQ_REUSED;
    if (S->pin) s_pin(S, b);
    S->out_done[r]++;
    return S->sob ? slot : -1;
}
static void s_finish(SEngine *S, int64_t r, double now) {
    s_offer(S, r, NULL, 0);  /* the finishing step retries a pending batch once more */
    if (S->err) return;
    S->pend_n[r] = 0;
    S->state[r] = RS_DONE;
    S->finish_us[r] = now;
    S->m.requests++;
    S->m.output_tokens += S->O[r];
    s_focus(S, r, -1);
    int64_t n = s_nchain(S, r), nseq = n + (S->ooff[r + 1] - S->ooff[r]), F = s_full(S, r);
    for (int t = 0; t < S->T; t++) {
        STier *X = &S->tier[t];
        if (!X->nobs[r]) continue;
        /* observed blocks by chain position (a chain block before an output block at the same one) */
        int64_t m = 0;
        for (int64_t p = 0; p < n || p - F < nseq - n; p++) {
            if (p < n && (*s_flag(S, t, r, p) & RQ_OBSERVED)) {
                S->arr_b[m] = s_slot_block(S, r, p); S->arr_p[m] = p; S->arr_f[m] = *s_flag(S, t, r, p); m++;
            }
            int64_t o = n + p - F;
            if (p >= F && o < nseq && (*s_flag(S, t, r, o) & RQ_OBSERVED)) {
                S->arr_b[m] = s_slot_block(S, r, o); S->arr_p[m] = p; S->arr_f[m] = *s_flag(S, t, r, o); m++;
            }
        }
        if (X->py) {
            if (X->hook[H_FINISHED] != Py_None)
                s_pycall(S, X->hook[H_FINISHED], "(LLL)", (long long)r, (long long)m, (long long)s_step(S));
        } else {
            Engine *v = s_view(S, t);
            pol_request_finished(v, r, S->arr_b, S->arr_f, m);
            for (int64_t i = 0; i < m; i++) s_rekey(S, t, S->arr_b[i]);
        }
        if (S->err) return;
        X->nobs[r] = 0;
        memset(X->flags + S->soff[r], 0, (size_t)nseq);
    }
    int64_t nc = s_cacheable(S, r), done = S->out_done[r];
    const int64_t *chain = S->blk + S->off[r], *out = S->oblk + S->ooff[r];
    if (S->pin) {
        for (int64_t j = 0; j < nc; j++) s_unpin(S, chain[j]);
        for (int64_t i = 0; i < done; i++) s_unpin(S, out[i]);
    }
    S->anon -= S->anon_of[r];
    S->anon_of[r] = 0;
    S->reserved -= S->growth_left[r];
    S->growth_left[r] = 0;
    if (!S->gpc) {  /* its blocks leave tier 0 at once, tail first */
        for (int64_t i = done + nc - 1; i >= 0; i--) {
            int64_t b = i >= nc ? out[i - nc] : chain[i];
            if (s_in(S, 0, b) && S->pin0[b] == 0) { s_evict(S, 0, b); if (S->err) return; }
        }
    }
    S->out_done[r] = 0;
    for (int t = 0; t < S->T; t++) S->has_span[r * S->T + t] = 0;
}

/* ------------------------------------------------------------------- the scheduler ---- */
/* (N, A, K) of a prefill chunk [s, e) and of a decode token at p: compute.py's prefill_terms and
 * decode_terms (their sums are checked against the specification's times by the property test). */
static int s_terms_add(int64_t *acc, int64_t n, int64_t a, int64_t k) {
    return __builtin_add_overflow(acc[0], n, &acc[0]) || __builtin_add_overflow(acc[1], a, &acc[1])
           || __builtin_add_overflow(acc[2], k, &acc[2]);
}
static void s_run(SEngine *S) {
    int64_t nr = S->nr, nxt = 0, done = 0, wh = 0;  /* waiting: requests wh .. nxt - 1, in order */
    double now = 0.0;
    int waits = S->overlap == OV_ASYNC && S->timing;
    double L = (double)S->layers;
    while (done < nr) {
        while (nxt < nr && S->arrival[nxt] <= now) nxt++;
        int64_t budget = S->budget;
        S->n_batch = S->n_first = 0;
        for (int64_t i = 0; i < S->n_running; i++) {
            int64_t r = S->running[i];
            if (budget <= 0) break;
            if (waits && S->landed[r] > now) continue;
            int64_t take = 1;
            if (S->state[r] == RS_PREFILL) { take = S->P[r] - S->pos[r]; if (budget < take) take = budget; }
            S->batch_r[S->n_batch] = (int32_t)r; S->batch_take[S->n_batch++] = take;
            budget -= take;
        }
        while (wh < nxt && budget > 0 && S->n_running < S->max_running) {
            int64_t r = wh;
            if (!s_fits(S, r)) break;
            wh++;
            s_admit(S, r, now);
            if (S->err) return;
            S->running[S->n_running++] = r;
            if (waits && S->landed[r] > now) continue;
            int64_t take = S->P[r] - S->pos[r];
            if (budget < take) take = budget;
            S->batch_r[S->n_batch] = (int32_t)r; S->batch_take[S->n_batch++] = take;
            S->first_chunk[S->n_first++] = (int32_t)r;
            budget -= take;
        }
        if (!S->n_batch) {
            int have = 0;
            double best = 0.0;
            if (nxt < nr) { best = S->arrival[nxt]; have = 1; }
            for (int64_t i = 0; i < S->n_running; i++) {
                double l = S->landed[S->running[i]];
                if (l > now && (!have || l < best)) { best = l; have = 1; }
            }
            if (!have) {
                char m[120];
                snprintf(m, sizeof m, "internal: no progress possible at %.17g us", now);
                s_fail(S, m);
                return;
            }
            now = best;
            continue;
        }
        /* decode slots first, then the iteration's cost */
        int64_t acc[3] = {0, 0, 0}, smp = 0;
        for (int64_t i = 0; i < S->n_batch; i++) {
            int64_t r = S->batch_r[i], take = S->batch_take[i], bad;
            if (S->state[r] == RS_DECODE) {
                s_grow(S, r);
                if (S->err) return;
                int64_t p = S->P[r] + S->gen[r] - 1;
                bad = s_terms_add(acc, 1, p + 1, p + 1);
                smp += 1;
            } else {
                int64_t s = S->pos[r], e = s + take;
                bad = s_terms_add(acc, e - s, (e * (e + 1) - s * (s + 1)) / 2, e);
                smp += e == S->P[r] && S->O[r] > 0;
            }
            if (bad) { s_fail(S, "an iteration's token counts overflow int64"); return; }
        }
        double C = 0.0;
        if (S->timing) {
            PyObject *res = PyObject_CallFunction(S->compute, "LLLL", (long long)acc[0], (long long)acc[1],
                                                  (long long)smp, (long long)acc[2]);
            if (!res) { S->err = SE_PY; return; }
            C = PyFloat_AsDouble(res);
            Py_DECREF(res);
            if (C == -1.0 && PyErr_Occurred()) { S->err = SE_PY; return; }
        }
        double end = now + C;
        if (S->timing && S->overlap != OV_ASYNC) {
            double lo[KV_MAX_TIERS], hi[KV_MAX_TIERS];
            int have[KV_MAX_TIERS] = {0}, any = 0;
            for (int64_t i = 0; i < S->n_first; i++) {
                int64_t r = S->first_chunk[i];
                for (int s = 1; s < S->T; s++) {
                    if (!S->has_span[r * S->T + s]) continue;
                    double a = S->span_lo[r * S->T + s], b = S->span_hi[r * S->T + s];
                    if (!have[s]) { lo[s] = a; hi[s] = b; have[s] = 1; any = 1; }
                    else { if (a < lo[s]) lo[s] = a; if (b > hi[s]) hi[s] = b; }
                }
            }
            if (any) {
                if (S->overlap == OV_SYNC) {
                    double m = now;
                    for (int s = 1; s < S->T; s++) if (have[s] && hi[s] > m) m = hi[s];
                    end = m + C;
                } else {
                    end = now + C;
                    for (int s = 1; s < S->T; s++) {
                        if (!have[s]) continue;
                        double a = (lo[s] + (hi[s] - lo[s]) / L) + C, b = hi[s] + C / L;
                        if (a > end) end = a;
                        if (b > end) end = b;
                    }
                }
            }
        }
        S->m.compute_us += C;
        if (!S->timing && S->n_batch == 1 && S->state[S->batch_r[0]] == RS_DECODE && !S->pend_n[S->batch_r[0]]) {
            /* a lone decode stretch without an event, taken in one step (nothing changes) */
            int64_t r = S->batch_r[0], p0 = S->P[r] + S->gen[r] - 1;
            int64_t stretch = S->O[r] - S->gen[r], room = S->B - p0 % S->B;
            if (room < stretch) stretch = room;
            S->gen[r] += stretch - 1;
            S->m.iterations += stretch - 1;
        }
        S->m.iterations++;
        for (int64_t i = 0; i < S->n_batch; i++) {
            int64_t r = S->batch_r[i];
            if (S->state[r] == RS_PREFILL) {
                S->pos[r] += S->batch_take[i];
                if (S->pos[r] == S->P[r]) {
                    S->first_us[r] = end;
                    int64_t start = S->loaded[r] ? S->prefix[r] : 0, nc = s_cacheable(S, r), m = 0;
                    int32_t *slots = S->offer_buf[KV_MAX_TIERS];
                    for (int64_t j = start; j < nc; j++) slots[m++] = (int32_t)j;
                    s_offer(S, r, slots, m);
                    if (S->err) return;
                    S->gen[r] = S->O[r] > 0 ? 1 : 0;
                    if (S->gen[r] >= S->O[r]) s_finish(S, r, end);
                    else S->state[r] = RS_DECODE;
                }
            } else {
                int64_t p = S->P[r] + S->gen[r] - 1;
                S->gen[r]++;
                int32_t slot[1];
                int64_t m = 0;
                if ((p + 1) % S->B == 0 && p / S->B >= s_full(S, r)) {
                    int64_t sl = s_complete_block(S, r, p / S->B);
                    if (S->err) return;
                    if (sl >= 0) slot[m++] = (int32_t)sl;
                }
                s_offer(S, r, slot, m);
                if (S->err) return;
                if (S->gen[r] >= S->O[r]) s_finish(S, r, end);
            }
            if (S->err) return;
        }
        int64_t k = 0;
        for (int64_t i = 0; i < S->n_running; i++)
            if (S->state[S->running[i]] != RS_DONE) S->running[k++] = S->running[i];
            else done++;
        S->n_running = k;
        now = end;
    }
}

/* ============================================================ the Python type ===== */
#define SV_MAX_BUFS 48

typedef struct {
    PyObject_HEAD
    SEngine s;
    PageInfo *info;
    Py_buffer bufs[SV_MAX_BUFS];
    int nbufs;
    PyObject *refs;       /* Python objects kept alive (hooks, compute) */
    int ran;
} ServingObject;

static void *sv_buf(ServingObject *self, PyObject *o, Py_ssize_t item, Py_ssize_t n, int writable, const char *name) {
    void *p = buffer_view(self->bufs, &self->nbufs, SV_MAX_BUFS, o, item, n, writable, name);
    return p || PyErr_Occurred() ? p : (void *)self;  /* an empty buffer is still present */
}
static Py_ssize_t sv_len(PyObject *o, Py_ssize_t item) {
    Py_buffer b;
    if (PyObject_GetBuffer(o, &b, PyBUF_SIMPLE) < 0) return -1;
    Py_ssize_t n = b.len / item;
    PyBuffer_Release(&b);
    return n;
}
static int sv_keep(ServingObject *self, PyObject *o) { return PyList_Append(self->refs, o); }

static void sv_free(ServingObject *self) {
    SEngine *S = &self->s;
    for (int t = 0; t < KV_MAX_TIERS; t++) {
        STier *X = &S->tier[t];
        Engine *v = &X->v;
        free(v->hpos); free(v->oprev); free(v->onext); ih_free(&v->t[0].heap);
        policy_free(&X->pol, 1);
        free(X->prot); free(X->flags); free(X->nobs);
        memset(X, 0, sizeof *X);
    }
    SAdmission *A = &S->adm;
    free(A->kprev); free(A->knext); free(A->count); free(A->tracked); free(A->table);
    free(S->soff); free(S->lowpin); free(S->pin0); free(S->state); free(S->pos); free(S->gen);
    free(S->anon_of); free(S->growth_left); free(S->out_done); free(S->pend_n); free(S->landed);
    free(S->span_lo); free(S->span_hi); free(S->has_span); free(S->pend); free(S->running); free(S->src);
    free(S->batch_r); free(S->batch_take); free(S->first_chunk);
    for (int i = 0; i <= KV_MAX_TIERS; i++) { free(S->offer_buf[i]); free(S->ok_buf[i]); }
    free(self->info);
    self->info = NULL;
    memset(S, 0, sizeof *S);
}

static void Serving_dealloc(ServingObject *self) {
    sv_free(self);
    for (int i = 0; i < self->nbufs; i++) PyBuffer_Release(&self->bufs[i]);
    Py_XDECREF(self->refs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define SV_REQ(ptr, expr) do { ptr = (void *)(expr); if (!(ptr)) { if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "serving: missing %s", #ptr); return -1; } } while (0)
#define SV_ALLOC(ptr, n, item) do { ptr = calloc((size_t)((n) > 0 ? (n) : 1), item); if (!(ptr)) { PyErr_NoMemory(); return -1; } } while (0)

/* One tier: its view (an Engine of one tier) and its policy. ``pol``: (id, floats[8], ints[4], hooks),
 * hooks a tuple of H_COUNT callables/None for a Python policy (id "none"), else None. */
static int sv_tier(ServingObject *self, int t, PyObject *pol, PyObject *o_state, int64_t cap, int64_t n_seqs,
                   const int64_t *sess_of_req, const int64_t *sess_of_seq, int64_t n_sess, int64_t total_slots) {
    SEngine *S = &self->s;
    STier *X = &S->tier[t];
    Engine *v = &X->v;
    int64_t nb = S->nb;
    int id;
    PyObject *o_f, *o_i, *o_hooks;
    if (!PyArg_ParseTuple(pol, "iOOO", &id, &o_f, &o_i, &o_hooks)) return -1;
    double *fpar; int64_t *ipar;
    SV_REQ(fpar, sv_buf(self, o_f, 8, 8, 0, "policy floats"));
    SV_REQ(ipar, sv_buf(self, o_i, 8, 4, 0, "policy ints"));
    memset(v, 0, sizeof *v);
    v->n_pages = nb;
    v->info = self->info;
    v->n_layers = 1;
    v->n_seqs = n_seqs;
    v->nt = 1;
    v->t[0].cap = cap;
    v->t[0].channels = 1;
    ls_init(&v->t[0].order);
    v->track_order = 1;
    SV_REQ(v->pg, sv_buf(self, o_state, sizeof(PageState), nb, 1, "state"));
    v->hpos = nil32(nb); v->oprev = nil32(nb); v->onext = nil32(nb);
    if (!v->hpos || !v->oprev || !v->onext) { PyErr_NoMemory(); return -1; }
    v->stamp = 1;  /* pin == 1: not a candidate (s_reblock) */
    v->focus = S->focus;
    v->kids = S->kids + (int64_t)t * nb;
    v->refetch = S->recompute ? sv_refetch : NULL;
    v->host = S;
    v->host_tier = t;
    X->cap = cap;
    X->py = o_hooks != Py_None;
    if (X->py) {
        if (!PyTuple_Check(o_hooks) || PyTuple_GET_SIZE(o_hooks) != H_COUNT) {
            PyErr_SetString(PyExc_ValueError, "serving: Python hooks must be a tuple of 8");
            return -1;
        }
        for (int i = 0; i < H_COUNT; i++) X->hook[i] = PyTuple_GET_ITEM(o_hooks, i);
        if (sv_keep(self, o_hooks) < 0) return -1;
        id = P_NONE;
    }
    if (policy_init(v, &X->pol, id, fpar, ipar, 1) < 0) return -1;
    Policy *P = &X->pol;
    if (id == P_VLLM_LRU) SV_ALLOC(P->req_rank, S->nr, 8);
    if (id == P_SESSION) {
        SV_ALLOC(P->activity, n_sess, 8);
        P->sess_root = nil32(n_sess); P->spos = nil32(n_sess);
        if (!P->sess_root || !P->spos) { PyErr_NoMemory(); return -1; }
        for (int64_t i = 0; i < n_sess; i++) P->activity[i] = -1;
        P->sess_of_req = sess_of_req; P->sess_of_seq = sess_of_seq;
    }
    if (id == P_GDSF && !S->recompute) { PyErr_SetString(PyExc_ValueError, "serving: cost_aware_tiered needs recompute"); return -1; }
    SV_ALLOC(X->prot, nb, 1);
    SV_ALLOC(X->flags, total_slots, 1);
    SV_ALLOC(X->nobs, S->nr, 8);
    return 0;
}

/* Serving(**spec): see kvgym/sim/serving/compiled.py for every key. */
static int Serving_init(ServingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {
        "arrival", "prompt", "output", "offsets", "blocks", "out_offsets", "out_blocks", "parent", "block_tokens",
        "caps", "write_back", "gpu_first", "overlap", "timing", "pin", "gpc", "cpt", "sob", "max_running",
        "budget", "layers", "block_bytes", "regret_horizon", "links", "M", "compute", "states", "in_tier", "kids",
        "focus", "fp16", "tok_start", "tok_end", "seq", "n_seqs", "policies", "sess_of_req", "sess_of_seq", "n_sess",
        "recompute", "load1", "admission", "cands", "arr_b", "arr_p", "arr_f", "adm_ok",
        "admit_us", "first_us", "finish_us", "prefix", "loaded", NULL};
    PyObject *o_arr, *o_P, *o_O, *o_off, *o_blk, *o_ooff, *o_oblk, *o_par, *o_caps, *o_links, *o_compute, *o_states,
        *o_in, *o_kids, *o_focus, *o_fp16, *o_ts, *o_te, *o_seq, *o_pols, *o_sreq, *o_sseq, *o_rec, *o_load1, *o_adm,
        *o_cands, *o_ab, *o_ap, *o_af, *o_aok, *o_admit, *o_first, *o_finish, *o_prefix, *o_loaded;
    long long B, max_running, budget, layers, block_bytes, rh, M, n_seqs, n_sess;
    int wb, gf, ov, timing, pin, gpc, cpt, sob;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOLOiiiiiiiiLLLLLOLOOOOOOOOOLOOOLOOOOOOOOOOOOO", kwlist,
            &o_arr, &o_P, &o_O, &o_off, &o_blk, &o_ooff, &o_oblk, &o_par, &B, &o_caps, &wb, &gf, &ov, &timing, &pin,
            &gpc, &cpt, &sob, &max_running, &budget, &layers, &block_bytes, &rh, &o_links, &M, &o_compute, &o_states,
            &o_in, &o_kids, &o_focus, &o_fp16, &o_ts, &o_te, &o_seq, &n_seqs, &o_pols, &o_sreq, &o_sseq, &n_sess,
            &o_rec, &o_load1, &o_adm, &o_cands, &o_ab, &o_ap, &o_af, &o_aok, &o_admit, &o_first, &o_finish,
            &o_prefix, &o_loaded))
        return -1;
    sv_free(self);
    self->refs = PyList_New(0);
    if (!self->refs) return -1;
    SEngine *S = &self->s;
    Py_ssize_t nr = sv_len(o_P, 8), nb = sv_len(o_par, 8), nrefs = sv_len(o_blk, 8), nouts = sv_len(o_oblk, 8);
    Py_ssize_t T = sv_len(o_caps, 8);
    if (nr < 0 || nb < 0 || nrefs < 0 || nouts < 0 || T < 0) return -1;
    if (T < 1 || T > KV_MAX_TIERS) { PyErr_Format(PyExc_ValueError, "serving: %zd tiers (1..%d)", T, KV_MAX_TIERS); return -1; }
    if (nb >= INT32_MAX) { PyErr_SetString(PyExc_ValueError, "serving: at most 2**31 - 2 distinct blocks"); return -1; }
    S->nr = nr; S->nb = nb; S->B = B; S->T = (int)T;
    SV_REQ(S->arrival, sv_buf(self, o_arr, 8, nr, 0, "arrival"));
    SV_REQ(S->P, sv_buf(self, o_P, 8, nr, 0, "prompt"));
    SV_REQ(S->O, sv_buf(self, o_O, 8, nr, 0, "output"));
    SV_REQ(S->off, sv_buf(self, o_off, 8, nr + 1, 0, "offsets"));
    SV_REQ(S->blk, sv_buf(self, o_blk, 8, nrefs, 0, "blocks"));
    SV_REQ(S->ooff, sv_buf(self, o_ooff, 8, nr + 1, 0, "out_offsets"));
    SV_REQ(S->oblk, sv_buf(self, o_oblk, 8, nouts, 0, "out_blocks"));
    SV_REQ(S->parent, sv_buf(self, o_par, 8, nb, 0, "parent"));
    const int64_t *caps;
    SV_REQ(caps, sv_buf(self, o_caps, 8, T, 0, "caps"));
    S->write_back = wb; S->gpu_first = gf; S->overlap = ov; S->timing = timing; S->pin = pin; S->gpc = gpc;
    S->cpt = cpt; S->sob = sob; S->max_running = max_running; S->budget = budget; S->layers = layers;
    S->block_bytes = block_bytes; S->regret_horizon = rh; S->M = M;
    SV_REQ(S->ltab, sv_buf(self, o_links, 8, T * 2 * (M + 1), 0, "links"));
    SV_REQ(S->load1, sv_buf(self, o_load1, 8, T, 0, "load1"));
    if (o_rec != Py_None) SV_REQ(S->recompute, sv_buf(self, o_rec, 8, nb, 0, "recompute"));
    S->compute = o_compute;
    if (sv_keep(self, o_compute) < 0) return -1;
    SV_REQ(S->in_tier, sv_buf(self, o_in, 1, T * nb, 1, "in_tier"));
    SV_REQ(S->kids, sv_buf(self, o_kids, 8, T * nb, 1, "kids"));
    SV_REQ(S->focus, sv_buf(self, o_focus, 8, 3, 1, "focus"));
    const int64_t *fp16, *ts, *te, *sreq, *sseq;
    const int32_t *seq;
    SV_REQ(fp16, sv_buf(self, o_fp16, 8, nb, 0, "fp16"));
    SV_REQ(ts, sv_buf(self, o_ts, 8, nb, 0, "tok_start"));
    SV_REQ(te, sv_buf(self, o_te, 8, nb, 0, "tok_end"));
    SV_REQ(seq, sv_buf(self, o_seq, 4, nb, 0, "seq"));
    SV_REQ(sreq, sv_buf(self, o_sreq, 8, nr, 0, "sess_of_req"));
    SV_REQ(sseq, sv_buf(self, o_sseq, 8, n_seqs, 0, "sess_of_seq"));
    SV_REQ(S->admit_us, sv_buf(self, o_admit, 8, nr, 1, "admit_us"));
    SV_REQ(S->first_us, sv_buf(self, o_first, 8, nr, 1, "first_us"));
    SV_REQ(S->finish_us, sv_buf(self, o_finish, 8, nr, 1, "finish_us"));
    SV_REQ(S->prefix, sv_buf(self, o_prefix, 8, nr, 1, "prefix"));
    SV_REQ(S->loaded, sv_buf(self, o_loaded, 8, nr, 1, "loaded"));
    /* sequence slots: every request's chain, then its output blocks */
    SV_ALLOC(S->soff, nr + 1, 8);
    int64_t maxseq = 1;
    for (int64_t r = 0; r < nr; r++) {
        int64_t len = (S->off[r + 1] - S->off[r]) + (S->ooff[r + 1] - S->ooff[r]);
        S->soff[r + 1] = S->soff[r] + len;
        if (len > maxseq) maxseq = len;
    }
    SV_REQ(S->cands, sv_buf(self, o_cands, 8, nb, 1, "cands"));
    SV_REQ(S->arr_b, sv_buf(self, o_ab, 8, maxseq, 1, "arr_b"));
    SV_REQ(S->arr_p, sv_buf(self, o_ap, 8, maxseq, 1, "arr_p"));
    SV_REQ(S->arr_f, sv_buf(self, o_af, 1, maxseq, 1, "arr_f"));
    SV_REQ(S->adm_ok, sv_buf(self, o_aok, 1, maxseq, 1, "adm_ok"));
    self->info = malloc((size_t)(nb ? nb : 1) * sizeof(PageInfo));
    if (!self->info) { PyErr_NoMemory(); return -1; }
    for (int64_t i = 0; i < nb; i++) self->info[i] = (PageInfo){1, fp16[i], 0.0, 0, seq[i]};
    if (!PyTuple_Check(o_states) || PyTuple_GET_SIZE(o_states) != T || !PyTuple_Check(o_pols) || PyTuple_GET_SIZE(o_pols) != T) {
        PyErr_SetString(PyExc_ValueError, "serving: states and policies must be tuples, one per tier");
        return -1;
    }
    for (int t = 0; t < T; t++) {
        if (sv_tier(self, t, PyTuple_GET_ITEM(o_pols, t), PyTuple_GET_ITEM(o_states, t), caps[t], n_seqs, sreq, sseq,
                    n_sess, S->soff[nr]) < 0)
            return -1;
        S->tier[t].v.tok_start = ts;
        S->tier[t].v.tok_end = te;
    }
    /* admission: (kind, threshold, max_keys, words, sample_size, strict, hooks) */
    SAdmission *A = &S->adm;
    long long ak, thr, maxk, words, ssize;
    int strict;
    PyObject *o_ah;
    if (!PyArg_ParseTuple(o_adm, "iLLLLiO", &ak, &thr, &maxk, &words, &ssize, &strict, &o_ah)) return -1;
    A->kind = (int)ak; A->thr = A->min_count = thr; A->max_keys = maxk; A->words = words;
    A->sample_size = ssize; A->strict = strict;
    A->khead = A->ktail = NIL;
    if (A->kind == AD_THRESHOLD) {
        A->kprev = nil32(nb); A->knext = nil32(nb);
        SV_ALLOC(A->count, nb, 8); SV_ALLOC(A->tracked, nb, 1);
        if (!A->kprev || !A->knext) { PyErr_NoMemory(); return -1; }
    } else if (A->kind == AD_SKETCH) {
        if (words < 1) { PyErr_SetString(PyExc_ValueError, "serving: sketch needs words >= 1"); return -1; }
        SV_ALLOC(A->table, words, 8);
    } else if (A->kind == AD_PY) {
        if (!PyTuple_Check(o_ah) || PyTuple_GET_SIZE(o_ah) != HA_COUNT) { PyErr_SetString(PyExc_ValueError, "serving: admission hooks"); return -1; }
        for (int i = 0; i < HA_COUNT; i++) A->hook[i] = PyTuple_GET_ITEM(o_ah, i);
        if (sv_keep(self, o_ah) < 0) return -1;
    }
    /* state */
    SV_ALLOC(S->lowpin, T * nb, 1); SV_ALLOC(S->pin0, nb, 8);
    SV_ALLOC(S->state, nr, 1); SV_ALLOC(S->pos, nr, 8); SV_ALLOC(S->gen, nr, 8);
    SV_ALLOC(S->anon_of, nr, 8); SV_ALLOC(S->growth_left, nr, 8); SV_ALLOC(S->out_done, nr, 8); SV_ALLOC(S->pend_n, nr, 8);
    SV_ALLOC(S->landed, nr, 8); SV_ALLOC(S->span_lo, nr * T, 8); SV_ALLOC(S->span_hi, nr * T, 8);
    SV_ALLOC(S->has_span, nr * T, 1); SV_ALLOC(S->pend, S->soff[nr], 4); SV_ALLOC(S->running, nr, 8);
    SV_ALLOC(S->src, maxseq, 1); SV_ALLOC(S->batch_r, nr, 4); SV_ALLOC(S->batch_take, nr, 8);
    SV_ALLOC(S->first_chunk, nr, 4);
    for (int i = 0; i <= KV_MAX_TIERS; i++) { SV_ALLOC(S->offer_buf[i], maxseq, 4); SV_ALLOC(S->ok_buf[i], maxseq, 1); }
    return 0;
}

static PyObject *Serving_run(ServingObject *self, PyObject *Py_UNUSED(a)) {
    SEngine *S = &self->s;
    if (self->ran || !S->T) { PyErr_SetString(PyExc_RuntimeError, "serving: an engine runs once"); return NULL; }
    self->ran = 1;
    s_run(S);
    for (int t = 0; t < S->T && !S->err; t++)
        if (S->tier[t].v.err) s_fail(S, "internal: a compiled policy failed (out of memory?)");
    if (S->err == SE_PY) return NULL;
    if (S->err == SE_SIM) return PyUnicode_FromString(S->msg);
    int T = S->T;
    SCounters *m = &S->m;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
#define SV_SETI(name, v) do { PyObject *x_ = PyLong_FromLongLong((long long)(v)); if (!x_ || PyDict_SetItemString(d, name, x_) < 0) { Py_XDECREF(x_); Py_DECREF(d); return NULL; } Py_DECREF(x_); } while (0)
#define SV_SETL(name, arr, f) do { PyObject *l_ = PyList_New(T); if (!l_) { Py_DECREF(d); return NULL; } for (int t_ = 0; t_ < T; t_++) PyList_SET_ITEM(l_, t_, PyLong_FromLongLong((long long)(arr)f)); if (PyDict_SetItemString(d, name, l_) < 0) { Py_DECREF(l_); Py_DECREF(d); return NULL; } Py_DECREF(l_); } while (0)
    SV_SETI("requests", m->requests); SV_SETI("accesses", m->accesses); SV_SETI("hits", m->hits);
    SV_SETI("prompt_blocks", m->prompt_blocks); SV_SETI("prompt_tokens", m->prompt_tokens);
    SV_SETI("output_tokens", m->output_tokens); SV_SETI("output_blocks", m->output_blocks);
    SV_SETI("broken_prefix_blocks", m->broken); SV_SETI("prefill_tokens_computed", m->computed);
    SV_SETI("prefill_tokens_saved", m->saved); SV_SETI("iterations", m->iterations);
    SV_SETL("prefix_hits", m->prefix_hits, [t_]); SV_SETL("prefix_hit_tokens", m->prefix_tokens, [t_]);
    SV_SETL("loads", m->loads, [t_]); SV_SETL("stores", m->stores, [t_]); SV_SETL("stores_skipped", m->skipped, [t_]);
    SV_SETL("stores_failed", m->failed, [t_]); SV_SETL("evictions", m->evictions, [t_]); SV_SETL("drops", m->drops, [t_]);
    SV_SETL("link_bytes_load", m->lb_load, [t_]); SV_SETL("link_bytes_store", m->lb_store, [t_]);
    SV_SETL("peak_blocks", S->tier, [t_].peak);
    PyObject *c = PyFloat_FromDouble(m->compute_us);
    if (!c || PyDict_SetItemString(d, "compute_us", c) < 0) { Py_XDECREF(c); Py_DECREF(d); return NULL; }
    Py_DECREF(c);
#undef SV_SETI
#undef SV_SETL
    return d;
}

static PyMethodDef Serving_methods[] = {
    {"run", (PyCFunction)Serving_run, METH_NOARGS, "run() -> counters dict, or an error message (str)"},
    {NULL}};

static PyTypeObject ServingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kvgym.sim._engine.Serving",
    .tp_basicsize = sizeof(ServingObject),
    .tp_dealloc = (destructor)Serving_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled serving engine (see kvgym/sim/serving/compiled.py).",
    .tp_methods = Serving_methods,
    .tp_init = (initproc)Serving_init,
    .tp_new = PyType_GenericNew,
};

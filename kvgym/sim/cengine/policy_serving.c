/* The serving-only policies: each one is the rule of its baselines/<name>.py (vllm_lru, vllm_arc,
 * radix_lru, lmcache_lru, hits_per_token, session_aware), on the structures of structs.c. They run
 * in a serving tier's view (serving.c: the tier seen as tier 0 of a one-tier engine), which also
 * gives them the request-level hooks (pol_request_access, pol_store_miss, pol_request_finished).
 * policy.c dispatches the per-block hooks here. Included by module.c before policy.c.
 *
 * Which structure orders a tier's victims (engine.h K_*): vllm_lru, radix_lru and hits_per_token
 * key the view's heap of candidates (pol_key; serving.c re-keys a block after each of its hooks);
 * vllm_arc and lmcache_lru keep lists of every resident and skip the pinned ones when choosing;
 * session_aware keeps one pairing heap of candidates per session and a heap of sessions. */
#include "policy.h"

#define SV_SHIFT (((int64_t)1) << 32)   /* vllm_lru: R << 32 */
#define SV_MID (((int64_t)1) << 31)
#define SV_INNER (((int64_t)1) << 41)   /* radix_lru: 2 * LEVEL for a block with a resident child */
#define SV_DEPTH (((int64_t)1) << 24)   /* session_aware */

static inline int sp_pinned(const Engine *e, int32_t p) { return e->pg[p].pin == e->stamp; }

/* ============================================================== vllm_lru ===== */
/* rank = (R, -position) as R * 2^32 + 2^31 - position; the lowest rank goes first. */
static inline int64_t vl_fresh(Policy *P) { P->next_rank++; return P->next_rank * SV_SHIFT + SV_MID; }
static inline int64_t vl_request(Policy *P, int64_t r) {
    if (!P->req_rank[r]) P->req_rank[r] = ++P->next_rank;
    return P->req_rank[r];
}
static void vl_insert(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t req = e->focus ? e->focus[0] : -1, pos = e->focus ? e->focus[1] : -1;
    P->rank[p] = (req < 0 || pos < 0 || !P->req_rank) ? vl_fresh(P) : vl_request(P, req) * SV_SHIFT + SV_MID - pos;
}
static void vl_access(Engine *e, int64_t r, const int64_t *b, const int64_t *pos, int64_t n) {
    Policy *P = e->pol;
    int64_t base = vl_request(P, r) * SV_SHIFT + SV_MID;
    for (int64_t i = 0; i < n; i++)
        if (e->pg[b[i]].tier == 0 && P->rank[b[i]] < base - pos[i]) P->rank[b[i]] = base - pos[i];
}
static void vl_finished(Engine *e, int64_t r, const int64_t *b, int64_t n) {
    Policy *P = e->pol;
    for (int64_t i = n - 1; i >= 0; i--)
        if (e->pg[b[i]].tier == 0) P->rank[b[i]] = vl_fresh(P);
    P->req_rank[r] = 0;
}

/* ============================================================== vllm_arc ===== */
/* T1, T2 (residents, LRU end first), B1, B2 (ghosts); every block is in at most one of them. */
enum { VT1 = 0, VT2 = 1, VB1 = 2, VB2 = 3 };
static void va_move(Engine *e, int32_t p, int to) {  /* to the MRU end of list ``to`` (-1: out) */
    Policy *P = e->pol;
    if (P->where[p]) ls_remove(&P->L[P->where[p] - 1], P->prev, P->next, p, 0);
    if (to >= 0) { ls_push_back(&P->L[to], P->prev, P->next, p, 0); P->where[p] = (uint8_t)(to + 1); }
    else P->where[p] = 0;
}
static inline int va_in(const Policy *P, int32_t p, int l) { return P->where[p] == l + 1; }
static void va_store_miss(Engine *e, const int64_t *b, int64_t n) {
    Policy *P = e->pol;
    double cap = (double)P->cap;
    for (int64_t i = n - 1; i >= 0; i--) {
        int32_t p = (int32_t)b[i];
        if (va_in(P, p, VB1)) {
            double r = (double)P->L[VB2].n / (double)P->L[VB1].n;
            double t = P->arc_p + (r > 1.0 ? r : 1.0);
            P->arc_p = t <= cap ? t : cap;
            va_move(e, p, VB1);
        } else if (va_in(P, p, VB2)) {
            double r = (double)P->L[VB1].n / (double)P->L[VB2].n;
            double t = P->arc_p - (r > 1.0 ? r : 1.0);
            P->arc_p = t >= 0.0 ? t : 0.0;
            va_move(e, p, VB2);
        }
    }
}
static void va_finished(Engine *e, const int64_t *b, const uint8_t *flags, int64_t n) {
    Policy *P = e->pol;
    for (int64_t i = n - 1; i >= 0; i--) {
        int32_t p = (int32_t)b[i];
        int ins = (flags[i] & RQ_INSERTED) != 0, reu = (flags[i] & RQ_REUSED) != 0;
        if (ins && !reu) {  /* only inserted: MRU end of its own list */
            if (va_in(P, p, VT1)) va_move(e, p, VT1);
            else if (va_in(P, p, VT2)) va_move(e, p, VT2);
            continue;
        }
        if (reu && (va_in(P, p, VT1) || va_in(P, p, VT2))) va_move(e, p, VT2);
    }
}
static void va_evict(Engine *e, int32_t p) {
    Policy *P = e->pol;
    if (va_in(P, p, VT1)) va_move(e, p, VB1);
    else if (va_in(P, p, VT2)) va_move(e, p, VB2);
    while (P->L[VB1].n > P->cap) va_move(e, P->L[VB1].head, -1);
    while (P->L[VB2].n > P->cap) va_move(e, P->L[VB2].head, -1);
}
static int32_t va_choose(Engine *e) {
    Policy *P = e->pol;
    int32_t v = NIL;
    if (P->L[VT1].n >= (int64_t)P->arc_p) v = ls_first_unpinned(&P->L[VT1], P->next, e->pg, e->stamp);
    if (v == NIL) v = ls_first_unpinned(&P->L[VT2], P->next, e->pg, e->stamp);
    if (v == NIL) v = ls_first_unpinned(&P->L[VT1], P->next, e->pg, e->stamp);
    /* a block the lists never saw: the oldest candidate (the tier's insertion order) */
    if (v == NIL) v = ls_first_unpinned(&e->t[0].order, e->onext, e->pg, e->stamp);
    return v;
}

/* ============================================================== lmcache_lru ===== */
/* One list, least recent first: puts append; a loaded prefix is re-touched tail to head. */
static void lm_load(Engine *e, const int64_t *b, int64_t n) {
    Policy *P = e->pol;
    for (int64_t i = n - 1; i >= 0; i--) {
        int32_t p = (int32_t)b[i];
        if (!P->where[p]) continue;  /* not resident here: its next put sets its place */
        ls_remove(&P->L[0], P->prev, P->next, p, 0);
        ls_push_back(&P->L[0], P->prev, P->next, p, 0);
    }
}

/* ============================================================== radix_lru, hits_per_token ===== */
static inline void radix_touch(Policy *P, int32_t p) { P->cnt[p] = ++P->clock; }
static inline uint64_t radix_key(const Engine *e, int32_t p) {
    return key_i64(e->pol->cnt[p] + (e->kids && e->kids[p] > 0 ? SV_INNER : 0));
}
/* H = L + (f * tokens) / fp16 bytes, float64 in that association. */
static inline void hpt_set(Engine *e, int32_t p) {
    Policy *P = e->pol;
    double value = (double)(e->tok_end[p] - e->tok_start[p]), size = (double)e->info[p].fp16;
    P->val[p] = P->inflation + ((double)P->cnt[p] * value) / size;
}

/* ============================================================== session_aware ===== */
static inline int64_t sess_depth(const Engine *e, int32_t p) {
    int64_t s = e->tok_start[p];
    return SV_DEPTH - 1 - (s < SV_DEPTH - 1 ? s : SV_DEPTH - 1);
}
static void sess_refresh(Engine *e, int32_t s) {  /* session s's place in the heap of sessions */
    Policy *P = e->pol;
    if (P->spos[s] != NIL) ih_remove(&P->sheap, P->spos, s);
    int32_t r = P->sess_root[s];
    if (r != NIL && ih_push(&P->sheap, P->spos, s, key_i64(P->activity[s] * SV_DEPTH + sess_depth(e, r)), e->pg[r].ins) < 0)
        e->err = E_INTERNAL;
}
static void sess_attach(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int32_t s = P->bsess[p];
    pf_push(&P->pf, &P->sess_root[s], p, key_i64(sess_depth(e, p)), e->pg[p].ins);
    P->sattached[p] = 1;
    sess_refresh(e, s);
}
static void sess_detach(Engine *e, int32_t p) {
    Policy *P = e->pol;
    if (!P->sattached[p]) return;
    int32_t s = P->bsess[p];
    pf_remove(&P->pf, &P->sess_root[s], p);
    P->sattached[p] = 0;
    sess_refresh(e, s);
}
/* A reference or insert of p by the request in focus: p joins that request's session (its own
 * first request's when no request is in focus), which becomes active now. */
static void sess_touch(Engine *e, int32_t p) {
    Policy *P = e->pol;
    int64_t req = e->focus ? e->focus[0] : -1;
    int32_t s = (int32_t)(req >= 0 ? P->sess_of_req[req] : P->sess_of_seq[e->info[p].seq]);
    int att = P->sattached[p];
    if (att) sess_detach(e, p);
    P->bsess[p] = s;
    P->activity[s] = e->s;
    if (att) sess_attach(e, p);
    else sess_refresh(e, s);
}
static int32_t sess_choose(Engine *e) {
    Policy *P = e->pol;
    return P->sheap.n ? P->sess_root[P->sheap.p[0]] : NIL;
}

/* ============================================================== request hooks ===== */
/* A request's blocks found (load) or offered (offer) in this tier, chain order. */
static void pol_request_access(Engine *e, int load, int64_t r, const int64_t *b, const int64_t *pos, int64_t n) {
    switch (e->pol->id) {
    case P_VLLM_LRU: vl_access(e, r, b, pos, n); break;
    case P_LMCACHE_LRU: if (load) lm_load(e, b, n); break;
    default: break;
    }
}
static void pol_store_miss(Engine *e, const int64_t *b, int64_t n) {
    if (e->pol->id == P_VLLM_ARC) va_store_miss(e, b, n);
}
/* The request finished: every block it touched in this tier, head first, with RQ_* flags. */
static void pol_request_finished(Engine *e, int64_t r, const int64_t *b, const uint8_t *flags, int64_t n) {
    switch (e->pol->id) {
    case P_VLLM_LRU: vl_finished(e, r, b, n); break;
    case P_VLLM_ARC: va_finished(e, b, flags, n); break;
    default: break;
    }
}

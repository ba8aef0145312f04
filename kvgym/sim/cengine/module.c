/* kvgym.sim._engine: the compiled engine as a Python extension type. One translation unit.
 *
 * Python (kvgym/sim/compiled.py) builds every array (validated by the loader) and passes them in;
 * the engine keeps buffer views on them for its lifetime. Layouts of the record types are exported
 * (page_fields, link_fields) so Python builds matching numpy dtypes. */
#include "structs.c"
#include "core.c"
#include "policy_serving.c"
#include "policy.c"
#include "prefetch.c"
#include "observe.c"
#include <stddef.h>

#define MAX_BUFS 40

typedef struct {
    PyObject_HEAD
    Engine e;
    Policy pol;
    Prefetcher pre;
    Obs obs;
    Py_buffer bufs[MAX_BUFS];
    int nbufs;
    Py_buffer chunk[3];
    int nchunk;
    PyObject *refs;       /* Python objects kept alive (hooks, chooser, propose) */
    int64_t *pf_py;       /* Python prefetcher output buffer */
    int64_t *view;        /* env: decision and totals, refreshed after each call */
    double *fview;
    int status;           /* env: the pending decision (ST_EVICT, ST_PREFETCH) or ST_DONE */
    double prev[3];       /* env: stall µs, misses, bytes at the previous decision (rewards) */
} EngineObject;

/* A C view of buffer ``o`` (``n`` items of ``item`` bytes, C-contiguous), held in bufs[*nbufs]
 * (at most ``max``) until the owner releases it; NULL with a Python error on a mismatch. */
static void *buffer_view(Py_buffer *bufs, int *nbufs, int max, PyObject *o, Py_ssize_t item, Py_ssize_t n,
                         int writable, const char *name) {
    if (*nbufs >= max) { PyErr_SetString(PyExc_RuntimeError, "engine: too many buffers"); return NULL; }
    Py_buffer *b = &bufs[*nbufs];
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return NULL;
    (*nbufs)++;
    if (b->itemsize != item || b->len != n * item) {
        PyErr_Format(PyExc_ValueError, "engine: buffer %s has itemsize %zd and %zd bytes, expected %zd x %zd",
                     name, b->itemsize, b->len, item, n);
        return NULL;
    }
    return b->buf;
}

static void *getbuf(EngineObject *self, PyObject *o, Py_ssize_t item, Py_ssize_t n, int writable, const char *name) {
    if (o == NULL || o == Py_None) return NULL;
    return buffer_view(self->bufs, &self->nbufs, MAX_BUFS, o, item, n, writable, name);
}

#define REQ(ptr, expr) do { ptr = (void *)(expr); if (!(ptr)) { if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "engine: missing %s", #ptr); return -1; } } while (0)

static void policy_free(Policy *P, int nt) {
    free(P->prev); free(P->next); free(P->where); free(P->gprev); free(P->gnext); free(P->in_ghost);
    free(P->cnt); free(P->aux); free(P->val); free(P->ring); free(P->page_group); free(P->groups);
    free(P->gpos); free(P->kib); free(P->scratch); free(P->nextu); free(P->sclass); free(P->sroot);
    free(P->length); free(P->cls); free(P->sd_root); free(P->sd_pos);
    free(P->gmap.f); free(P->gmap.z); free(P->gmap.t); free(P->gmap.gid);
    free(P->rank); free(P->req_rank); free(P->bsess); free(P->sattached); free(P->activity);
    free(P->sess_root); free(P->spos); ih_free(&P->sheap);
    pf_free(&P->pf);
    for (int t = 0; t < KV_MAX_TIERS; t++) {
        ih_free(&P->gheap[t]); ih_free(&P->mass[t]);
        for (int c = 0; c < 3; c++) ih_free(&P->sd_heap[t][c]);
    }
    (void)nt;
}

static void Engine_dealloc(EngineObject *self) {
    Engine *e = &self->e;
    for (int t = 0; t < KV_MAX_TIERS; t++) ih_free(&e->t[t].heap);
    free(e->info); free(e->hpos); free(e->oprev); free(e->onext); free(e->spages); free(e->mark64); free(e->pf_list);
    policy_free(&self->pol, e->nt);
    Prefetcher *F = &self->pre;
    free(F->mark); free(F->cur); free(F->nxt);
    if (F->sb) { for (int64_t i = 0; i < e->n_pages; i++) { free(F->sb[i]); free(F->sc[i]); free(F->ss[i]); } }
    free(F->sb); free(F->sc); free(F->ss); free(F->sn); free(F->scap); hm_free(&F->pair);
    Obs *o = &self->obs;
    free(o->rprev); free(o->rnext); free(o->slots); free(o->slot_of); free(o->mark); free(o->buf); free(o->ring); free(o->refetch1);
    for (int i = 0; i < self->nbufs; i++) PyBuffer_Release(&self->bufs[i]);
    for (int i = 0; i < self->nchunk; i++) PyBuffer_Release(&self->chunk[i]);
    Py_XDECREF(self->refs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void *zalloc(int64_t n, size_t item) { return calloc((size_t)(n > 0 ? n : 1), item); }
static int32_t *nil32(int64_t n) {
    int32_t *a = malloc((size_t)(n > 0 ? n : 1) * 4);
    if (a) for (int64_t i = 0; i < n; i++) a[i] = NIL;
    return a;
}

/* The policy record of an engine (a decode engine, or one tier's view in serving mode): the keys
 * that order each tier's victims and the policy's own structures. ``pfpar``/``pipar``: the
 * parameters packed by the policy's ``compiled_args``. Returns -1 with a Python error set. */
static int policy_init(Engine *e, Policy *P, int policy_id, const double *pfpar, const int64_t *pipar, int lower_lru) {
    int64_t n = e->n_pages, n_seqs = e->n_seqs;
    int nt = e->nt;
    memset(P, 0, sizeof *P);
    P->id = policy_id;
    e->pol = P;
    memcpy(P->par, pfpar, sizeof P->par);
    memcpy(P->ipar, pipar, sizeof P->ipar);
    P->plan_victim = P->ghost_hit = NIL;
    P->hand = NIL;
    P->free_group = NIL;
    int own0 = 0, lower = K_ARRIVAL;  /* tier-0 key and the lower tiers' key under lower_policy="same" */
    switch (policy_id) {
    case P_NONE: break;
    case P_LRU: own0 = K_OWN; lower = K_POLICY; break;
    case P_FIFO: case P_CLOCK: case P_SIEVE: case P_ARC: case P_S3FIFO: own0 = K_OWN; lower = K_LAST; break;
    case P_LFU: case P_MRU: own0 = K_POLICY; lower = K_LAST; break;
    case P_HEAVY: case P_PREDICTIVE: case P_WINDOWED: case P_BELADY: case P_GDSF: own0 = K_POLICY; lower = K_POLICY; break;
    case P_COSTAWARE: case P_REGRET: case P_BELADY_SIZE: case P_H2O: case P_STREAMING: case P_PY: own0 = K_OWN; lower = K_OWN; break;
    /* serving-only policies (policy_serving.c): they never run in a decode engine's lower tiers */
    case P_VLLM_LRU: case P_RADIX_LRU: case P_HITS_PER_TOKEN: own0 = K_POLICY; lower = K_LAST; break;
    case P_VLLM_ARC: case P_LMCACHE_LRU: case P_SESSION: own0 = K_OWN; lower = K_LAST; break;
    default: PyErr_Format(PyExc_ValueError, "engine: unknown policy id %d", policy_id); return -1;
    }
    e->t[0].key = own0;
    for (int t = 1; t < nt; t++) e->t[t].key = lower_lru ? K_ARRIVAL : lower;
    int need_lists = policy_id == P_LRU || policy_id == P_FIFO || policy_id == P_CLOCK || policy_id == P_SIEVE
                     || policy_id == P_ARC || policy_id == P_S3FIFO || policy_id == P_VLLM_ARC
                     || policy_id == P_LMCACHE_LRU;
    for (int i = 0; i < 4; i++) ls_init(&P->L[i]);
    ls_init(&P->ghost);
    if (need_lists) {
        P->prev = nil32(n); P->next = nil32(n); P->where = zalloc(n, 1);
        if (!P->prev || !P->next || !P->where) { PyErr_NoMemory(); return -1; }
    }
    int64_t cap0 = e->t[0].cap;
    if (cap0 == INT64_MAX) { cap0 = 0; for (int64_t i = 0; i < n; i++) cap0 += e->info[i].size; }
    switch (policy_id) {
    case P_LFU: case P_CLOCK: case P_SIEVE:
        P->cnt = zalloc(n, 8); P->aux = zalloc(n, 8);
        if (!P->cnt || !P->aux) { PyErr_NoMemory(); return -1; }
        break;
    case P_ARC: case P_VLLM_ARC:
        P->cap = cap0;
        break;
    case P_S3FIFO: {
        P->cnt = zalloc(n, 8); P->in_ghost = zalloc(n, 1); P->gprev = nil32(n); P->gnext = nil32(n);
        if (!P->cnt || !P->in_ghost || !P->gprev || !P->gnext) { PyErr_NoMemory(); return -1; }
        /* queue shares in whole units (the gcd of page sizes), so results do not depend on page size */
        int64_t unit = pipar[1] > 0 ? pipar[1] : 1, units = cap0 / unit;
        P->small_cap = (int64_t)((double)units * pfpar[0]) * unit;
        P->main_cap = cap0 - P->small_cap;
        P->ghost_cap = (int64_t)((double)units * pfpar[1]) * unit;
        break;
    }
    case P_WINDOWED:
        P->cnt = zalloc(n, 8);
        P->ring_cap = pipar[0] + 1;
        P->ring = malloc((size_t)P->ring_cap * 4);
        if (!P->cnt || !P->ring) { PyErr_NoMemory(); return -1; }
        break;
    case P_GDSF: case P_HITS_PER_TOKEN:
        P->cnt = zalloc(n, 8); P->val = zalloc(n, 8);
        if (!P->cnt || !P->val) { PyErr_NoMemory(); return -1; }
        break;
    case P_COSTAWARE: case P_REGRET:
        if (pf_init(&P->pf, n) < 0) { PyErr_NoMemory(); return -1; }
        P->page_group = nil32(n);
        P->kib = malloc((size_t)(n ? n : 1) * 8);
        P->val = zalloc(n, 8);
        P->aux = malloc((size_t)(n ? n : 1) * 8);
        if (!P->page_group || !P->kib || !P->val || !P->aux) { PyErr_NoMemory(); return -1; }
        for (int64_t i = 0; i < n; i++) { P->kib[i] = (double)e->info[i].size / 1024.0; P->aux[i] = -1; }
        break;
    case P_BELADY: case P_BELADY_SIZE:
        if (!e->next_pos) { PyErr_SetString(PyExc_ValueError, "engine: an oracle policy needs the future"); return -1; }
        P->nextu = malloc((size_t)(n ? n : 1) * 8);
        if (!P->nextu) { PyErr_NoMemory(); return -1; }
        memcpy(P->nextu, e->first_pos, (size_t)n * 8);
        if (policy_id == P_BELADY_SIZE) {
            if (pf_init(&P->pf, n) < 0) { PyErr_NoMemory(); return -1; }
            P->sclass = malloc((size_t)(n ? n : 1) * 4);
            if (!P->sclass) { PyErr_NoMemory(); return -1; }
            /* size classes: distinct sizes, numbered in order of first appearance */
            HMap m; if (hm_init(&m, 16) < 0) { PyErr_NoMemory(); return -1; }
            int64_t maxs = 1;
            for (int64_t i = 0; i < n; i++) {
                int64_t *c = hm_find(&m, e->info[i].size);
                if (!c) { hm_put(&m, e->info[i].size, P->n_sclass); P->sclass[i] = (int32_t)P->n_sclass++; }
                else P->sclass[i] = (int32_t)*c;
                if (e->info[i].size > maxs) maxs = e->info[i].size;
            }
            hm_free(&m);
            P->sroot = nil32((int64_t)nt * (P->n_sclass ? P->n_sclass : 1));
            if (!P->sroot) { PyErr_NoMemory(); return -1; }
            P->never = (double)(e->n_future + 1) * (double)(n ? maxs : 1);
        }
        break;
    case P_H2O: case P_STREAMING:
        if (pf_init(&P->pf, n) < 0) { PyErr_NoMemory(); return -1; }
        P->length = zalloc(n_seqs, 8); P->cls = zalloc(n, 1);
        P->sd_root = nil32((int64_t)nt * 3 * n_seqs); P->sd_pos = nil32((int64_t)nt * 3 * n_seqs);
        if (!P->length || !P->cls || !P->sd_root || !P->sd_pos) { PyErr_NoMemory(); return -1; }
        break;
    case P_RADIX_LRU:
        P->cnt = zalloc(n, 8);
        if (!P->cnt) { PyErr_NoMemory(); return -1; }
        break;
    case P_VLLM_LRU:
        P->rank = zalloc(n, 8);
        if (!P->rank) { PyErr_NoMemory(); return -1; }
        break;
    case P_SESSION:
        if (pf_init(&P->pf, n) < 0) { PyErr_NoMemory(); return -1; }
        P->bsess = nil32(n); P->sattached = zalloc(n, 1);
        if (!P->bsess || !P->sattached) { PyErr_NoMemory(); return -1; }
        break;
    default: break;
    }
    return 0;
}

/* Engine(**spec): see kvgym/sim/compiled.py for every key. */
static int Engine_init(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {
        "size", "fp16", "layer", "seq", "tok_start", "tok_end", "decode", "state", "tiers", "links",
        "n_layers", "n_seqs", "backing", "serial", "create", "prefetch_on", "max_prefetch", "lower_lru",
        "regret_horizon", "floor_us", "attn_bytes_per_us", "hit_base_us", "track_order", "external",
        "pf_external", "policy", "pfpar", "pipar", "hooks", "chooser", "prefetcher", "fipar", "succ",
        "trace_page", "next_pos", "first_pos", "ctxbuf", "pf_py", "cands", "propose", NULL};
    PyObject *o_size, *o_fp16, *o_layer, *o_seq, *o_ts, *o_te, *o_dec, *o_state, *o_tiers, *o_links;
    long long n_layers, n_seqs;
    int backing, serial, create, prefetch_on, max_prefetch, lower_lru, regret_horizon, track_order, external,
        pf_external, policy_id, pre_id;
    double floor_us, attn, hit_base;
    PyObject *o_pfpar, *o_pipar, *o_hooks, *o_chooser, *o_fipar, *o_succ, *o_tpage, *o_npos, *o_fpos, *o_ctx, *o_pfpy, *o_cands, *o_propose;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOOLLiiiiiiidddiiiiOOOOiOOOOOOOOO", kwlist,
            &o_size, &o_fp16, &o_layer, &o_seq, &o_ts, &o_te, &o_dec, &o_state, &o_tiers, &o_links,
            &n_layers, &n_seqs, &backing, &serial, &create, &prefetch_on, &max_prefetch, &lower_lru,
            &regret_horizon, &floor_us, &attn, &hit_base, &track_order, &external, &pf_external,
            &policy_id, &o_pfpar, &o_pipar, &o_hooks, &o_chooser, &pre_id, &o_fipar, &o_succ, &o_tpage,
            &o_npos, &o_fpos, &o_ctx, &o_pfpy, &o_cands, &o_propose))
        return -1;
    Engine *e = &self->e;
    memset(e, 0, sizeof *e);
    self->refs = PyList_New(0);
    if (!self->refs) return -1;
    Py_buffer probe;
    if (PyObject_GetBuffer(o_size, &probe, PyBUF_SIMPLE) < 0) return -1;
    int64_t n = probe.len / 8;
    PyBuffer_Release(&probe);
    e->n_pages = n;
    const int64_t *size, *fp16;
    const int32_t *layer, *seq;
    const double *decode;
    REQ(size, getbuf(self, o_size, 8, n, 0, "size"));
    REQ(fp16, getbuf(self, o_fp16, 8, n, 0, "fp16"));
    REQ(layer, getbuf(self, o_layer, 4, n, 0, "layer"));
    REQ(seq, getbuf(self, o_seq, 4, n, 0, "seq"));
    REQ(e->tok_start, getbuf(self, o_ts, 8, n, 0, "tok_start"));
    REQ(e->tok_end, getbuf(self, o_te, 8, n, 0, "tok_end"));
    REQ(decode, getbuf(self, o_dec, 8, n, 0, "decode"));
    e->info = malloc((size_t)(n ? n : 1) * sizeof(PageInfo));
    if (!e->info) { PyErr_NoMemory(); return -1; }
    for (int64_t i = 0; i < n; i++) {
        e->info[i] = (PageInfo){size[i], fp16[i], decode[i], layer[i], seq[i]};
    }
    REQ(e->pg, getbuf(self, o_state, sizeof(PageState), n, 1, "state"));
    if (PyObject_GetBuffer(o_tiers, &probe, PyBUF_SIMPLE) < 0) return -1;
    int nt = (int)(probe.len / (Py_ssize_t)sizeof(TierSpec));
    PyBuffer_Release(&probe);
    if (nt < 1 || nt > KV_MAX_TIERS) { PyErr_Format(PyExc_ValueError, "engine: %d tiers (1..%d)", nt, KV_MAX_TIERS); return -1; }
    const TierSpec *ts;
    REQ(ts, getbuf(self, o_tiers, sizeof(TierSpec), nt, 0, "tiers"));
    const Link *links;
    REQ(links, getbuf(self, o_links, sizeof(Link), (Py_ssize_t)nt * nt, 0, "links"));
    e->nt = nt;
    for (int t = 0; t < nt; t++) {
        e->t[t].cap = ts[t].cap;
        e->t[t].channels = ts[t].channels;
        if (ts[t].channels < 1 || ts[t].channels > KV_MAX_CH) { PyErr_Format(PyExc_ValueError, "engine: tier %d channels", t); return -1; }
        e->t[t].key = t == 0 ? K_NONE : K_ARRIVAL;
        ls_init(&e->t[t].order);
        for (int u = 0; u < nt; u++) e->link[t][u] = links[t * nt + u];
    }
    e->n_layers = n_layers; e->n_seqs = n_seqs;
    if (backing < 1 || backing >= nt) { PyErr_Format(PyExc_ValueError, "engine: backing tier %d must be in 1..%d", backing, nt - 1); return -1; }
    e->backing = backing; e->serial = serial; e->create = create; e->prefetch_on = prefetch_on;
    e->max_prefetch = max_prefetch; e->lower_lru = lower_lru; e->regret_horizon = regret_horizon;
    e->floor_us = floor_us; e->attn_bytes_per_us = attn; e->hit_base_us = hit_base;
    e->track_order = track_order; e->external = external; e->pf_external = pf_external;
    e->hpos = nil32(n);
    e->mark64 = malloc((size_t)(n_layers + n_seqs + 1) * 8);
    e->spages = malloc((size_t)(n > 0 ? n : 1) * 4);
    if (!e->hpos || !e->mark64 || !e->spages) { PyErr_NoMemory(); return -1; }
    for (int64_t i = 0; i < n_layers + n_seqs + 1; i++) e->mark64[i] = -1;
    e->oprev = nil32(n); e->onext = nil32(n);
    if (!e->oprev || !e->onext) { PyErr_NoMemory(); return -1; }
    if (o_ctx != Py_None) REQ(e->ctxbuf, getbuf(self, o_ctx, 8, 4, 1, "ctxbuf"));
    if (o_npos != Py_None) {
        Py_buffer pb;
        if (PyObject_GetBuffer(o_npos, &pb, PyBUF_SIMPLE) < 0) return -1;
        e->n_future = pb.len / 8;
        PyBuffer_Release(&pb);
        REQ(e->next_pos, getbuf(self, o_npos, 8, e->n_future, 0, "next_pos"));
        REQ(e->first_pos, getbuf(self, o_fpos, 8, n, 0, "first_pos"));
    }
    e->stamp = 0;
    e->phase = PH_STEP;

    /* ---- the policy ---- */
    Policy *P = &self->pol;
    double *pfpar; int64_t *pipar;
    REQ(pfpar, getbuf(self, o_pfpar, 8, 8, 0, "pfpar"));
    REQ(pipar, getbuf(self, o_pipar, 8, 4, 0, "pipar"));
    if (policy_init(e, P, policy_id, pfpar, pipar, lower_lru) < 0) return -1;
    if (o_hooks != Py_None) {
        if (!PyTuple_Check(o_hooks) || PyTuple_GET_SIZE(o_hooks) != 2) { PyErr_SetString(PyExc_ValueError, "engine: hooks must be a 2-tuple"); return -1; }
        for (int i = 0; i < 2; i++) {
            PyObject *h = PyTuple_GET_ITEM(o_hooks, i);
            if (h != Py_None) { P->hooks[i] = h; if (PyList_Append(self->refs, h) < 0) return -1; }
        }
    }
    if (o_chooser != Py_None) { P->chooser = o_chooser; if (PyList_Append(self->refs, o_chooser) < 0) return -1; }
    if (policy_id == P_PY && !P->chooser) { PyErr_SetString(PyExc_ValueError, "engine: a Python policy needs a chooser"); return -1; }
    if (policy_id == P_PY && !track_order) { PyErr_SetString(PyExc_ValueError, "engine: a Python policy needs track_order"); return -1; }
    if (policy_id == P_PY) {
        REQ(P->cand_buf, getbuf(self, o_cands, 8, n, 1, "cands"));
        P->cand_cap = n;
    }

    /* ---- the prefetcher ---- */
    Prefetcher *F = &self->pre;
    memset(F, 0, sizeof *F);
    F->id = pre_id;
    F->prev = -1;
    int64_t *fipar;
    REQ(fipar, getbuf(self, o_fipar, 8, 4, 0, "fipar"));
    memcpy(F->ipar, fipar, sizeof F->ipar);
    if (pre_id != F_NONE) {
        e->pre = F;
        F->mark = malloc((size_t)(n ? n : 1) * 8);
        if (!F->mark) { PyErr_NoMemory(); return -1; }
        for (int64_t i = 0; i < n; i++) F->mark[i] = -1;
    }
    switch (pre_id) {
    case F_NONE: break;
    case F_SEQUENTIAL: REQ(F->succ, getbuf(self, o_succ, 8, n, 0, "succ")); break;
    case F_MARKOV:
        F->sb = calloc((size_t)(n ? n : 1), sizeof(int32_t *)); F->sc = calloc((size_t)(n ? n : 1), sizeof(int64_t *));
        F->ss = calloc((size_t)(n ? n : 1), sizeof(int64_t *)); F->sn = zalloc(n, 8); F->scap = zalloc(n, 8);
        if (!F->sb || !F->sc || !F->ss || !F->sn || !F->scap || hm_init(&F->pair, 1024) < 0) { PyErr_NoMemory(); return -1; }
        break;
    case F_LOOKAHEAD: {
        Py_buffer pb;
        if (PyObject_GetBuffer(o_tpage, &pb, PyBUF_SIMPLE) < 0) return -1;
        F->trace_n = pb.len / 8;
        PyBuffer_Release(&pb);
        REQ(F->trace_page, getbuf(self, o_tpage, 8, F->trace_n, 0, "trace_page"));
        break;
    }
    case F_PY:
        if (o_propose == Py_None) { PyErr_SetString(PyExc_ValueError, "engine: a Python prefetcher needs propose"); return -1; }
        F->propose = o_propose;
        if (PyList_Append(self->refs, o_propose) < 0) return -1;
        break;
    default: PyErr_Format(PyExc_ValueError, "engine: unknown prefetcher id %d", pre_id); return -1;
    }
    if (pre_id == F_PY) {
        REQ(self->pf_py, getbuf(self, o_pfpy, 8, max_prefetch > 0 ? max_prefetch : 1, 1, "pf_py"));
        F->py_out = self->pf_py;
    }
    return 0;
}

static PyObject *status_result(EngineObject *self, int st);

/* enable_obs(k, sample, seed, obs_c, obs_g, mask, sel, view, fview, next_block, occ, occ_start,
 *            max_size, max_layer): observations for the envs (call before the first feed).
 * view (int64[8]) and fview (float64[1]) are refreshed after every call that advances the engine:
 * view = [n_sel, n_eligible, step, pos, belady_shown, accesses, misses, bytes_moved], fview = [stall_us]. */
static PyObject *Engine_enable_obs(EngineObject *self, PyObject *args) {
    long long k, sample;
    unsigned long long seed;
    PyObject *o_c, *o_g, *o_mask, *o_sel, *o_view, *o_fview, *o_nb, *o_occ, *o_occs;
    double max_size, max_layer;
    if (!PyArg_ParseTuple(args, "LLKOOOOOOOOOdd", &k, &sample, &seed, &o_c, &o_g, &o_mask, &o_sel, &o_view,
                          &o_fview, &o_nb, &o_occ, &o_occs, &max_size, &max_layer))
        return NULL;
    Engine *e = &self->e;
    Obs *o = &self->obs;
    if (e->obs) { PyErr_SetString(PyExc_RuntimeError, "engine: observations already enabled"); return NULL; }
    memset(o, 0, sizeof *o);
    int64_t n = e->n_pages, g = 2 * e->nt + 5;
    o->k = k; o->sample = sample; o->seed = seed; o->f = N_FEATURES; o->g = g;
    if (!(o->obs_c = getbuf(self, o_c, 4, k * N_FEATURES, 1, "obs_c"))) return NULL;
    if (!(o->obs_g = getbuf(self, o_g, 4, g, 1, "obs_g"))) return NULL;
    if (!(o->mask = getbuf(self, o_mask, 1, k, 1, "mask"))) return NULL;
    if (!(o->sel = getbuf(self, o_sel, 8, k, 1, "sel"))) return NULL;
    if (!(self->view = getbuf(self, o_view, 8, 8, 1, "view"))) return NULL;
    if (!(self->fview = getbuf(self, o_fview, 8, 1, 1, "fview"))) return NULL;
    if (!(o->next_block = getbuf(self, o_nb, 8, n, 0, "next_block"))) return NULL;
    if (o_occ != Py_None) {
        Py_buffer pb;
        if (PyObject_GetBuffer(o_occ, &pb, PyBUF_SIMPLE) < 0) return NULL;
        int64_t no = pb.len / 8;
        PyBuffer_Release(&pb);
        if (!(o->occ = getbuf(self, o_occ, 8, no, 0, "occ"))) return NULL;
        if (!(o->occ_start = getbuf(self, o_occs, 8, n + 1, 0, "occ_start"))) return NULL;
        o->diag = 1;
    }
    o->max_size = max_size; o->max_layer = max_layer;
    if (e->nt > 1) {  /* the same value refetch_us computes, once per page */
        o->refetch1 = malloc((size_t)(n ? n : 1) * 8);
        if (!o->refetch1) return PyErr_NoMemory();
        for (int64_t i = 0; i < n; i++) o->refetch1[i] = link_time(&e->link[1][0], e->info[i].size, 0) + e->info[i].decode;
    }
    o->rprev = nil32(n); o->rnext = nil32(n); o->slots = malloc((size_t)(n ? n : 1) * 4);
    o->slot_of = nil32(n); o->mark = malloc((size_t)(n ? n : 1) * 8);
    o->ring_n = 4 * k;
    o->ring = malloc((size_t)o->ring_n * 8);
    if (!o->rprev || !o->rnext || !o->slots || !o->slot_of || !o->mark || !o->ring) return PyErr_NoMemory();
    for (int64_t i = 0; i < n; i++) o->mark[i] = -1;
    o->rhead = o->rtail = o->rcursor = NIL;
    o->rcstamp = -1;
    o->belady_shown = -1;
    e->obs = o;
    Py_RETURN_NONE;
}

static void refresh_view(EngineObject *self);
static int act_slot(EngineObject *self, int64_t a);
static double take_reward(EngineObject *self, int kind);

static PyObject *Engine_act_slot(EngineObject *self, PyObject *args) {
    long long a;
    if (!PyArg_ParseTuple(args, "L", &a)) return NULL;
    if (!self->view || (self->status != ST_EVICT && self->status != ST_PREFETCH) || a < 0 || a >= self->obs.k
        || !self->obs.mask[a]) {
        PyErr_Format(PyExc_ValueError, "engine: action %lld is not valid for the pending decision", a);
        return NULL;
    }
    return status_result(self, act_slot(self, a));
}

static PyObject *Engine_take_reward(EngineObject *self, PyObject *args) {
    int kind;
    if (!PyArg_ParseTuple(args, "i", &kind)) return NULL;
    if (!self->view || kind < 0 || kind > 2) { PyErr_SetString(PyExc_ValueError, "engine: no observations or bad reward kind"); return NULL; }
    return PyFloat_FromDouble(take_reward(self, kind));
}

static void refresh_view(EngineObject *self) {
    if (!self->view) return;
    Engine *e = &self->e;
    Obs *o = &self->obs;
    int64_t bytes = 0;
    for (int t = 0; t < e->nt; t++)
        bytes += e->m.link_bytes_demand[t] + e->m.link_bytes_prefetch[t] + e->m.link_bytes_demotion[t];
    int64_t *v = self->view;
    v[0] = o->n_sel; v[1] = o->n_elig; v[2] = e->s; v[3] = e->cur_obs; v[4] = o->belady_shown;
    v[5] = e->m.accesses; v[6] = e->m.misses; v[7] = bytes;
    self->fview[0] = e->serial ? e->clk.serial_total : e->m.stall_us;
}

/* feed(step, page, weight, pos_base, more) -> status: run a chunk (compiled choosers). */
static PyObject *Engine_feed(EngineObject *self, PyObject *args) {
    PyObject *o_step, *o_page, *o_w;
    long long pos_base;
    int more;
    if (!PyArg_ParseTuple(args, "OOOLp", &o_step, &o_page, &o_w, &pos_base, &more)) return NULL;
    Engine *e = &self->e;
    for (int i = 0; i < self->nchunk; i++) PyBuffer_Release(&self->chunk[i]);
    self->nchunk = 0;
    if (PyObject_GetBuffer(o_step, &self->chunk[0], PyBUF_C_CONTIGUOUS) < 0) return NULL;
    self->nchunk = 1;
    if (PyObject_GetBuffer(o_page, &self->chunk[1], PyBUF_C_CONTIGUOUS) < 0) return NULL;
    self->nchunk = 2;
    int64_t n = self->chunk[0].len / 8;
    if (self->chunk[0].itemsize != 8 || self->chunk[1].itemsize != 8 || self->chunk[1].len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "engine: step and page must be int64 arrays of one length");
        return NULL;
    }
    e->weight = NULL;
    if (o_w != Py_None) {
        if (PyObject_GetBuffer(o_w, &self->chunk[2], PyBUF_C_CONTIGUOUS) < 0) return NULL;
        self->nchunk = 3;
        if (self->chunk[2].itemsize != 4 || self->chunk[2].len != n * 4) {
            PyErr_SetString(PyExc_ValueError, "engine: weight must be a float32 array as long as page");
            return NULL;
        }
        e->weight = self->chunk[2].buf;
    }
    e->step = self->chunk[0].buf;
    e->page = self->chunk[1].buf;
    e->n_acc = n;
    e->pos_base = pos_base;
    e->more = more;
    e->cur = 0;
    if (e->phase != PH_STEP && e->phase != PH_DONE) { PyErr_SetString(PyExc_RuntimeError, "engine: feed in the middle of a step"); return NULL; }
    return status_result(self, advance(e));
}

static PyObject *status_result(EngineObject *self, int st) {
    Engine *e = &self->e;
    refresh_view(self);
    self->status = st;
    if (st == ST_ERROR && e->err == E_INTERNAL && e->err_tier == -2 && PyErr_Occurred()) return NULL;
    if (st == ST_ERROR && e->err == E_INTERNAL && !PyErr_Occurred() && e->err_tier != -2) {
        /* allocation failure or a broken invariant */
    }
    if (st == ST_NEED) return Py_BuildValue("(iL)", 3, (long long)e->cur);
    return Py_BuildValue("(iL)", st, (long long)e->cur);
}

/* Apply action slot a to the pending decision (the mask was checked): an eviction victim, or for a
 * prefetch decision slot 0 = none and slot i = sel[i - 1]. Returns the new status. */
static int act_slot(EngineObject *self, int64_t a) {
    Engine *e = &self->e;
    Obs *o = &self->obs;
    o->decisions++;
    int st = self->status == ST_EVICT ? act_evict(e, (int32_t)o->sel[a]) : act_prefetch(e, a > 0 ? (int32_t)o->sel[a - 1] : -1);
    refresh_view(self);
    self->status = st;
    return st;
}

/* The reward of the last step: minus the growth of stall µs (kind 0), misses (1) or bytes (2). */
static double take_reward(EngineObject *self, int kind) {
    double now[3] = {self->fview[0], (double)self->view[6], (double)self->view[7]};
    double r = -(now[kind] - self->prev[kind]);
    memcpy(self->prev, now, sizeof now);
    return r;
}

/* step_batch(engines, actions, skip, rewards, done, reward_kind, scale): one action per engine (an
 * env of a vector env), each run to its next decision; rewards and done written per engine. Engines
 * marked in skip are left alone (their episode is being reset). */
static PyObject *mod_step_batch(PyObject *m, PyObject *args);

static PyObject *Engine_act(EngineObject *self, PyObject *args) {
    long long v;
    int prefetch;
    if (!PyArg_ParseTuple(args, "Lp", &v, &prefetch)) return NULL;
    Engine *e = &self->e;
    if (e->obs) self->obs.decisions++;
    int st = prefetch ? act_prefetch(e, (int32_t)v) : act_evict(e, (int32_t)v);
    return status_result(self, st);
}

static PyObject *Engine_choose(EngineObject *self, PyObject *Py_UNUSED(a)) {
    /* The attached policy's victim for the pending tier-0 decision (no side effect on the run). */
    Engine *e = &self->e;
    if (e->phase != PH_ROOM || self->pol.id == P_NONE) { PyErr_SetString(PyExc_RuntimeError, "engine: no policy decision pending"); return NULL; }
    int32_t v = e->t[0].key == K_OWN ? pol_choose(e, 0) : (e->t[0].heap.n ? e->t[0].heap.p[0] : NIL);
    if (e->err && e->err_tier == -2 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(v);
}

/* residents(t, out, unpinned) -> n: tier t's residents in insertion order (tier 0 needs track_order). */
static PyObject *Engine_residents(EngineObject *self, PyObject *args) {
    int t, unpinned;
    PyObject *o_out;
    if (!PyArg_ParseTuple(args, "iOp", &t, &o_out, &unpinned)) return NULL;
    Engine *e = &self->e;
    if (t < 0 || t >= e->nt || (t == 0 && !e->track_order)) { PyErr_SetString(PyExc_ValueError, "engine: residents of that tier are not tracked"); return NULL; }
    Py_buffer b;
    if (PyObject_GetBuffer(o_out, &b, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return NULL;
    int64_t *out = b.buf, cap = b.len / 8, n = 0;
    for (int32_t q = e->t[t].order.head; q != NIL && n < cap; q = e->onext[q])
        if (!unpinned || e->pg[q].pin != e->stamp) out[n++] = q;
    PyBuffer_Release(&b);
    return PyLong_FromLongLong((long long)n);
}

static PyObject *Engine_used(EngineObject *self, PyObject *Py_UNUSED(a)) {
    Engine *e = &self->e;
    PyObject *l = PyList_New(e->nt);
    if (!l) return NULL;
    for (int t = 0; t < e->nt; t++) PyList_SET_ITEM(l, t, PyLong_FromLongLong((long long)e->t[t].used));
    return l;
}

static PyObject *Engine_error(EngineObject *self, PyObject *Py_UNUSED(a)) {
    Engine *e = &self->e;
    return Py_BuildValue("(iiLL)", e->err, e->err_tier, (long long)e->err_page, (long long)e->err_step);
}

static PyObject *Engine_counters(EngineObject *self, PyObject *Py_UNUSED(a)) {
    Engine *e = &self->e;
    Counters *m = &e->m;
    int nt = e->nt;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
#define SETI(name, v) do { PyObject *x_ = PyLong_FromLongLong((long long)(v)); if (!x_ || PyDict_SetItemString(d, name, x_) < 0) { Py_XDECREF(x_); Py_DECREF(d); return NULL; } Py_DECREF(x_); } while (0)
#define SETF(name, v) do { PyObject *x_ = PyFloat_FromDouble(v); if (!x_ || PyDict_SetItemString(d, name, x_) < 0) { Py_XDECREF(x_); Py_DECREF(d); return NULL; } Py_DECREF(x_); } while (0)
#define SETL(name, arr) do { PyObject *l_ = PyList_New(nt); if (!l_) { Py_DECREF(d); return NULL; } for (int t_ = 0; t_ < nt; t_++) PyList_SET_ITEM(l_, t_, PyLong_FromLongLong((long long)(arr)[t_])); if (PyDict_SetItemString(d, name, l_) < 0) { Py_DECREF(l_); Py_DECREF(d); return NULL; } Py_DECREF(l_); } while (0)
    SETI("accesses", m->accesses); SETI("hits", m->hits); SETI("misses", m->misses);
    SETI("full_misses", m->full_misses); SETI("first_touch_misses", m->first_touch_misses);
    SETL("tier_hits", m->tier_hits); SETL("evictions", m->evictions);
    SETL("link_bytes_demand", m->link_bytes_demand); SETL("link_bytes_prefetch", m->link_bytes_prefetch);
    SETL("link_bytes_demotion", m->link_bytes_demotion);
    SETI("prefetch_issued", m->prefetch_issued); SETI("prefetch_useful", m->prefetch_useful);
    SETI("prefetch_late", m->prefetch_late); SETI("prefetch_wasted", m->prefetch_wasted);
    SETF("stall_us", m->stall_us); SETF("compute_us", m->compute_us); SETF("total_time_us", m->total_time_us);
    SETL("peak_bytes", m->peak_bytes);
    SETI("steps", m->steps); SETI("tokens", m->tokens);
    return d;
}

static PyMethodDef Engine_methods[] = {
    {"feed", (PyCFunction)Engine_feed, METH_VARARGS, "feed(step, page, weight, pos_base, more) -> (status, consumed)"},
    {"enable_obs", (PyCFunction)Engine_enable_obs, METH_VARARGS, "observations for the envs"},
    {"act_slot", (PyCFunction)Engine_act_slot, METH_VARARGS, "act_slot(a) -> (status, pos): answer the pending decision with slot a"},
    {"take_reward", (PyCFunction)Engine_take_reward, METH_VARARGS, "take_reward(kind) -> minus the growth since the last call"},
    {"act", (PyCFunction)Engine_act, METH_VARARGS, "act(page, prefetch) -> (status, pos)"},
    {"choose", (PyCFunction)Engine_choose, METH_NOARGS, "the attached policy's victim for the pending decision"},
    {"error", (PyCFunction)Engine_error, METH_NOARGS, "(code, tier, page, step) of the error"},
    {"residents", (PyCFunction)Engine_residents, METH_VARARGS, "residents(t, out, unpinned) -> n"},
    {"used", (PyCFunction)Engine_used, METH_NOARGS, "bytes used per tier"},
    {"counters", (PyCFunction)Engine_counters, METH_NOARGS, "metrics as a dict"},
    {NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kvgym.sim._engine.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The compiled engine (see kvgym/sim/compiled.py).",
    .tp_methods = Engine_methods,
    .tp_init = (initproc)Engine_init,
    .tp_new = PyType_GenericNew,
};

/* Layouts of the record types, for matching numpy dtypes. */
static PyObject *fields(void) {
#define F(T, name, code) Py_BuildValue("(snsn)", #name, (Py_ssize_t)offsetof(T, name), code, (Py_ssize_t)sizeof(((T *)0)->name))
    PyObject *page = Py_BuildValue("[NNNNNNNNNNNNNN]",
        F(PageState, last_access, "i8"), F(PageState, freq, "i8"), F(PageState, weight_sum, "f8"),
        F(PageState, insert_step, "i8"), F(PageState, evict_step, "i8"), F(PageState, regret, "i8"),
        F(PageState, ins, "i8"), F(PageState, ready, "f8"), F(PageState, pin, "i8"), F(PageState, used, "i8"), F(PageState, tier, "i1"),
        F(PageState, seen, "u1"), F(PageState, pending, "u1"), F(PageState, mark, "u1"));
    PyObject *link = Py_BuildValue("[NNNNNNNN]",
        F(Link, curve, "i8"), F(Link, alpha, "f8"), F(Link, beta, "f8"), F(Link, issue_us, "f8"), F(Link, wire, "f8"),
        F(Link, npts, "i8"), Py_BuildValue("(sns(n))", "x", (Py_ssize_t)offsetof(Link, x), "f8", (Py_ssize_t)KV_MAX_CURVE),
        Py_BuildValue("(sns(n))", "y", (Py_ssize_t)offsetof(Link, y), "f8", (Py_ssize_t)KV_MAX_CURVE));
    PyObject *tier = Py_BuildValue("[NN]", F(TierSpec, cap, "i8"), F(TierSpec, channels, "i8"));
#undef F
    return Py_BuildValue("{sNsnsNsnsNsn}", "page", page, "page_size", (Py_ssize_t)sizeof(PageState),
                         "link", link, "link_size", (Py_ssize_t)sizeof(Link), "tier", tier,
                         "tier_size", (Py_ssize_t)sizeof(TierSpec));
}

static PyObject *mod_layouts(PyObject *m, PyObject *Py_UNUSED(a)) { (void)m; return fields(); }

static PyObject *mod_step_batch(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *engines;
    Py_buffer ba, bs, br, bd;
    int kind;
    double scale;
    if (!PyArg_ParseTuple(args, "O!y*y*w*w*id", &PyTuple_Type, &engines, &ba, &bs, &br, &bd, &kind, &scale)) return NULL;
    PyObject *res = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(engines);
    if (ba.len != n * 8 || bs.len != n || br.len != n * 8 || bd.len != n || kind < 0 || kind > 2) {
        PyErr_SetString(PyExc_ValueError, "step_batch: actions int64[N], skip/done uint8[N], rewards float64[N]");
        goto done;
    }
    const int64_t *act = ba.buf;
    const uint8_t *skip = bs.buf;
    double *rew = br.buf;
    uint8_t *dn = bd.buf;
    for (Py_ssize_t i = 0; i < n; i++) {  /* check every action before acting on any */
        EngineObject *x = (EngineObject *)PyTuple_GET_ITEM(engines, i);
        if (!PyObject_TypeCheck((PyObject *)x, &EngineType) || !x->view) { PyErr_SetString(PyExc_TypeError, "step_batch: engines with observations"); goto done; }
        if (skip[i]) continue;
        int64_t a = act[i];
        if ((x->status != ST_EVICT && x->status != ST_PREFETCH) || a < 0 || a >= x->obs.k || !x->obs.mask[a]) {
            PyErr_Format(PyExc_ValueError, "action %lld of env %zd is invalid for its decision (action_mask %s)",
                         (long long)a, i, x->status == ST_DONE ? "empty: the episode is over" : "has it at 0");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        EngineObject *x = (EngineObject *)PyTuple_GET_ITEM(engines, i);
        if (skip[i]) { rew[i] = 0.0; dn[i] = 0; continue; }
        int st = act_slot(x, act[i]);
        if (st == ST_ERROR) {
            Engine *e = &x->e;
            PyErr_Format(PyExc_RuntimeError, "env %zd: engine error %d (tier %d, page %lld, step %lld)", i, e->err,
                         e->err_tier, (long long)e->err_page, (long long)e->err_step);
            goto done;
        }
        rew[i] = take_reward(x, kind) * scale;
        dn[i] = st == ST_DONE;
    }
    res = Py_None; Py_INCREF(res);
done:
    PyBuffer_Release(&ba); PyBuffer_Release(&bs); PyBuffer_Release(&br); PyBuffer_Release(&bd);
    return res;
}

/* step_bytes(step, page, size, out): out[k] = bytes of the distinct pages of the k-th step (steps are
 * non-decreasing; they are all pinned together). One pass with a mark array. */
static PyObject *mod_step_bytes(PyObject *m, PyObject *args) {
    (void)m;
    Py_buffer bs, bp, bz, bo;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &bs, &bp, &bz, &bo)) return NULL;
    PyObject *res = NULL;
    int64_t n = bs.len / 8, np_ = bz.len / 8, nsteps = bo.len / 8;
    const int64_t *step = bs.buf, *page = bp.buf, *size = bz.buf;
    int64_t *out = bo.buf, *mark = NULL;
    if (bp.len != bs.len) { PyErr_SetString(PyExc_ValueError, "step_bytes: step and page lengths differ"); goto done; }
    mark = malloc((size_t)(np_ ? np_ : 1) * 8);
    if (!mark) { PyErr_NoMemory(); goto done; }
    for (int64_t i = 0; i < np_; i++) mark[i] = -1;
    int64_t i = 0, k = 0;
    while (i < n) {
        if (k >= nsteps) { PyErr_SetString(PyExc_ValueError, "step_bytes: more steps than out holds"); goto done; }
        int64_t s = step[i], bytes = 0, j = i;
        for (; j < n && step[j] == s; j++) {
            int64_t p = page[j];
            if (p < 0 || p >= np_) { PyErr_SetString(PyExc_ValueError, "step_bytes: page id outside the table"); goto done; }
            if (mark[p] != i) { mark[p] = i; bytes += size[p]; }
        }
        out[k++] = bytes;
        i = j;
    }
    res = Py_None; Py_INCREF(res);
done:
    free(mark);
    PyBuffer_Release(&bs); PyBuffer_Release(&bp); PyBuffer_Release(&bz); PyBuffer_Release(&bo);
    return res;
}

/* next_use(page, n_pages) -> (next_pos, first_pos): next_pos[i] = index of the next access to the page
 * of access i (n if none); first_pos[p] = index of p's first access (n if never). One pass backwards. */
static PyObject *mod_next_use(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *o_page, *o_next, *o_first;
    if (!PyArg_ParseTuple(args, "OOO", &o_page, &o_next, &o_first)) return NULL;
    Py_buffer bp, bn, bf;
    if (PyObject_GetBuffer(o_page, &bp, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(o_next, &bn, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) { PyBuffer_Release(&bp); return NULL; }
    if (PyObject_GetBuffer(o_first, &bf, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) { PyBuffer_Release(&bp); PyBuffer_Release(&bn); return NULL; }
    int64_t n = bp.len / 8, np_ = bf.len / 8;
    const int64_t *page = bp.buf;
    int64_t *next = bn.buf, *first = bf.buf;
    int ok = bn.len == bp.len;
    if (ok) {
        for (int64_t p = 0; p < np_; p++) first[p] = n;
        for (int64_t i = n - 1; i >= 0; i--) {
            int64_t p = page[i];
            if (p < 0 || p >= np_) { ok = 0; break; }
            next[i] = first[p];
            first[p] = i;
        }
    }
    PyBuffer_Release(&bp); PyBuffer_Release(&bn); PyBuffer_Release(&bf);
    if (!ok) { PyErr_SetString(PyExc_ValueError, "next_use: page ids outside the table or lengths differ"); return NULL; }
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"layouts", mod_layouts, METH_NOARGS, "record layouts: {'page': [(name, offset, dtype, size)], ...}"},
    {"step_bytes", mod_step_bytes, METH_VARARGS, "step_bytes(step, page, size, out): distinct-page bytes of each step"},
    {"next_use", mod_next_use, METH_VARARGS, "next_use(page, next_pos_out, first_pos_out)"},
    {"step_batch", mod_step_batch, METH_VARARGS, "step_batch(engines, actions, skip, rewards, done, kind, scale)"},
    {NULL}};

/* The serving engine (it uses policy_init, nil32 and policy_free above). */
#include "serving.c"

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_engine", "kvgym's compiled engine", -1, mod_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__engine(void) {
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) { Py_DECREF(&EngineType); Py_DECREF(m); return NULL; }
    if (PyType_Ready(&ServingType) < 0) { Py_DECREF(m); return NULL; }
    Py_INCREF(&ServingType);
    if (PyModule_AddObject(m, "Serving", (PyObject *)&ServingType) < 0) { Py_DECREF(&ServingType); Py_DECREF(m); return NULL; }
    /* policies a serving tier runs compiled: the decode ones (but the oracles) and the serving-only ones */
    PyObject *spol = Py_BuildValue("{sisisisisisisisisisisisisisisisisisisisisisisi}",
        "none", P_NONE, "lru", P_LRU, "fifo", P_FIFO, "lfu", P_LFU, "clock", P_CLOCK, "sieve", P_SIEVE, "arc", P_ARC,
        "s3fifo", P_S3FIFO, "heavy_hitter", P_HEAVY, "predictive", P_PREDICTIVE, "windowed_recency", P_WINDOWED,
        "cost_aware", P_COSTAWARE, "regret_aware", P_REGRET, "cost_aware_tiered", P_GDSF, "h2o", P_H2O,
        "streaming_llm", P_STREAMING, "vllm_lru", P_VLLM_LRU, "vllm_arc", P_VLLM_ARC, "radix_lru", P_RADIX_LRU,
        "lmcache_lru", P_LMCACHE_LRU, "hits_per_token", P_HITS_PER_TOKEN, "session_aware", P_SESSION, "mru", P_MRU);
    PyObject *sadm = Py_BuildValue("{sisisisi}", "always", AD_ALWAYS, "threshold", AD_THRESHOLD, "sketch", AD_SKETCH,
                                   "python", AD_PY);
    if (!spol || !sadm || PyModule_AddObject(m, "SERVING_POLICIES", spol) < 0 || PyModule_AddObject(m, "SERVING_ADMISSIONS", sadm) < 0) {
        Py_XDECREF(spol); Py_XDECREF(sadm); Py_DECREF(m); return NULL;
    }
    PyObject *pol = Py_BuildValue("{sisisisisisisisisisisisisisisisisisisisi}",
        "none", P_NONE, "python", P_PY, "lru", P_LRU, "fifo", P_FIFO, "lfu", P_LFU, "clock", P_CLOCK,
        "sieve", P_SIEVE, "arc", P_ARC, "s3fifo", P_S3FIFO, "heavy_hitter", P_HEAVY, "predictive", P_PREDICTIVE,
        "windowed_recency", P_WINDOWED, "cost_aware", P_COSTAWARE, "regret_aware", P_REGRET,
        "cost_aware_tiered", P_GDSF, "h2o", P_H2O, "streaming_llm", P_STREAMING, "belady", P_BELADY,
        "belady_size", P_BELADY_SIZE, "mru", P_MRU);
    PyObject *pre = Py_BuildValue("{sisisisisi}", "none", F_NONE, "python", F_PY, "sequential", F_SEQUENTIAL,
        "markov", F_MARKOV, "oracle_lookahead", F_LOOKAHEAD);
    if (!pol || !pre || PyModule_AddObject(m, "POLICIES", pol) < 0 || PyModule_AddObject(m, "PREFETCHERS", pre) < 0) {
        Py_XDECREF(pol); Py_XDECREF(pre); Py_DECREF(m); return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_TIERS", KV_MAX_TIERS);
    PyModule_AddIntConstant(m, "RQ_INSERTED", RQ_INSERTED);
    PyModule_AddIntConstant(m, "RQ_REUSED", RQ_REUSED);
    PyModule_AddIntConstant(m, "MAX_CURVE", KV_MAX_CURVE);
    PyModule_AddIntConstant(m, "MAX_CHANNELS", KV_MAX_CH);
    return m;
}

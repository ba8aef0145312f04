/* Observation of decisions for the Gymnasium envs: candidate selection, features and context.
 * The specification of every number is in kvgym/envs/observation.py; this is its implementation.
 * Included by module.c. */
#include "policy.h"

typedef struct {
    int64_t k, sample, f, g;
    float *obs_c;         /* (k, f) */
    float *obs_g;         /* (g) */
    int8_t *mask;         /* (k) */
    int64_t *sel;         /* (k) pages behind the slots (prefetch phase: slot i >= 1 is sel[i - 1]) */
    int64_t n_sel, n_elig;
    uint64_t seed;
    int64_t decisions;
    /* tier 0 in order of last use (LRU order) */
    int32_t *rprev, *rnext;
    int32_t rhead, rtail;
    int32_t rcursor;      /* every page before it is pinned in step rcstamp (walks resume there) */
    int64_t rcstamp;
    /* the eligible pages (unpinned tier-0 residents) as an array: a page is appended when it becomes
     * eligible and swap-removed when it stops being eligible; sampling draws from it */
    int32_t *slots, *slot_of;
    int64_t n_slots;
    int64_t *mark;
    int64_t mstamp;
    int32_t *buf;
    int64_t buf_cap;
    /* recent tier-0 victims and the next block of each page, for prefetch candidates */
    int64_t *ring;
    int64_t ring_n, ring_i;
    const int64_t *next_block;
    int32_t *frontier;
    /* Belady diagnostic */
    int diag;
    const int64_t *occ, *occ_start;
    int64_t belady_shown;
    int kind;             /* the decision is for a prefetch's room (1) or a demand (0) */
    double max_size, max_layer;
    int64_t regret_horizon;
} Obs;

static inline int obs_on(Engine *e) { return e->obs != NULL; }

#define TAU_STEPS 16.0
#define TAU_FREQ 4.0
#define TAU_WEIGHT 1.0
#define TAU_US 100.0
#define TAU_REGRET 1.0
#define N_FEATURES 11

static inline double sq(double x, double tau) { return x / (x + tau); }

static inline uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline uint64_t decision_seed(uint64_t seed, uint64_t decision) { return splitmix64(seed ^ splitmix64(decision)); }

static inline int64_t rkey(const Engine *e, int32_t p) { return e->pg[p].used; }  /* LRU order */

/* ----------------------------------------------------------- tier-0 bookkeeping ---- */
static void elig_add(Obs *o, int32_t p) {
    o->slot_of[p] = (int32_t)o->n_slots;
    o->slots[o->n_slots++] = p;
}
static void elig_del(Obs *o, int32_t p) {
    int64_t i = o->slot_of[p];
    if (i == NIL) return;
    int64_t last = --o->n_slots;
    o->slots[i] = o->slots[last];
    o->slot_of[o->slots[i]] = (int32_t)i;
    o->slot_of[p] = NIL;
}
static void obs_pin(Engine *e, int32_t p) { elig_del(e->obs, p); }    /* a tier-0 page of the new step */
static void obs_unpin(Engine *e, int32_t p) { elig_add(e->obs, p); }  /* step end: p is in tier 0 */
static void obs_enter(Engine *e, int32_t p) {
    Obs *o = e->obs;
    if (e->pg[p].pin != e->stamp) elig_add(o, p);
    o->rprev[p] = o->rtail; o->rnext[p] = NIL;
    if (o->rtail != NIL) o->rnext[o->rtail] = p; else o->rhead = p;
    o->rtail = p;
    if (o->rcursor == NIL) o->rcursor = p;
}
static void obs_unlink(Obs *o, int32_t p) {
    int32_t a = o->rprev[p], b = o->rnext[p];
    if (o->rcursor == p) o->rcursor = b;
    if (a != NIL) o->rnext[a] = b; else o->rhead = b;
    if (b != NIL) o->rprev[b] = a; else o->rtail = a;
}
static void obs_leave(Engine *e, int32_t p) {
    Obs *o = e->obs;
    elig_del(o, p);
    obs_unlink(o, p);
}
static void obs_touch(Engine *e, int32_t p) {  /* an access: a tier-0 page's key becomes current */
    Obs *o = e->obs;
    if (e->pg[p].tier != 0 || o->rtail == p) return;
    obs_unlink(o, p);
    o->rprev[p] = o->rtail; o->rnext[p] = NIL;
    if (o->rtail != NIL) o->rnext[o->rtail] = p; else o->rhead = p;
    o->rtail = p;
    if (o->rcursor == NIL) o->rcursor = p;
}
static void obs_victim(Engine *e, int32_t v) {
    Obs *o = e->obs;
    o->ring[o->ring_i % o->ring_n] = v;
    o->ring_i++;
}

/* ------------------------------------------------------------------ selection ---- */
/* Sort pages[:n] by last use (unique keys): insertion sort for small n (the usual input is a sorted
 * LRU tail plus a few samples), qsort otherwise. */
static const PageState *sort_pg;
static int cmp_used(const void *a, const void *b) {
    int64_t x = sort_pg[*(const int64_t *)a].used, y = sort_pg[*(const int64_t *)b].used;
    return (x > y) - (x < y);
}
static void sort_pages(Engine *e, int64_t *pages, int64_t n) {
    if (n > 64) { sort_pg = e->pg; qsort(pages, (size_t)n, 8, cmp_used); return; }
    for (int64_t i = 1; i < n; i++) {
        int64_t x = pages[i], a = rkey(e, (int32_t)x), j = i - 1;
        while (j >= 0 && rkey(e, (int32_t)pages[j]) > a) { pages[j + 1] = pages[j]; j--; }
        pages[j + 1] = x;
    }
}
static int obs_reserve(Engine *e, int64_t n) {
    Obs *o = e->obs;
    if (n <= o->buf_cap) return 0;
    int64_t c = n > 2 * o->buf_cap ? n : 2 * o->buf_cap;
    o->buf = kv_grow(o->buf, c, 4);
    if (!o->buf) return -1;
    o->buf_cap = c;
    return 0;
}
/* The m least recently used unpinned tier-0 pages not marked, in that order, into out. The walk
 * starts past the pinned pages at the head (a cursor kept for the step: O(1) amortized). */
static int64_t walk_tail(Engine *e, int64_t m, int64_t *out) {
    Obs *o = e->obs;
    int64_t n = 0, st = o->mstamp;
    if (o->rcstamp != e->stamp) { o->rcstamp = e->stamp; o->rcursor = o->rhead; }
    while (o->rcursor != NIL && e->pg[o->rcursor].pin == e->stamp) o->rcursor = o->rnext[o->rcursor];
    for (int32_t p = o->rcursor; p != NIL && n < m; p = o->rnext[p])
        if (e->pg[p].pin != e->stamp && o->mark[p] != st) out[n++] = p;
    return n;
}
/* Up to s unmarked eligible pages drawn by rejection (SplitMix64 stream) from the eligible array. */
static int64_t sample_slots(Engine *e, int64_t s, uint64_t dseed, int64_t *out) {
    Obs *o = e->obs;
    int64_t got = 0, tries = 64 * s, cnt = o->n_slots;
    if (s == 0 || cnt == 0) return 0;
    for (int64_t i = 0; got < s && i < tries; i++) {
        uint64_t z = splitmix64(dseed + (uint64_t)i * 0x9E3779B97F4A7C15ULL);
        int32_t q = o->slots[(int64_t)(((z >> 32) * (uint64_t)cnt) >> 32)];
        if (o->mark[q] != o->mstamp) {
            o->mark[q] = o->mstamp;
            out[got++] = q;
        }
    }
    return got;
}

/* ------------------------------------------------------------------- features ---- */
static double refetch_us(Engine *e, int32_t p, int t) {
    return (t == 0 ? 0.0 : link_time(&e->link[t][0], e->info[p].size, 0)) + e->info[p].decode;
}
static void fill_features(Engine *e, int64_t n, int64_t offset, int phase) {
    Obs *o = e->obs;
    int nt = e->nt;
    memset(o->obs_c, 0, (size_t)(o->k * o->f) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {  /* start the candidates' random reads early */
        __builtin_prefetch(&e->pg[o->sel[i]]);
        __builtin_prefetch(&e->info[o->sel[i]]);
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t p = (int32_t)o->sel[i];
        const PageState *g = &e->pg[p];
        float *r = o->obs_c + (i + offset) * o->f;
        int t;
        int64_t last;
        if (phase == 0) { t = nt > 1 ? 1 : 0; last = g->last_access > g->insert_step ? g->last_access : g->insert_step; }
        else { t = g->tier < 0 ? e->backing : g->tier; last = g->last_access; }
        r[0] = (float)(last < 0 ? 1.0 : sq((double)(e->s - last), TAU_STEPS));
        r[1] = (float)sq((double)g->freq, TAU_FREQ);
        r[2] = (float)sq(g->weight_sum, TAU_WEIGHT);
        r[3] = (float)((double)e->info[p].size / o->max_size);
        r[4] = (float)(nt > 1 ? (double)t / (double)(nt - 1) : 0.0);
        r[5] = (float)sq(refetch_us(e, p, t), TAU_US);
        r[6] = (float)((double)e->info[p].layer / o->max_layer);
        r[7] = (float)(g->insert_step < 0 ? 1.0 : sq((double)(e->s - g->insert_step), TAU_STEPS));
        r[8] = (float)sq((double)g->regret, TAU_REGRET);
        r[9] = (float)(g->evict_step < 0 ? 1.0 : sq((double)(e->s - g->evict_step), TAU_STEPS));
        r[10] = (float)(g->pending ? 1.0 : 0.0);
    }
}
static void fill_context(Engine *e, int phase) {
    Obs *o = e->obs;
    int nt = e->nt;
    float *out = o->obs_g;
    for (int t = 0; t < nt; t++) out[t] = (float)(e->t[t].cap != INT64_MAX ? (double)e->t[t].used / (double)e->t[t].cap : 0.0);
    for (int t = 1; t < nt; t++) {
        double b = 0.0;
        if (!e->serial) {
            double f = e->clk.free[t][0];
            for (int64_t c = 1; c < e->t[t].channels; c++) if (e->clk.free[t][c] < f) f = e->clk.free[t][c];
            if (f > e->clk.now) b = sq(f - e->clk.now, TAU_US);
        }
        out[nt + t - 1] = (float)b;
    }
    int j = 2 * nt - 1;
    int64_t cap0 = e->t[0].cap;
    out[j] = (float)(e->n_acc > 0 ? (double)(e->cur_obs + 1) / (double)e->n_acc : 0.0);
    double pr = cap0 != INT64_MAX ? (double)e->step_bytes / (double)cap0 : 0.0;
    out[j + 1] = (float)(pr < 1.0 ? pr : 1.0);
    out[j + 2] = (float)(e->m.accesses > 0 ? (double)e->m.misses / (double)e->m.accesses : 0.0);
    out[j + 3] = (float)((double)o->n_elig / (double)(o->n_elig + o->k));
    out[j + 4] = (float)phase;
    out[j + 5] = (float)(phase == 0 && o->kind == 1 ? 1 : 0);
}

/* Next-use position of page p after global position pos (n if none): binary search in its occurrences. */
static int64_t next_use_after(const Obs *o, int32_t p, int64_t pos, int64_t n) {
    int64_t lo = o->occ_start[p], hi = o->occ_start[p + 1], end = hi;
    while (lo < hi) { int64_t mid = (lo + hi) >> 1; if (o->occ[mid] <= pos) lo = mid + 1; else hi = mid; }
    return lo < end ? o->occ[lo] : n;
}

static int obs_eviction(Engine *e) {
    Obs *o = e->obs;
    int64_t k = o->k, n = e->t[0].n - e->t[0].npin;
    o->kind = e->kind;
    o->mstamp++;
    int64_t m;
    if (n <= k) {
        m = walk_tail(e, n, o->sel);
    } else {
        m = walk_tail(e, k - o->sample, o->sel);
        for (int64_t i = 0; i < m; i++) o->mark[o->sel[i]] = o->mstamp;
        int64_t got = sample_slots(e, o->sample, decision_seed(o->seed, (uint64_t)o->decisions), o->sel + m);
        m += got;
        if (got < o->sample) m += walk_tail(e, o->sample - got, o->sel + m);
        sort_pages(e, o->sel, m);
    }
    if (e->err) return 0;
    o->n_elig = n;
    o->n_sel = m;
    if (o->diag) {
        int64_t best = -1, pos = e->cur_obs + e->pos_base, na = e->n_acc + e->pos_base;
        for (int32_t q = o->rhead; q != NIL; q = o->rnext[q])
            if (e->pg[q].pin != e->stamp) { int64_t u = next_use_after(o, q, pos, na); if (u > best) best = u; }
        o->belady_shown = 0;
        for (int64_t i = 0; i < m; i++) if (next_use_after(o, (int32_t)o->sel[i], pos, na) == best) { o->belady_shown = 1; break; }
    }
    memset(o->mask, 0, (size_t)o->k);
    for (int64_t i = 0; i < m; i++) o->mask[i] = 1;
    fill_features(e, m, 0, 0);
    fill_context(e, 0);
    return 1;
}

static inline int64_t pool_add(Engine *e, int64_t q, int64_t n, int64_t room) {
    Obs *o = e->obs;
    if (q >= 0 && e->pg[q].tier != 0 && o->mark[q] != o->mstamp && e->info[q].size <= room) {
        o->mark[q] = o->mstamp;
        o->sel[n] = q;
        return n + 1;
    }
    return n;
}
/* Prefetch candidates (at most k - 1): the next block of each access of the step, the most recent
 * tier-0 victims, then blocks further ahead of the step's pages. */
static int obs_prefetch(Engine *e) {
    Obs *o = e->obs;
    int64_t k = o->k, n = 0, room = e->t[0].cap - e->step_bytes;
    o->mstamp++;
    int64_t nb = e->end - e->begin;
    if (obs_reserve(e, nb) < 0) { e->err = E_INTERNAL; return 0; }
    int32_t *fr = o->buf;
    for (int64_t j = 0; j < nb; j++) {
        int64_t q = o->next_block[e->page[e->begin + j]];
        fr[j] = (int32_t)q;
        if (n < k - 1) n = pool_add(e, q, n, room);
    }
    for (int64_t r = o->ring_i - 1; r >= 0 && r >= o->ring_i - o->ring_n && n < k - 1; r--)
        n = pool_add(e, o->ring[r % o->ring_n], n, room);
    for (int64_t depth = 2; n < k - 1 && depth <= k; depth++) {
        int alive = 0;
        for (int64_t j = 0; j < nb; j++) {
            int64_t q = fr[j];
            if (q >= 0) {
                q = o->next_block[q];
                fr[j] = (int32_t)q;
                if (q >= 0) { alive = 1; if (n < k - 1) n = pool_add(e, q, n, room); }
            }
        }
        if (!alive) break;
    }
    if (n == 0) return 0;
    o->n_sel = o->n_elig = n;
    memset(o->mask, 0, (size_t)o->k);
    o->mask[0] = 1;
    for (int64_t i = 0; i < n; i++) o->mask[i + 1] = 1;
    fill_features(e, n, 1, 1);
    fill_context(e, 1);
    return 1;
}

/* Generic structures over page ids: indexed binary heap, linked lists with a pinned-skip cursor,
 * intrusive pairing heaps, and an int64 hash map. Included by module.c (one translation unit). */
#include "kv.h"

static void *kv_grow(void *ptr, int64_t n, size_t item) {
    void *q = realloc(ptr, (size_t)(n > 0 ? n : 1) * item);
    if (!q) { free(ptr); return NULL; }
    return q;
}

/* Order-preserving map of an int64 / a double to uint64, so every heap compares unsigned keys. */
static inline uint64_t key_i64(int64_t v) { return (uint64_t)v ^ 0x8000000000000000ULL; }
static inline uint64_t key_f64(double v) {
    uint64_t u;
    v = v + 0.0;  /* -0.0 -> +0.0: numpy's argmin treats them as equal */
    memcpy(&u, &v, 8);
    return (u & 0x8000000000000000ULL) ? ~u : (u | 0x8000000000000000ULL);
}

/* ---------------------------------------------------------------- indexed binary heap ---- */
static inline int ih_less(const IHeap *h, int64_t i, int64_t j) {
    return h->k[i] < h->k[j] || (h->k[i] == h->k[j] && h->b[i] < h->b[j]);
}
static inline void ih_set(IHeap *h, int32_t *pos, int64_t i, uint64_t k, int64_t b, int32_t p) {
    h->k[i] = k; h->b[i] = b; h->p[i] = p; pos[p] = (int32_t)i;
}
static void ih_up(IHeap *h, int32_t *pos, int64_t i) {
    uint64_t k = h->k[i]; int64_t b = h->b[i]; int32_t p = h->p[i];
    while (i > 0) {
        int64_t par = (i - 1) >> 1;
        if (h->k[par] < k || (h->k[par] == k && h->b[par] < b)) break;
        ih_set(h, pos, i, h->k[par], h->b[par], h->p[par]);
        i = par;
    }
    ih_set(h, pos, i, k, b, p);
}
static void ih_down(IHeap *h, int32_t *pos, int64_t i) {
    uint64_t k = h->k[i]; int64_t b = h->b[i]; int32_t p = h->p[i];
    int64_t n = h->n;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ih_less(h, c + 1, c)) c++;
        if (h->k[c] > k || (h->k[c] == k && h->b[c] > b)) break;
        ih_set(h, pos, i, h->k[c], h->b[c], h->p[c]);
        i = c;
    }
    ih_set(h, pos, i, k, b, p);
}
static int ih_push(IHeap *h, int32_t *pos, int32_t p, uint64_t k, int64_t b) {
    if (h->n == h->cap) {
        int64_t c = h->cap ? 2 * h->cap : 64;
        if (!(h->k = kv_grow(h->k, c, 8)) || !(h->b = kv_grow(h->b, c, 8)) || !(h->p = kv_grow(h->p, c, 4)))
            return -1;
        h->cap = c;
    }
    int64_t i = h->n++;
    ih_set(h, pos, i, k, b, p);
    ih_up(h, pos, i);
    return 0;
}
static void ih_remove(IHeap *h, int32_t *pos, int32_t p) {
    int64_t i = pos[p];
    pos[p] = NIL;
    int64_t last = --h->n;
    if (i == last) return;
    ih_set(h, pos, i, h->k[last], h->b[last], h->p[last]);
    if (i > 0 && ih_less(h, i, (i - 1) >> 1)) ih_up(h, pos, i);
    else ih_down(h, pos, i);
}
static void ih_rekey(IHeap *h, int32_t *pos, int32_t p, uint64_t k) {
    int64_t i = pos[p];
    uint64_t old = h->k[i];
    h->k[i] = k;
    if (k < old) ih_up(h, pos, i); else ih_down(h, pos, i);
}
static void ih_free(IHeap *h) { free(h->k); free(h->b); free(h->p); memset(h, 0, sizeof *h); }

/* ------------------------------------------------------------------------- linked lists ---- */
static inline void ls_init(List *L) { memset(L, 0, sizeof *L); L->head = L->tail = L->cursor = NIL; L->cstamp = -1; }
static inline void ls_push_back(List *L, int32_t *prev, int32_t *next, int32_t p, int64_t bytes) {
    prev[p] = L->tail; next[p] = NIL;
    if (L->tail != NIL) next[L->tail] = p; else L->head = p;
    L->tail = p;
    L->n++; L->bytes += bytes;
    if (L->cursor == NIL) L->cursor = p;  /* every page before it is pinned: the walk resumes here */
}
static inline void ls_remove(List *L, int32_t *prev, int32_t *next, int32_t p, int64_t bytes) {
    int32_t a = prev[p], b = next[p];
    if (a != NIL) next[a] = b; else L->head = b;
    if (b != NIL) prev[b] = a; else L->tail = a;
    if (L->cursor == p) L->cursor = b;
    L->n--; L->bytes -= bytes;
    prev[p] = next[p] = NIL;
}
/* First page from the head not pinned in ``stamp`` (pin[p] == stamp means pinned), or NIL. */
static inline int32_t ls_first_unpinned(List *L, const int32_t *next, const PageState *pg, int64_t stamp) {
    if (L->cstamp != stamp) { L->cstamp = stamp; L->cursor = L->head; }
    int32_t p = L->cursor;
    while (p != NIL && pg[p].pin == stamp) p = next[p];
    L->cursor = p;
    return p;
}

/* -------------------------------------------------------------------- pairing heaps ---- */
static int pf_init(PFam *f, int64_t n) {
    f->n = n;
    f->child = malloc((size_t)(n ? n : 1) * 4); f->sib = malloc((size_t)(n ? n : 1) * 4);
    f->prev = malloc((size_t)(n ? n : 1) * 4); f->k = malloc((size_t)(n ? n : 1) * 8);
    f->b = malloc((size_t)(n ? n : 1) * 8);
    if (!f->child || !f->sib || !f->prev || !f->k || !f->b) return -1;
    for (int64_t i = 0; i < n; i++) { f->child[i] = f->sib[i] = f->prev[i] = NIL; }
    return 0;
}
static void pf_free(PFam *f) { free(f->child); free(f->sib); free(f->prev); free(f->k); free(f->b); memset(f, 0, sizeof *f); }
static inline int pf_less(const PFam *f, int32_t a, int32_t b) {
    return f->k[a] < f->k[b] || (f->k[a] == f->k[b] && f->b[a] < f->b[b]);
}
static int32_t pf_link(PFam *f, int32_t a, int32_t b) {  /* roots a, b -> one root */
    if (a == NIL) return b;
    if (b == NIL) return a;
    if (pf_less(f, b, a)) { int32_t t = a; a = b; b = t; }
    int32_t c = f->child[a];
    f->sib[b] = c; f->prev[b] = a;
    if (c != NIL) f->prev[c] = b;
    f->child[a] = b;
    f->sib[a] = f->prev[a] = NIL;
    return a;
}
static int32_t pf_merge_pairs(PFam *f, int32_t first) {  /* two-pass pairing of a sibling list */
    if (first == NIL) return NIL;
    int32_t acc = NIL, x = first;  /* pass 1: link pairs left to right, stacking results via sib */
    while (x != NIL) {
        int32_t y = f->sib[x], nx = NIL;
        f->prev[x] = f->sib[x] = NIL;
        int32_t r;
        if (y != NIL) { nx = f->sib[y]; f->prev[y] = f->sib[y] = NIL; r = pf_link(f, x, y); }
        else r = x;
        f->sib[r] = acc;
        acc = r;
        x = nx;
    }
    int32_t root = NIL;  /* pass 2: link right to left */
    while (acc != NIL) { int32_t nx = f->sib[acc]; f->sib[acc] = NIL; root = pf_link(f, root, acc); acc = nx; }
    return root;
}
static inline void pf_push(PFam *f, int32_t *root, int32_t x, uint64_t k, int64_t b) {
    f->k[x] = k; f->b[x] = b; f->child[x] = f->sib[x] = f->prev[x] = NIL;
    *root = pf_link(f, *root, x);
}
static void pf_remove(PFam *f, int32_t *root, int32_t x) {
    if (x == *root) {
        *root = pf_merge_pairs(f, f->child[x]);
    } else {  /* cut x's subtree, merge its children, meld back */
        int32_t pv = f->prev[x], s = f->sib[x];
        if (f->child[pv] == x) f->child[pv] = s; else f->sib[pv] = s;
        if (s != NIL) f->prev[s] = pv;
        int32_t sub = pf_merge_pairs(f, f->child[x]);
        *root = pf_link(f, *root, sub);
    }
    f->child[x] = f->sib[x] = f->prev[x] = NIL;
}

/* ------------------------------------------------------------------------ hash map ---- */
static inline uint64_t hm_hash(int64_t k) {
    uint64_t z = (uint64_t)k + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static int hm_init(HMap *m, int64_t cap) {
    int64_t c = 16;
    while (c < 2 * cap) c <<= 1;
    m->keys = malloc((size_t)c * 8); m->vals = malloc((size_t)c * 8);
    if (!m->keys || !m->vals) return -1;
    for (int64_t i = 0; i < c; i++) m->keys[i] = -1;
    m->cap = c; m->n = 0;
    return 0;
}
static void hm_free(HMap *m) { free(m->keys); free(m->vals); memset(m, 0, sizeof *m); }
static int64_t *hm_find(HMap *m, int64_t key) {  /* pointer to the value, or NULL */
    uint64_t mask = (uint64_t)m->cap - 1, i = hm_hash(key) & mask;
    while (m->keys[i] != -1) {
        if (m->keys[i] == key) return &m->vals[i];
        i = (i + 1) & mask;
    }
    return NULL;
}
static int hm_put(HMap *m, int64_t key, int64_t val) {
    if (2 * (m->n + 1) > m->cap) {
        HMap big;
        if (hm_init(&big, m->cap) < 0) return -1;
        for (int64_t i = 0; i < m->cap; i++)
            if (m->keys[i] != -1) {
                uint64_t mask = (uint64_t)big.cap - 1, j = hm_hash(m->keys[i]) & mask;
                while (big.keys[j] != -1) j = (j + 1) & mask;
                big.keys[j] = m->keys[i]; big.vals[j] = m->vals[i]; big.n++;
            }
        hm_free(m);
        *m = big;
    }
    uint64_t mask = (uint64_t)m->cap - 1, i = hm_hash(key) & mask;
    while (m->keys[i] != -1) {
        if (m->keys[i] == key) { m->vals[i] = val; return 0; }
        i = (i + 1) & mask;
    }
    m->keys[i] = key; m->vals[i] = val; m->n++;
    return 0;
}

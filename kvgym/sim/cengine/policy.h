/* State of the compiled policies (one struct; each policy uses its own part) and prefetchers. */
#ifndef KV_POLICY_H
#define KV_POLICY_H
#include "engine.h"

/* A group of the banded structure (cost_aware, regret_aware): pages of one tier sharing the static
 * part of their score. */
typedef struct {
    int64_t f;            /* accesses */
    uint64_t zbits;       /* bits of the static double term (size penalty or regret bonus) */
    int t;                /* tier */
    int32_t root;         /* pairing heap of its pages, by recency then insertion */
    int64_t n;
    double X, Z, B;       /* X = fw * f, Z = the static term, B = X -/+ Z (the group's order) */
    int32_t next_free;
} Group;

/* What a request did with a block in one serving tier (vLLM's _RequestCacheAccess). */
enum { RQ_OBSERVED = 1, RQ_INSERTED = 2, RQ_REUSED = 4, RQ_MISS_SEEN = 8 };

typedef struct {          /* open addressing (t, f, zbits) -> group id */
    int64_t *f; uint64_t *z; int32_t *t, *gid;
    int64_t n, cap;
} GMap;

struct Policy {
    int id;
    double par[8];
    int64_t ipar[4];
    /* lists: LRU/FIFO/CLOCK/SIEVE (L[0]); ARC T1,T2,B1,B2 (L[0..3]); S3 small, main (L[0..1]) */
    int32_t *prev, *next;
    List L[4];
    uint8_t *where;       /* list index + 1; 0 = in none */
    int32_t *gprev, *gnext;  /* S3 ghost list links (a page may be resident and a ghost) */
    List ghost;
    uint8_t *in_ghost;
    int64_t *cnt, *aux;   /* per-page counters (LFU count/touch, CLOCK count, S3 freq, ...) */
    double *val;          /* per-page doubles (GDSF priority, regret, ...) */
    int64_t clock;
    int64_t version, plan_version;
    int32_t plan_victim;
    /* ARC */
    double arc_p;
    int64_t cap, incoming;
    int32_t ghost_hit;
    int ghost_list;
    /* S3-FIFO */
    int64_t small_cap, main_cap, ghost_cap;
    int has_evicted;
    /* SIEVE */
    int32_t hand;
    /* windowed_recency */
    int32_t *ring;
    int64_t ring_len, ring_head, ring_cap;
    /* GDSF */
    double inflation;
    /* banded (cost_aware, regret_aware) */
    PFam pf;
    int32_t *page_group;
    Group *groups;
    int64_t n_groups, groups_cap;
    int32_t free_group;
    GMap gmap;
    IHeap gheap[KV_MAX_TIERS];
    int32_t *gpos;
    int64_t gpos_cap;
    double *kib;
    int32_t *scratch;
    int64_t scratch_cap;
    /* belady, belady_size */
    int64_t *nextu;
    int32_t *sclass;      /* size class of each page */
    int64_t n_sclass;
    int32_t *sroot;       /* pairing heap roots per (tier, size class) */
    double never;
    /* h2o, streaming_llm: per-(tier, class) sequence structures */
    int64_t *length;
    uint8_t *cls;         /* class of each page in its tier */
    int32_t *sd_root;     /* [(t * 3 + c) * n_seqs + q] */
    IHeap sd_heap[KV_MAX_TIERS][3];
    int32_t *sd_pos;      /* [(t * 3 + c) * n_seqs + q] */
    IHeap mass[KV_MAX_TIERS];
    /* vllm_lru (serving) */
    int64_t *rank;        /* per block: (R << 32) + 2^31 - chain position */
    int64_t *req_rank;    /* per request: its R, 0 = none yet */
    int64_t next_rank;
    /* session_aware (serving) */
    int32_t *bsess;       /* per block: its session (dense id), -1 none */
    uint8_t *sattached;   /* per block: in its session's heap (a resident candidate) */
    int64_t *activity;    /* per session: step of its latest touch, -1 never */
    int32_t *sess_root;   /* per session: pairing heap of its candidates by (depth, insertion) */
    int32_t *spos;        /* per session: position in sheap */
    IHeap sheap;          /* sessions by (activity * 2^24 + depth of their root, insertion of the root) */
    const int64_t *sess_of_req, *sess_of_seq;
    /* Python */
    PyObject *hooks[2];   /* objects whose on_access/on_insert/on_evict are called (policy, prefetcher) */
    PyObject *chooser;    /* callable(tier, n) -> victim page, candidates in cand_buf */
    int64_t *cand_buf;
    int64_t cand_cap;
};

struct Prefetcher {
    int id;
    int64_t ipar[4];
    const int64_t *succ;  /* sequential: successor of each page */
    const int64_t *trace_page;  /* lookahead: the whole trace's pages */
    int64_t trace_n;
    int64_t *mark;        /* stamped marks */
    int64_t mstamp;
    int32_t *cur, *nxt;
    int64_t cur_cap;
    /* markov */
    int64_t prev;
    HMap pair;            /* a * n_pages + b -> index in a's successor list */
    int32_t **sb;         /* per page: successors, sorted by (count desc, first seen asc) */
    int64_t **sc;         /* their counts */
    int64_t **ss;         /* first-seen serial within a */
    int64_t *sn, *scap;
    PyObject *propose;    /* Python prefetcher: callable() -> count of ids written into py_out */
    int64_t *py_out;
};

#endif

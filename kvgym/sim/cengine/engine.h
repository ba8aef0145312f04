/* The engine record: inputs (validated by the Python loader), state, metrics, policy state. */
#ifndef KV_ENGINE_H
#define KV_ENGINE_H
#include "kv.h"

/* Static per-page data packed in one record (the hot paths read them together). */
typedef struct {
    int64_t size;         /* stored bytes under the scenario's quantization */
    int64_t fp16;         /* fp16 bytes (attention reads) */
    double decode;        /* dequantization µs per use */
    int32_t layer, seq;
} PageInfo;

/* Metrics (kvgym/sim/metrics.py defines each field). */
typedef struct {
    int64_t accesses, hits, misses, full_misses, first_touch_misses, steps, tokens;
    int64_t prefetch_issued, prefetch_useful, prefetch_late, prefetch_wasted;
    int64_t tier_hits[KV_MAX_TIERS], evictions[KV_MAX_TIERS], peak_bytes[KV_MAX_TIERS];
    int64_t link_bytes_demand[KV_MAX_TIERS], link_bytes_prefetch[KV_MAX_TIERS], link_bytes_demotion[KV_MAX_TIERS];
    double stall_us, compute_us, total_time_us;
} Counters;

/* The overlap clock of one decode step (kvgym/sim/costs.py OverlapCost), or the serial sum. */
typedef struct {
    double now;           /* start of the current step */
    double t0, issue, ready;
    double step_compute;  /* compute µs of the current step */
    double serial_total;  /* serial model: the running sum */
    double free[KV_MAX_TIERS][KV_MAX_CH];  /* when each channel of each link frees up */
} Clock;

/* Per-tier runtime state. */
typedef struct {
    int64_t cap, channels, used, n;
    int64_t npin;         /* residents pinned by the current step */
    int key;              /* K_*: what orders the tier's victim heap */
    IHeap heap;           /* unpinned residents by (key, ins) when key != K_NONE */
    List order;           /* residents in insertion order (only when track_order) */
} Tier;

/* Phases of the resumable state machine (decisions stop it in the middle of a step). */
enum { PH_STEP, PH_ACCESS, PH_ROOM, PH_PF_BEGIN, PH_PF, PH_PF_DECIDE, PH_STEP_END, PH_DONE };

typedef struct Policy Policy;
typedef struct Prefetcher Prefetcher;

struct Engine {
    /* ---- pages (read-only) ---- */
    int64_t n_pages;
    PageInfo *info;
    const int64_t *tok_start, *tok_end;
    int64_t n_layers, n_seqs;
    /* ---- the trace in memory (env mode, or the current chunk) ---- */
    const int64_t *step, *page;
    const float *weight;  /* may be NULL */
    int64_t n_acc;        /* accesses available */
    int64_t pos_base;     /* global index of step[0] (chunked runs) */
    int more;             /* 1 while more chunks may follow (a step may straddle them) */
    /* ---- privileged future (oracles) ---- */
    const int64_t *next_pos, *first_pos;
    int64_t n_future;
    /* ---- tiers and links ---- */
    int nt, backing;
    Tier t[KV_MAX_TIERS];
    Link link[KV_MAX_TIERS][KV_MAX_TIERS];
    /* ---- scenario ---- */
    int serial, create, prefetch_on, max_prefetch, lower_lru, regret_horizon, track_order;
    double floor_us, attn_bytes_per_us, hit_base_us;
    /* ---- state ---- */
    PageState *pg;
    int32_t *hpos;           /* position of each page in its tier's victim heap */
    int32_t *oprev, *onext;  /* links of the tiers' insertion-order lists */
    int64_t stamp;           /* serial of the current step (pinning) */
    int64_t ins_ctr;         /* insertion serial */
    int64_t use_ctr;         /* use serial (accesses and insertions): LRU's clock */
    int64_t s;               /* current step value */
    int64_t cur;             /* index (local) of the access being processed */
    int64_t ctx_pos;         /* global index of the latest access processed (ctx.pos) */
    int64_t cur_obs;         /* local index of the access being processed (observation) */
    int64_t begin, end;      /* local range of the current step */
    int64_t step_misses;     /* demand misses of the current step */
    int64_t step_bytes;      /* stored bytes of the current step's distinct pages */
    int64_t n_pending;
    Clock clk;
    Counters m;
    /* scratch */
    int32_t *spages;         /* distinct pages of the current step, in first-access order */
    int64_t n_spages, spages_cap;
    int64_t *mark64;         /* per-layer / per-seq marks (stamped) */
    int64_t mark_cap;
    /* ---- state machine ---- */
    int phase;
    int32_t incoming;        /* page room is being made for */
    int src;                 /* its source tier, -1 for a created page */
    int kind;                /* 0 demand, 1 prefetch */
    int external;            /* tier-0 victims come from outside (the env) */
    int pf_external;         /* prefetch decisions come from outside */
    int64_t npf;             /* prefetches issued this step (external decisions) */
    int32_t *pf_list;        /* compiled prefetcher's proposals for this step */
    int64_t pf_n, pf_i, pf_cap;
    /* ---- error ---- */
    int err, err_tier;
    int64_t err_page, err_step;
    /* ---- policy and prefetcher ---- */
    Policy *pol;
    Prefetcher *pre;
    /* ---- Python view of (pos, step, begin, end) for Python policies ---- */
    int64_t *ctxbuf;
    /* ---- observation (env) ---- */
    void *obs;
    /* ---- serving mode: this engine is one serving tier's view (serving.c); NULL in decode ---- */
    const int64_t *focus;    /* [request, chain position, step] being served (-1: none) */
    const int64_t *kids;     /* per block: children resident in this tier (radix_lru) */
    double (*refetch)(const Engine *e, int32_t p);  /* µs to get p back into tier 0 (cost_aware_tiered) */
    void *host;              /* the serving engine */
    int host_tier;           /* this view's serving tier */
};

#endif

/* kvgym's compiled engine: shared types.
 *
 * The rules implemented here are those of the specification engine (kvgym/sim/engine.py, with the
 * cost models of kvgym/sim/costs.py and the policies of baselines/); property tests hold the two
 * together. Every float operation follows the specification's order and association, so results
 * are bit-identical; build flags forbid FMA contraction (-ffp-contract=off).
 *
 * Units: bytes, µs (double), steps (int64). Page ids are int32 (the loader checks n < 2^31).
 */
#ifndef KV_H
#define KV_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KV_MAX_TIERS 8
#define KV_MAX_CH 16
#define KV_MAX_CURVE 32
#define NIL (-1)

/* ---------------------------------------------------------------------------------------------
 * Per-page state. Mirrored by a numpy structured dtype built from kv_page_fields (module.c), so
 * Python policies read these fields as numpy views (ctx.last_access, ctx.freq, ...).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    int64_t last_access;  /* step of the latest access, -1 never */
    int64_t freq;         /* accesses so far */
    double weight_sum;    /* accumulated attention weight */
    int64_t insert_step;  /* step the page last entered tier 0, -1 never */
    int64_t evict_step;   /* step it was last evicted from tier 0, -1 never */
    int64_t regret;       /* re-references within regret_horizon steps of a tier-0 eviction */
    int64_t ins;          /* insertion serial into its current tier (ties go to the earliest) */
    double ready;         /* overlap model: when an in-flight prefetch lands, NaN if none */
    int64_t pin;          /* step serial while pinned (pinned iff pin == engine stamp) */
    int64_t used;         /* serial of the latest use (access, or insertion into tier 0 / backing): LRU's key */
    int8_t tier;          /* tier holding the page, -1 none */
    uint8_t seen;         /* accessed at least once */
    uint8_t pending;      /* in tier 0 as a prefetch not yet used */
    uint8_t mark;         /* scratch flag */
    int32_t pad;
} PageState;

/* A link between two tiers: the time of one page transfer. */
typedef struct {
    int64_t curve;        /* 0: alpha-beta form; 1: measured size->time curve */
    double alpha;         /* µs (alpha-beta form) */
    double beta;          /* bytes/µs (alpha-beta form) */
    double issue_us;      /* curve: cost of a copy issued behind another on a busy link */
    double wire;          /* curve: bytes/µs of the wire (largest measured copy) */
    int64_t npts;         /* curve points */
    double x[KV_MAX_CURVE];  /* bytes, increasing */
    double y[KV_MAX_CURVE];  /* µs of one copy of that size on an idle link */
} Link;

typedef struct {
    int64_t cap;          /* bytes; INT64_MAX = unbounded */
    int64_t channels;
} TierSpec;

/* ---------------------------------------------------------------------------------------------
 * Generic structures over page ids.
 * ------------------------------------------------------------------------------------------- */
/* Indexed binary min-heap of pages keyed by (k, ins). Positions live in a shared int32 array, so a
 * page may sit in at most one heap of a family at a time. */
typedef struct {
    uint64_t *k;
    int64_t *b;
    int32_t *p;
    int64_t n, cap;
} IHeap;

/* Doubly linked list over page ids; links live in the caller's prev/next arrays. ``cursor``:
 * every page before it is pinned in step ``cstamp`` (so a walk for the first unpinned page resumes
 * there within a step). */
typedef struct {
    int32_t head, tail;   /* head = oldest end */
    int64_t n, bytes, npin;
    int32_t cursor;
    int64_t cstamp;
} List;

/* Intrusive pairing heap: node arrays per family; a heap is its root. */
typedef struct {
    int32_t *child, *sib, *prev;  /* prev: left sibling, or parent for a first child */
    uint64_t *k;
    int64_t *b;
    int64_t n;                    /* nodes */
} PFam;

/* Open-addressing hash map int64 -> int64 (keys >= 0). */
typedef struct {
    int64_t *keys, *vals;
    int64_t n, cap;
} HMap;

/* ---------------------------------------------------------------------------------------------
 * Policy and prefetcher ids (kvgym/sim/compiled.py maps registry names to these).
 * ------------------------------------------------------------------------------------------- */
enum {
    P_NONE = 0, P_PY, P_LRU, P_FIFO, P_LFU, P_CLOCK, P_SIEVE, P_ARC, P_S3FIFO, P_HEAVY, P_PREDICTIVE,
    P_WINDOWED, P_COSTAWARE, P_REGRET, P_GDSF, P_H2O, P_STREAMING, P_BELADY, P_BELADY_SIZE, P_MRU,
    /* serving-only policies (policy_serving.c; request hooks come from serving.c) */
    P_VLLM_LRU, P_VLLM_ARC, P_RADIX_LRU, P_LMCACHE_LRU, P_HITS_PER_TOKEN, P_SESSION, P_COUNT
};
enum { F_NONE = 0, F_PY, F_SEQUENTIAL, F_MARKOV, F_LOOKAHEAD, F_COUNT };
/* What orders a tier's victims: arrival (the insertion-order list), a heap key, or the policy. */
enum { K_NONE = 0, K_ARRIVAL, K_LAST, K_POLICY, K_OWN };

/* Engine status returned to Python. */
enum { ST_DONE = 0, ST_EVICT = 1, ST_PREFETCH = 2, ST_ERROR = -1, ST_PYERR = -2 };
/* Errors. */
enum { E_NONE = 0, E_PINNED, E_VICTIM, E_INTERNAL };

typedef struct Engine Engine;

#endif

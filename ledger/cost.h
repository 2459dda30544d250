/*
 * cost.h: reading the cost ledger, the rates file, and estimating a run.
 *
 * lib/ledger.h writes the ledger (one line per event, appended under a lock);
 * this is the reading side that ftk-ledger is built on.  Three pieces:
 *
 *   Ledger.  ftk_cost_ledger_load() reads every line.  A line that is not a
 *   well-formed entry (a half-written line after a power cut, a hand edit gone
 *   wrong, a stage or kind nobody knows) is never merged with its neighbours
 *   and never silently dropped: it goes into the problem list with its line
 *   number and reason, and the caller reports it.  Good lines become entries
 *   with their fields already checked and typed.
 *
 *   Rates.  A JSONL file of dated price rows (docs/formats.md, "Ledger and
 *   rates"): devices per hour with their peak bf16 FLOP/s and a default MFU,
 *   people per hour, APIs per million input and output tokens.  A row applies
 *   from its date on, so a price change never reprices older entries:
 *   ftk_rates_find() picks, for an entry's date, the latest row dated on or
 *   before it.  Built-in example rows (the same as datasets/rates.example.jsonl,
 *   each marked "example": true) stand in when the user has no rates file.
 *
 *   Estimate.  The parameter count of a Llama-shaped model from its
 *   config.json, computed from the architecture fields, and the training FLOPs
 *   of a full or a LoRA/QLoRA fine-tune from it (see estimate.c for the
 *   formulas and what they leave out).
 *
 * Ownership: a struct ftk_cost_ledger or struct ftk_rates owns everything it
 * points to (including each entry's cJSON tree) until its _release().
 * Strings inside entries and rows are borrowed from those trees.
 */
#ifndef FTK_LEDGER_COST_H
#define FTK_LEDGER_COST_H

#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/strbuf.h"

/* ------------------------------------------------------------ time */

/*
 * Parse "2026-11-23", "2026-11-23T13:00:00Z", "2026-11-23T13:00:00.5Z",
 * "2026-11-23T15:00:00+02:00" or "2026-11-23 13:00" (no zone: UTC) into Unix
 * seconds.  Returns 0, or FTK_EDATA when s is none of these.
 */
int ftk_cost_time_parse(const char *s, double *out);

/* "2026-11-23" for t into buf (at least 11 bytes). */
void ftk_cost_date_format(double t, char *buf, size_t n);

/* ------------------------------------------------------------ ledger */

#define FTK_COST_N_STAGES 5
#define FTK_COST_N_KINDS 3
extern const char *const ftk_cost_stages[FTK_COST_N_STAGES];	/* prep train eval review serve */
extern const char *const ftk_cost_kinds[FTK_COST_N_KINDS];	/* human compute api */

/* Index of s in ftk_cost_stages / ftk_cost_kinds, or -1. */
int ftk_cost_stage_index(const char *s);
int ftk_cost_kind_index(const char *s);

struct ftk_cost_entry {
	long line;		/* 1-based line in the ledger file */
	cJSON *json;		/* the whole entry, owned by the ledger */
	double ts;		/* Unix seconds */
	const char *run;	/* "" when the entry names none */
	int stage, kind;	/* indices into the tables above */
	const char *who, *device, *tool, *note;	/* NULL when absent */
	double hours;		/* 0 when absent */
	double usd;		/* NAN when the entry carries no price */
	double gpus;		/* device count, 1 when absent */
	double tokens;		/* training tokens, 0 when absent */
	double tokens_in, tokens_out;	/* API tokens, 0 when absent */
};

struct ftk_cost_problem {
	long line;
	char msg[512];
};

struct ftk_cost_ledger {
	struct ftk_cost_entry *e;
	size_t n, alloc;
	struct ftk_cost_problem *bad;
	size_t n_bad, alloc_bad;
	int unterminated;	/* the file does not end in a newline */
};

/*
 * Check one ledger line (no newline) and fill *out; on success out->json is
 * the parsed tree, which the caller owns (cJSON_Delete).  Returns 0, or
 * FTK_EDATA with err's field and message saying what is wrong (invalid JSON,
 * a missing "ts", an unknown stage, a negative "hours", ...).
 */
int ftk_cost_entry_parse(const char *s, size_t len, struct ftk_cost_entry *out,
			   struct ftk_error *err);

/*
 * Read the ledger at path into *L (which must be zeroed or released).  Every
 * good line becomes an entry; every bad one a problem (line number, reason;
 * blank lines are neither).  Returns the number of problems (0 or more), or
 * FTK_ENOTFOUND / FTK_EIO when the file cannot be read, with err filled.
 */
int ftk_cost_ledger_load(const char *path, struct ftk_cost_ledger *L, struct ftk_error *err);

/* Free everything *L owns and zero it.  NULL allowed. */
void ftk_cost_ledger_release(struct ftk_cost_ledger *L);

/* ------------------------------------------------------------ rates */

enum ftk_rate_type { FTK_RATE_DEVICE, FTK_RATE_PERSON, FTK_RATE_API };

struct ftk_rate {
	long line;		/* 1-based line in the rates file, 0 for built-in rows */
	cJSON *json;		/* the row, owned by the table */
	enum ftk_rate_type type;
	const char *name;	/* borrowed from json */
	double from;		/* Unix seconds of the "from" date */
	double usd_per_hour;	/* device, person; NAN when absent */
	double peak_flops;	/* device: peak dense bf16 FLOP/s; NAN when absent */
	double mfu;		/* device: default model FLOPs utilization; NAN when absent */
	double usd_per_mtok_in, usd_per_mtok_out;	/* api; NAN when absent */
	int example;		/* "example": true */
};

struct ftk_rates {
	struct ftk_rate *r;
	size_t n, alloc;
	char *path;		/* the file read, NULL for the built-in examples */
};

/* The built-in example rows as JSONL text (static, one row per line). */
extern const char ftk_rates_examples[];

/*
 * Parse one rates row.  Returns 0 and fills *out (out->json is the caller's
 * to free), or FTK_EDATA with the field and what is wrong.
 */
int ftk_rate_parse(const char *s, size_t len, struct ftk_rate *out, struct ftk_error *err);

/*
 * Load rates from path, or the built-in examples when path is NULL.  A bad
 * row is an error (the rates file is configuration: a typo must not turn
 * into a wrong price): FTK_EDATA with the file, line and field.  Also
 * FTK_ENOTFOUND / FTK_EIO.  Returns 0 on success.
 */
int ftk_rates_load(const char *path, struct ftk_rates *R, struct ftk_error *err);

void ftk_rates_release(struct ftk_rates *R);

/*
 * The row of this type and name (compared without case) that applies at time
 * t: the one with the latest "from" on or before t, the later line winning a
 * tie.  NULL when there is none.  Borrowed from R.
 */
const struct ftk_rate *ftk_rates_find(const struct ftk_rates *R, enum ftk_rate_type type,
				      const char *name, double t);

const char *ftk_rate_type_name(enum ftk_rate_type type);

/*
 * The price of an entry that carries none, from the rates at the entry's
 * date: human hours × the person's rate ("who", falling back to the person "default"),
 * compute hours × gpus × the device's rate, api tokens × the API's prices
 * ("model" or "api" names it).  Returns 0 and sets *usd, or FTK_ENOTFOUND
 * with a message naming the missing row.
 */
int ftk_rates_price_entry(const struct ftk_rates *R, const struct ftk_cost_entry *e,
			  double *usd, struct ftk_error *err);

/*
 * The rates file for a ledger: explicit (--rates) when given, else
 * $FTK_RATES when set and not empty, else rates.jsonl beside the ledger
 * (ledger_path may be NULL: none), which must exist when must_exist is set.
 * Returns the path (explicit, the environment's, or buf, which holds the made
 * up one), or NULL for the built-in examples.
 */
const char *ftk_cost_rates_path(const char *explicit_path, const char *ledger_path, char *buf,
				size_t n, int must_exist);

/* ------------------------------------------------------------ totals */

/* What a set of entries adds up to. */
struct ftk_cost_agg {
	long n;
	double human_h;		/* people's hours */
	double device_h;	/* compute hours x gpus */
	double hours;		/* human_h + device_h + an api entry's own hours */
	double api_tok;		/* tokens in + out */
	double usd;		/* the entry's usd, else its price; 0 when it has neither */
	long unpriced;		/* entries that had neither */
	long example_priced;	/* entries priced from the built-in example rates */
};

struct ftk_cost_run_totals {
	const char *name;	/* the entry's run, borrowed from the ledger ("" for none) */
	struct ftk_cost_agg a;
	struct ftk_cost_agg by[FTK_COST_N_STAGES][FTK_COST_N_KINDS];
};

struct ftk_cost_totals {
	struct ftk_cost_run_totals *runs;	/* in the order runs first appear */
	size_t n_runs, alloc_runs;
	struct ftk_cost_agg stage[FTK_COST_N_STAGES], kind[FTK_COST_N_KINDS], total;
	double first_ts, last_ts;		/* +inf / -inf when nothing was kept */
};

/* Which entries count: ts in [since, until) and, when n_runs > 0, one of runs. */
struct ftk_cost_filter {
	double since, until;
	const char *const *runs;
	size_t n_runs;
};

/* Whether f keeps run (any run when f->n_runs is 0). */
int ftk_cost_filter_run(const struct ftk_cost_filter *f, const char *run);

/*
 * Total the entries of L that f keeps (f NULL: all), each priced by its own
 * "usd", else by R at its date (ftk_rates_price_entry).  For an entry that
 * has neither, unpriced(ctx, entry, why) is called when given, and the entry
 * counts as 0 USD.  *T borrows run names from L: release T before L.
 */
void ftk_cost_totals_compute(struct ftk_cost_totals *T, const struct ftk_cost_ledger *L,
			     const struct ftk_rates *R, const struct ftk_cost_filter *f,
			     void (*unpriced)(void *ctx, const struct ftk_cost_entry *e,
					      const char *why),
			     void *ctx);

/* The totals of one run, or NULL.  Borrowed from T. */
struct ftk_cost_run_totals *ftk_cost_totals_run(const struct ftk_cost_totals *T, const char *run);

/* Free what T owns.  NULL allowed. */
void ftk_cost_totals_release(struct ftk_cost_totals *T);

/* ------------------------------------------------------------ estimate */

struct ftk_cost_model {
	char model_type[32];
	long long vocab, dim, hidden, layers, heads, kv_heads, head_dim;
	int tied, qkv_bias, qk_norm;
	long long n_params;	/* every parameter, a tied embedding counted once */
	long long n_embed;	/* the input embedding */
	long long n_matmul;	/* weights that multiply activations: the linear layers and the head */
};

/*
 * Read a Hugging Face config.json (path names the file or its directory)
 * with the model's own loader (ftk_config_load: the same families, defaults
 * and refusals as ftk-train) and count the parameters of the Llama-shaped
 * decoder it describes: embedding, per layer q/k/v/o (with GQA, biases where
 * the family has them, Qwen3's q_norm/k_norm), the SwiGLU MLP and two
 * RMSNorms, the final norm and the head (none when tied).  Returns 0 or
 * ftk_config_load's error: FTK_ENOTFOUND, FTK_EDATA (a missing or ill-typed
 * field, named in err), FTK_EUNSUPPORTED (a model_type, mixture of experts
 * or bias ftk-train does not implement).
 */
int ftk_cost_model_load(const char *path, struct ftk_cost_model *m, struct ftk_error *err);

/*
 * LoRA parameters at rank r on the modules named in targets, a comma list of
 * q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj, their ftk-train
 * short names (q,k,v,o,gate,up,down), attn, mlp, all or all-linear.
 * Returns the count, or -1 when a name is unknown.
 */
long long ftk_cost_lora_params(const struct ftk_cost_model *m, int rank, const char *targets);

/*
 * Count the tokens of a shard directory (lib/shard.h) as ftk-train will see
 * them: *tokens is every token, *kept the tokens left when each sequence
 * longer than seq_len is cut to seq_len (seq_len <= 0: none is cut), *n_cut
 * how many were cut.  Returns 0, or the shard reader's error.
 */
int ftk_cost_shard_tokens(const char *dir, long seq_len, double *tokens, double *kept,
			  long *n_cut, struct ftk_error *err);

/*
 * Training FLOPs for D tokens: full fine-tuning 6·N·D; LoRA/QLoRA
 * 4·N·D + 6·N_lora·D (forward 2·N·D, the backward pass through frozen
 * weights computes input gradients only, 2·N·D, and the adapters cost a
 * forward 2·N_lora·D and a backward 4·N_lora·D).  N is n_matmul.
 */
double ftk_cost_train_flops(const struct ftk_cost_model *m, long long n_lora, double tokens, int full);

/*
 * Tokens per second a run achieved, from run_dir/metrics.jsonl (or the file
 * itself), as ftk-train writes it.  With the cumulative "tokens" and
 * "elapsed" (seconds) on two lines or more: the tokens trained between the
 * end of the first step (warm-up) and the end of the last, over the seconds
 * between them, which counts everything a step costs besides its matmuls
 * (data, metrics, checkpoints).  Otherwise the median of "tokens_per_s", the
 * first step left out when there are more than two.  Returns 0 and sets *tps and *steps, or FTK_ENOTFOUND /
 * FTK_EDATA (no usable line; bad lines are named in err).
 */
int ftk_cost_calibrate_tps(const char *run_dir, double *tps, int *steps, struct ftk_error *err);

#endif

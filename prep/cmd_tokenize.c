/*
 * cmd_tokenize.c: ftk-tokenize, token ids, counts and training shards.
 * summary: token ids, counts and training shards with the model's own tokenizer and chat template
 *
 * One pass over the records with a Hugging Face tokenizer (lib/tokenizer.h)
 * and, for chats, the model's chat template (lib/chat.h):
 *
 *   --ids      adds "ids" (the text's ids, or the rendered chat's with --chat)
 *   --decode   adds "text" from "ids"
 *   --count    adds "n_tokens"; the totals are in the summary and --stats
 *   --shards   writes token shards with loss masks for the trainer (lib/shard.h)
 *
 * A record that cannot be tokenized as asked is never dropped silently: it
 * goes to --rejects with the reason (no-text, template-error, empty-mask,
 * mask-splits-token, double-bos, too-long, ...) and the message.
 *
 * Threads (-j) work on batches of records; results are written in input
 * order by the main thread, which alone touches the outputs, so the output
 * is the same whatever -j is.  Records passed through are their original
 * bytes with the new member spliced in before the closing brace.
 */
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "lib/chat.h"
#include "lib/json.h"
#include "lib/shard.h"
#include "lib/tokenizer.h"

static const char *const usage[] = {
	"ftk-tokenize --tokenizer DIR (--ids | --decode | --count | --shards DIR) [options] [FILE...]",
	"ftk-tokenize --join --shards DIR PART_DIR...",
	"",
	"Tokenize records with a Hugging Face tokenizer.json and the model's chat template.", NULL,
};

struct conf {
	const struct ftk_tokenizer *tok;
	const struct ftk_chat *chat;	/* NULL when the tokenizer has none and no --template */
	const char *tok_path;
	int ids, decode, count, shards, chat_mode, add_special, truncate, preference;
	const char *field;
	enum ftk_train_on train_on;
	long max_tokens;
};

/* One record of a batch and what became of it. */
struct item {
	struct ftk_line line;	/* data owned, unless borrowed */
	int borrowed;		/* line.data is the reader's (a long line ends its batch) */
	int status;		/* 0 emit out, 1 reject, 2 re-parse in the main thread (bad JSON) */
	const char *reason;
	char *msg;
	struct strbuf out;	/* the output line when it changed */
	int changed;
	uint32_t *ids;		/* shard sequence (owned) */
	uint8_t *mask;
	uint32_t n;
	uint32_t *ids2;		/* preference: the rejected sequence (ids/mask: the chosen one) */
	uint8_t *mask2;
	uint32_t n2;
	long n_tokens;
	int truncated;
	int to_shard;
	int chat_as_text;	/* a chat record met a text-only mode (no --chat) */
	long cut;		/* tokens dropped by --overflow truncate */
};

struct worker {
	const struct conf *cf;
	struct item *items;
	size_t from, to;
	struct ftk_tokens tk;
	struct ftk_render r;
	uint8_t *mask;
	size_t mask_alloc;
	pthread_t th;
};

static void fail_item(struct item *it, const char *reason, const char *msg)
{
	it->status = 1;
	it->reason = reason;
	free(it->msg);
	it->msg = msg ? xstrdup(msg) : NULL;
}

/* A chat to render and no template to render it with: the same words as
 * --chat gives at the start.  Returns 1 (and fails the item) when so. */
static int no_template(const struct conf *cf, struct item *it)
{
	char m[1200];
	if (cf->chat)
		return 0;
	snprintf(m, sizeof(m), "'%s' has no chat_template: give one with --template FILE", cf->tok_path);
	fail_item(it, "no-chat-template", m);
	return 1;
}

/* Splice ,"key":value before the closing brace of the original line; when the
 * record already has key (has_key), replace it through cJSON instead (rare). */
static void splice(struct item *it, int has_key, const char *key, const char *json_value)
{
	const char *src = it->changed ? it->out.buf : it->line.data;
	size_t len = it->changed ? it->out.len : it->line.len;
	struct strbuf sb = STRBUF_INIT;
	if (has_key) {
		cJSON *copy = NULL;
		ftk_json_parse(src, len, &copy, NULL);
		cJSON_ReplaceItemInObjectCaseSensitive(copy, key, cJSON_Parse(json_value));
		char *p = cJSON_PrintUnformatted(copy);
		strbuf_addstr(&sb, p);
		cJSON_free(p);
		cJSON_Delete(copy);
	} else {
		size_t e = len;
		while (e > 0 && src[e - 1] != '}') e--;
		size_t b = e - 1, k = 1;
		while (k < b && (src[k] == ' ' || src[k] == '\t' || src[k] == '\r' || src[k] == '\n')) k++;
		int empty = src[0] == '{' && k == b;
		strbuf_add(&sb, src, b);
		while (sb.len && (sb.buf[sb.len - 1] == ' ' || sb.buf[sb.len - 1] == '\t')) strbuf_setlen(&sb, sb.len - 1);
		if (!empty) strbuf_addch(&sb, ',');
		strbuf_addf(&sb, "\"%s\":%s}", key, json_value);
	}
	strbuf_release(&it->out);
	it->out = sb;
	it->changed = 1;
}

static void add_ids_json(struct strbuf *sb, const uint32_t *ids, size_t n)
{
	strbuf_addch(sb, '[');
	for (size_t i = 0; i < n; i++) strbuf_addf(sb, i ? ",%u" : "%u", ids[i]);
	strbuf_addch(sb, ']');
}

/* A preference side (chosen or rejected) as messages: a list, or a string
 * that becomes one turn of role.  Returns a new array or NULL. */
static cJSON *side_messages(const cJSON *v, const char *role)
{
	if (cJSON_IsArray(v)) return cJSON_Duplicate(v, 1);
	if (!cJSON_IsString(v)) return NULL;
	cJSON *a = cJSON_CreateArray(), *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", v->valuestring);
	cJSON_AddItemToArray(a, m);
	return a;
}

/* A line at least this long is borrowed from the reader, not copied into its batch. */
#define LONG_LINE ((size_t)1 << 20)

/*
 * The first n ids of w->tk and their mask (all 1 when mask is NULL) for an
 * item to write.  A long sequence's ids and mask are taken from the worker,
 * not copied (done_with_long would free them next): a second copy is 5
 * bytes a token, as much as a record of 5 bytes a token again.
 */
static void keep_seq(struct worker *w, long n, const uint8_t *mask, uint32_t **ids, uint8_t **mk)
{
	int take = w->tk.alloc > LONG_LINE / sizeof(uint32_t);
	if (take) {
		*ids = ftk_tokens_take_ids(&w->tk);
		ftk_tokens_release(&w->tk);	/* the scratch space of a long text, as done_with_long does */
	} else {
		*ids = xmalloc((n + 1) * sizeof(uint32_t));
		memcpy(*ids, w->tk.ids, n * sizeof(uint32_t));
	}
	if (take && mask && mask == w->mask) {
		*mk = w->mask;
		w->mask = NULL;
		w->mask_alloc = 0;
	} else {
		*mk = xmalloc(n + 1);
		if (mask) memcpy(*mk, mask, n);
		else memset(*mk, 1, n);
	}
}

/*
 * One side of a preference pair: prompt + answer rendered together, learned
 * only on the answer's assistant turns.  Fills ids, mask and n (owned) or
 * fails the item.  Returns 0 or -1.
 */
static int preference_side(struct worker *w, struct item *it, const cJSON *rec, const cJSON *prompt, int n_prompt,
			   const char *side, uint32_t **ids, uint8_t **mask, uint32_t *n)
{
	const struct conf *cf = w->cf;
	struct ftk_error e;
	cJSON *ans = side_messages(cJSON_GetObjectItemCaseSensitive(rec, side), "assistant");
	if (!ans) {
		char m[200];
		snprintf(m, sizeof(m), "\"%s\" is missing or neither a message list nor a string", side);
		fail_item(it, "not-preference", m);
		return -1;
	}
	if (no_template(cf, it)) {
		cJSON_Delete(ans);
		return -1;
	}
	cJSON *all = cJSON_Duplicate(prompt, 1), *x;
	while ((x = cJSON_DetachItemFromArray(ans, 0))) cJSON_AddItemToArray(all, x);
	cJSON_Delete(ans);
	int rc = ftk_chat_render(cf->chat, all, cJSON_GetObjectItemCaseSensitive(rec, "tools"), 0, &w->r, &e);
	cJSON_Delete(all);
	if (rc) { fail_item(it, "template-error", e.msg); return -1; }
	/* learn the answer only: drop the prompt's assistant turns */
	size_t k = 0;
	for (size_t i = 0; i < w->r.n_spans; i++)
		if (w->r.spans[i].message >= n_prompt) w->r.spans[k++] = w->r.spans[i];
	w->r.n_spans = k;
	const char *reason;
	long len = ftk_chat_encode(cf->chat, &w->r, cf->train_on == FTK_TRAIN_ALL ? FTK_TRAIN_ALL : FTK_TRAIN_ASSISTANT,
				   &w->tk, &w->mask, &w->mask_alloc, &reason, &e);
	if (len < 0) { fail_item(it, reason, e.msg); return -1; }
	if (cf->max_tokens > 0 && len > cf->max_tokens) {
		if (!cf->truncate) {
			char m[200];
			snprintf(m, sizeof(m), "%s: %ld tokens, more than --max-tokens %ld", side, len, cf->max_tokens);
			fail_item(it, "too-long", m);
			return -1;
		}
		it->cut += len - cf->max_tokens;
		len = cf->max_tokens;
		it->truncated = 1;
		long learned = 0;
		for (long i = 0; i < len; i++) learned += w->mask[i];
		if (!learned) {
			fail_item(it, "empty-mask", "no answer token is left after truncation to --max-tokens");
			return -1;
		}
	}
	*n = (uint32_t)len;
	keep_seq(w, len, w->mask, ids, mask);
	it->n_tokens += len;
	return 0;
}

static void process_preference(struct worker *w, struct item *it, const cJSON *rec)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
	if (!cJSON_GetObjectItemCaseSensitive(rec, "chosen") || !cJSON_GetObjectItemCaseSensitive(rec, "rejected")) {
		fail_item(it, "not-preference", "a preference record needs \"chosen\" and \"rejected\"");
		return;
	}
	cJSON *prompt = p ? side_messages(p, "user") : cJSON_CreateArray();
	if (!prompt) {
		fail_item(it, "not-preference", "\"prompt\" is neither a message list nor a string");
		return;
	}
	int np = cJSON_GetArraySize(prompt);
	if (!preference_side(w, it, rec, prompt, np, "chosen", &it->ids, &it->mask, &it->n) &&
	    !preference_side(w, it, rec, prompt, np, "rejected", &it->ids2, &it->mask2, &it->n2))
		it->to_shard = 1;
	cJSON_Delete(prompt);
}

/*
 * The model's context length from tokenizer_config.json's model_max_length
 * (Hugging Face writes 1e30 when it has none: ignored).  0 when unknown.
 */
static long model_context(const char *tok_path)
{
	struct strbuf p = STRBUF_INIT, sb = STRBUF_INIT;
	size_t n = strlen(tok_path);
	if (n > 5 && !strcmp(tok_path + n - 5, ".json")) {
		const char *slash = strrchr(tok_path, '/');
		strbuf_addf(&p, "%.*s/tokenizer_config.json", slash ? (int)(slash - tok_path) : 1,
			    slash ? tok_path : ".");
	} else {
		strbuf_addf(&p, "%s/tokenizer_config.json", tok_path);
	}
	long ctx = 0;
	cJSON *o = NULL;
	if (strbuf_read_file(&sb, p.buf) >= 0 && ftk_json_parse_object(sb.buf, sb.len, &o, NULL) == 0) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "model_max_length");
		if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 1e8)
			ctx = (long)v->valuedouble;
	}
	cJSON_Delete(o);
	strbuf_release(&p);
	strbuf_release(&sb);
	return ctx;
}

/* The render and the token buffers of a long record are given back after it,
 * not kept for the next. */
static void done_with_long(struct worker *w)
{
	if (w->r.text.alloc > LONG_LINE) {
		ftk_render_release(&w->r);
		w->r = (struct ftk_render)FTK_RENDER_INIT;
	}
	if (w->tk.alloc > LONG_LINE / sizeof(uint32_t)) ftk_tokens_release(&w->tk);
	if (w->mask_alloc > LONG_LINE) { free(w->mask); w->mask = NULL; w->mask_alloc = 0; }
}

static void process(struct worker *w, struct item *it)
{
	const struct conf *cf = w->cf;
	struct ftk_error e;
	cJSON *rec = NULL;
	ftk_error_clear(&e);
	if (ftk_json_parse_record(it->line.data, it->line.len, &rec, &e, NULL)) { it->status = 2; return; }

	if (cf->preference) {
		process_preference(w, it, rec);
		goto done;
	}
	if (cf->decode) {
		const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "ids");
		if (!cJSON_IsArray(ids)) { fail_item(it, "no-ids", "the record has no \"ids\" array to decode"); goto done; }
		size_t n = cJSON_GetArraySize(ids), k = 0;
		uint32_t *v = xmalloc((n + 1) * sizeof(*v));
		const cJSON *x;
		cJSON_ArrayForEach(x, ids) {
			if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 4294967295.0 || x->valuedouble != (double)(uint32_t)x->valuedouble) {
				free(v);
				fail_item(it, "bad-ids", "\"ids\" must hold non-negative integers");
				goto done;
			}
			v[k++] = (uint32_t)x->valuedouble;
		}
		struct strbuf text = STRBUF_INIT, js = STRBUF_INIT;
		if (ftk_tokenizer_decode(cf->tok, v, n, 0, &text, &e) < 0) {
			fail_item(it, "bad-ids", e.msg);
		} else {
			strbuf_add_json_str(&js, text.buf, text.len);
			splice(it, cJSON_GetObjectItemCaseSensitive(rec, "text") != NULL, "text", js.buf);
		}
		free(v);
		strbuf_release(&text);
		strbuf_release(&js);
		goto done;
	}

	int chat = cf->chat_mode || (cf->shards && cJSON_GetObjectItemCaseSensitive(rec, "messages"));
	int has_ids = cJSON_GetObjectItemCaseSensitive(rec, "ids") != NULL;
	int has_count = cJSON_GetObjectItemCaseSensitive(rec, "n_tokens") != NULL;
	long n;
	const uint8_t *mask = NULL;
	if (chat) {
		int owned;
		const cJSON *msgs = ftk_chat_messages(rec, &owned);
		if (!msgs) { fail_item(it, "no-messages", "the record has no messages (nor prompt and completion) to render"); goto done; }
		if (no_template(cf, it)) {
			if (owned) cJSON_Delete((cJSON *)msgs);
			goto done;
		}
		int rc = ftk_chat_render(cf->chat, msgs, cJSON_GetObjectItemCaseSensitive(rec, "tools"), 0, &w->r, &e);
		if (owned) cJSON_Delete((cJSON *)msgs);
		if (rc) { fail_item(it, "template-error", e.msg); goto done; }
		/* the render is all that is tokenized: the tree goes before the
		 * tokenizer's buffers are made (a long record's text is in both) */
		has_ids = cJSON_GetObjectItemCaseSensitive(rec, "ids") != NULL;
		has_count = cJSON_GetObjectItemCaseSensitive(rec, "n_tokens") != NULL;
		cJSON_Delete(rec);
		rec = NULL;
		const char *reason;
		/* the mask matters for shards; ids and counts only refuse a double BOS */
		n = ftk_chat_encode(cf->chat, &w->r, cf->shards ? cf->train_on : FTK_TRAIN_ALL, &w->tk, &w->mask,
				    &w->mask_alloc, &reason, &e);
		/* the render of a long record is not needed past its ids */
		if (w->r.text.alloc > LONG_LINE) {
			ftk_render_release(&w->r);
			w->r = (struct ftk_render)FTK_RENDER_INIT;
		}
		if (n < 0) { fail_item(it, reason, e.msg); goto done; }
		mask = w->mask;
	} else {
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(rec, cf->field);
		if (!cJSON_IsString(text)) {
			char m[300];
			snprintf(m, sizeof(m), "the record has no string \"%s\" (use --chat for messages)", cf->field);
			fail_item(it, "no-text", m);
			int owned;
			const cJSON *msgs = ftk_chat_messages(rec, &owned);
			it->chat_as_text = msgs != NULL;
			if (owned) cJSON_Delete((cJSON *)msgs);
			goto done;
		}
		n = ftk_tokenizer_encode(cf->tok, text->valuestring, strlen(text->valuestring),
					 cf->add_special ? FTK_TOK_ADD_SPECIAL : 0, &w->tk, &e);
		if (n < 0) { fail_item(it, "encode-failed", e.msg); goto done; }
		long bos = ftk_tokenizer_bos_id(cf->tok);
		if (bos >= 0 && n >= 2 && w->tk.ids[0] == (uint32_t)bos && w->tk.ids[1] == (uint32_t)bos) {
			fail_item(it, "double-bos", "the ids start with two BOS tokens: the text begins with the BOS text "
						    "and --add-special added another");
			goto done;
		}
	}
	if (cf->max_tokens > 0 && n > cf->max_tokens) {
		if (!cf->truncate) {
			char m[200];
			snprintf(m, sizeof(m), "%ld tokens, more than --max-tokens %ld", n, cf->max_tokens);
			fail_item(it, "too-long", m);
			it->n_tokens = n;
			goto done;
		}
		it->cut += n - cf->max_tokens;
		n = cf->max_tokens;
		it->truncated = 1;
		if (mask && chat && cf->train_on != FTK_TRAIN_ALL) {
			long learned = 0;
			for (long i = 0; i < n; i++) learned += mask[i];
			if (!learned) {
				fail_item(it, "empty-mask", "no assistant token is left after truncation to --max-tokens");
				goto done;
			}
		}
	}
	it->n_tokens = n;
	if (cf->ids) {
		struct strbuf js = STRBUF_INIT;
		add_ids_json(&js, w->tk.ids, (size_t)n);
		splice(it, has_ids, "ids", js.buf);
		strbuf_release(&js);
	}
	if (cf->count) {
		char b[32];
		snprintf(b, sizeof(b), "%ld", n);
		splice(it, has_count, "n_tokens", b);
	}
	if (cf->shards) {
		it->to_shard = 1;
		it->n = (uint32_t)n;
		keep_seq(w, n, mask, &it->ids, &it->mask);
	}
done:
	cJSON_Delete(rec);
	done_with_long(w);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (size_t i = w->from; i < w->to; i++) process(w, &w->items[i]);
	return NULL;
}

/* --template-var NAME=JSON, repeatable */
static void template_var_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_strlist *l = opt->value;
	if (!strchr(arg, '=') || arg[0] == '=')
		ftk_usage_error("--template-var wants NAME=JSON, got '%s'", arg);
	FTK_ALLOC_GROW(l->v, l->n + 1, l->alloc);
	l->v[l->n++] = arg;
}

int cmd_tokenize(int argc, char **argv)
{
	struct ftk_tool t;
	struct conf cf;
	struct ftk_error err;
	const char *tok_path = NULL, *shard_dir = NULL, *tpl_file = NULL, *tpl_name = NULL;
	long threads = 1, tokens_per_shard = 100000000;
	struct ftk_strlist tvars = { 0 };
	int join = 0, train_on = FTK_TRAIN_ASSISTANT;

	memset(&cf, 0, sizeof(cf));
	cf.field = "text";
	ftk_tool_init(&t, "ftk-tokenize", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "tokenizer", &tok_path, "PATH",
			       "model directory (tokenizer.json, tokenizer_config.json) or a tokenizer.json"),
		FTK_OPT_FLAG(0, "ids", &cf.ids, "add \"ids\": the token ids of the record's text (or rendered chat)"),
		FTK_OPT_FLAG(0, "decode", &cf.decode, "add \"text\": the decoded \"ids\" of the record"),
		FTK_OPT_FLAG(0, "count", &cf.count, "add \"n_tokens\" (totals in the summary and --stats)"),
		FTK_OPT_STRING(0, "shards", &shard_dir, "DIR", "write token shards and manifest.json for ftk-train"),
		FTK_OPT_FLAG(0, "join", &join,
			     "make --shards DIR one set of the shard directories given\n"
			     "(in order; linked, not re-tokenized): the parts of a\n"
			     "cluster job's tasks"),
		FTK_OPT_FLAG(0, "chat", &cf.chat_mode,
			     "tokenize the record's messages rendered through the chat template\n"
			     "(the default for --shards when a record has messages)"),
		FTK_OPT_STRING(0, "field", &cf.field, "NAME", "the text field without --chat (default text)"),
		FTK_OPT_FLAG(0, "add-special", &cf.add_special,
			     "add the tokenizer's special tokens (BOS...) to plain text"),
		FTK_OPT_STRING(0, "template", &tpl_file, "FILE",
			       "use this chat template instead of tokenizer_config.json's"),
		FTK_OPT_STRING(0, "template-name", &tpl_name, "S",
			       "the template's name in shard headers (default derived)"),
		FTK_OPT_CALLBACK(0, "template-var", &tvars, "NAME=JSON", template_var_cb,
				 "one more template variable (enable_thinking=false)"),
		FTK_OPT_CHOICE(0, "train-on", &train_on, "WHAT", FTK_TRAIN_ON_CHOICES,
			       "loss mask for chats: assistant (default), last, all"),
		FTK_OPT_FLAG(0, "preference", &cf.preference,
			     "preference shards for DPO: per record prompt+chosen, then\n"
			     "prompt+rejected, each learned on its answer only"),
		FTK_OPT_LONG(0, "max-tokens", &cf.max_tokens, "N", 1, LONG_MAX,
			     "records longer than N tokens are dropped or truncated; without\n"
			     "it, records past the model's model_max_length are counted\n"
			     "(training will cut them), with a warning above 5% of tokens"),
		FTK_OPT_CHOICE(0, "overflow", &cf.truncate, "HOW", "drop|truncate",
			       "drop (default, to --rejects) or truncate"),
		FTK_OPT_LONG(0, "tokens-per-shard", &tokens_per_shard, "N", 1, LONG_MAX,
			     "start a new shard after N tokens (default 100000000)"),
		FTK_OPT_LONG('j', "threads", &threads, "N", 1, LONG_MAX,
			     "tokenize with N threads (output order is input order)"),
		FTK_OPT_TEXT("\nReject reasons: invalid-json, no-text, no-messages, not-preference, no-ids, bad-ids,\n"
			     "template-error, empty-mask, mask-splits-token, double-bos, encode-failed, too-long.\n"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-tokenize", opts, usage);
	cf.train_on = (enum ftk_train_on)train_on;
	cf.shards = shard_dir != NULL;
	if (join) {
		if (!shard_dir || tok_path || cf.ids || cf.decode || cf.count || cf.preference)
			ftk_tool_usage_error(&t, "--join goes with --shards DIR and the part directories only");
		if (argc < 1)
			ftk_tool_usage_error(&t, "--join needs the part directories");
		if (ftk_shard_join(shard_dir, (const char *const *)argv, argc, &err) < 0) {
			error_at(&err);
			return err.code == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
		}
		return FTK_EXIT_OK;
	}
	if (!tok_path) ftk_tool_usage_error(&t, "--tokenizer is required");
	if (!cf.ids && !cf.decode && !cf.count && !cf.shards)
		ftk_tool_usage_error(&t, "say what to do: --ids, --decode, --count or --shards DIR");
	if (cf.decode && (cf.ids || cf.count || cf.shards || cf.chat_mode))
		ftk_tool_usage_error(&t, "--decode goes alone (not with --ids, --count, --shards or --chat)");
	if (cf.preference && (!cf.shards || cf.ids || cf.count))
		ftk_tool_usage_error(&t, "--preference writes preference shards: use it with --shards DIR only");
	if (threads > 256) threads = 256;

	struct ftk_tokenizer *tok;
	if (ftk_tokenizer_load(&tok, tok_path, &err) < 0) {
		error_at(&err);
		return err.code == FTK_EUNSUPPORTED || err.code == FTK_EDATA || err.code == FTK_ENOTFOUND ? FTK_EXIT_DATA : FTK_EXIT_DATA;
	}
	cf.tok = tok;
	cf.tok_path = tok_path;
	struct ftk_chat *chat = NULL;
	int need_chat = cf.chat_mode || cf.shards;
	if (need_chat) {
		char *src = NULL;
		size_t sl;
		if (tpl_file && ftk_read_all(tpl_file, &src, &sl, &err) < 0) {
			error("cannot read template '%s': %s", tpl_file, err.msg);
			ftk_tokenizer_free(tok);
			return FTK_EXIT_DATA;
		}
		int rc = (src || ftk_tokenizer_chat_template(tok)) ? ftk_chat_open(&chat, tok, src, tpl_name, &err) : FTK_ENOTFOUND;
		free(src);
		if (rc < 0 && (cf.chat_mode || rc != FTK_ENOTFOUND)) {
			if (rc == FTK_ENOTFOUND) error("'%s' has no chat_template: give one with --template FILE", tok_path);
			else error("%s%s%s", tpl_file ? tpl_file : "chat_template", ": ", err.msg);
			ftk_tokenizer_free(tok);
			return FTK_EXIT_DATA;
		}
		for (size_t i = 0; chat && i < tvars.n; i++) {
			const char *eq = strchr(tvars.v[i], '=');
			char *name = xstrndup(tvars.v[i], (size_t)(eq - tvars.v[i]));
			cJSON *v = cJSON_Parse(eq + 1);
			if (!v) v = cJSON_CreateString(eq + 1);	/* a bare word is a string */
			if (ftk_chat_set_var(chat, name, v, &err) < 0) {
				free(name);
				ftk_tool_usage_error(&t, "--template-var: %s", err.msg);
			}
			free(name);
		}
		cf.chat = chat;
	}
	ftk_strlist_release(&tvars);

	struct ftk_shard_writer *sw = NULL;
	if (cf.shards) {
		struct ftk_shard_info info;
		memset(&info, 0, sizeof(info));
		info.kind = cf.preference ? FTK_SHARD_PREFERENCE : FTK_SHARD_SFT;
		info.vocab_size = ftk_tokenizer_vocab_size(tok);
		char tj[4096];
		if (strlen(tok_path) > 5 && !strcmp(tok_path + strlen(tok_path) - 5, ".json")) snprintf(tj, sizeof(tj), "%s", tok_path);
		else snprintf(tj, sizeof(tj), "%s/tokenizer.json", tok_path);
		if (ftk_file_hash(tj, info.tokenizer_hash, &err) < 0) {
			error("%s", err.msg);
			ftk_chat_free(chat);
			ftk_tokenizer_free(tok);
			return FTK_EXIT_DATA;
		}
		snprintf(info.template_name, sizeof(info.template_name), "%s", chat ? ftk_chat_name(chat) : "raw");
		if (ftk_shard_writer_open(&sw, shard_dir, &info, (uint64_t)tokens_per_shard, &err) < 0) {
			error("%s", err.msg);
			ftk_chat_free(chat);
			ftk_tokenizer_free(tok);
			return FTK_EXIT_DATA;
		}
	}

	ftk_tool_start(&t, argc, argv);
	int emit_records = cf.ids || cf.count || cf.decode;
	size_t batch = threads > 1 ? 2048 : 256;
	struct item *items = xcalloc(batch, sizeof(*items));
	struct worker *ws = xcalloc(threads, sizeof(*ws));
	for (long k = 0; k < threads; k++) {
		ws[k].cf = &cf;
		ws[k].items = items;
		ws[k].tk = (struct ftk_tokens)FTK_TOKENS_INIT;
		ws[k].r = (struct ftk_render)FTK_RENDER_INIT;
	}
	uint64_t tokens = 0, masked = 0, truncated = 0;
	int told_no_template = 0, write_failed = 0;
	/* the length training will cut at: --max-tokens, else the model's own */
	long ctx_limit = cf.max_tokens > 0 ? cf.max_tokens : model_context(tok_path);
	const char *ctx_source = cf.max_tokens > 0 ? "--max-tokens" : "model_max_length";
	uint64_t over_records = 0, over_tokens = 0;
	uint64_t not_written = 0;	/* read, tokenized, and lost to a write error */
	long lo = 0, hi = 0;	/* shortest and longest sequence */
	char *cur_file = NULL;
	struct ftk_line line;
	int eof = 0;
	while (!eof) {
		size_t n = 0;
		while (n < batch) {
			if (!ftk_tool_next(&t, &line)) { eof = 1; break; }
			struct item *it = &items[n++];
			memset(it, 0, sizeof(*it));
			it->line = line;
			if (!cur_file || strcmp(cur_file, line.file)) { free(cur_file); cur_file = xstrdup(line.file); }
			it->line.file = xstrdup(cur_file);
			strbuf_init(&it->out, 0);
			/* a long line is not copied: it ends the batch, and the reader
			 * keeps it until the next read, after the batch is written */
			if (line.len >= LONG_LINE) { it->borrowed = 1; break; }
			it->line.data = xstrndup(line.data, line.len);
		}
		if (!n) break;
		long nt = threads < (long)n ? threads : (long)n;
		size_t per = (n + nt - 1) / nt;
		for (long k = 0; k < nt; k++) {
			ws[k].from = k * per;
			ws[k].to = (k + 1) * per < n ? (k + 1) * per : n;
		}
		if (nt == 1) worker_run(&ws[0]);
		else {
			for (long k = 0; k < nt; k++) pthread_create(&ws[k].th, NULL, worker_run, &ws[k]);
			for (long k = 0; k < nt; k++) pthread_join(ws[k].th, NULL);
		}
		for (size_t i = 0; i < n; i++) {
			struct item *it = &items[i];
			if (it->status == 2) {
				cJSON *rec = ftk_tool_parse(&t, &it->line);	/* rejects it with the usual message */
				cJSON_Delete(rec);
			} else if (it->status == 1) {
				if (!strcmp(it->reason, "no-chat-template") && !told_no_template++)
					error("%s:%ld: a chat record, but %s", it->line.file, it->line.lineno, it->msg);
				if (it->chat_as_text)
					ftk_tool_hint(&t, "%s:%ld holds a chat (messages), and without --chat only "
						      "\"%s\" is read: add --chat to render chats through the "
						      "template", it->line.file, it->line.lineno, cf.field);
				cJSON *extra = cJSON_CreateObject();
				if (it->msg) cJSON_AddStringToObject(extra, "error", it->msg);
				if (it->n_tokens) cJSON_AddNumberToObject(extra, "n_tokens", (double)it->n_tokens);
				ftk_tool_reject(&t, &it->line, it->reason, extra);
			} else {
				if (it->to_shard && write_failed) {
					/* the disk is full (or the like): said once; the rest
					 * of the batch is read but not written, and counted so */
					not_written++;
					goto next;
				}
				if (it->to_shard) {
					if (ftk_shard_write(sw, it->ids, it->mask, it->n, &err) < 0 ||
					    (it->ids2 && ftk_shard_write(sw, it->ids2, it->mask2, it->n2, &err) < 0)) {
						error("%s", err.msg);
						t.failed = 1;
						eof = 1;
						write_failed = 1;
						not_written++;
						goto next;
					}
					for (uint32_t k = 0; k < it->n; k++) masked += it->mask[k];
					for (uint32_t k = 0; k < it->n2; k++) masked += it->mask2[k];
				}
				tokens += (uint64_t)it->n_tokens;
				if (it->truncated) truncated++;
				if (cf.max_tokens > 0) {
					/* cut here, by --overflow truncate */
					over_records += it->cut > 0;
					over_tokens += (uint64_t)it->cut;
				} else if (ctx_limit > 0) {
					/* what training at the model's length will cut */
					long side[2] = { it->to_shard ? (long)it->n : it->n_tokens,
							 it->to_shard ? (long)it->n2 : 0 };
					int over = 0;
					for (int k = 0; k < 2; k++)
						if (side[k] > ctx_limit) {
							over = 1;
							over_tokens += (uint64_t)(side[k] - ctx_limit);
						}
					over_records += over;
				}
				if (!lo || it->n_tokens < lo) lo = it->n_tokens;
				if (it->n_tokens > hi) hi = it->n_tokens;
				if (emit_records) {
					if (it->changed) ftk_tool_emit_raw(&t, it->out.buf, it->out.len);
					else ftk_tool_emit(&t, &it->line);
				} else {
					t.n_out++;
				}
			}
		next:
			if (!it->borrowed) free(it->line.data);
			free((char *)it->line.file);
			free(it->msg);
			free(it->ids);
			free(it->mask);
			free(it->ids2);
			free(it->mask2);
			strbuf_release(&it->out);
		}
	}
	free(cur_file);
	for (long k = 0; k < threads; k++) {
		ftk_tokens_release(&ws[k].tk);
		ftk_render_release(&ws[k].r);
		free(ws[k].mask);
	}
	free(ws);
	free(items);
	if (sw && ftk_shard_writer_close(sw, &err) < 0) {
		if (!write_failed)	/* else said once already */
			error("%s", err.msg);
		t.failed = 1;
		write_failed = 1;
	}
	if (write_failed && !emit_records) {
		/* no manifest: none of the shards is usable, so nothing went out */
		not_written += t.n_out;
		t.n_out = 0;
	}
	ftk_tool_count(&t, "tokens", tokens);
	if (cf.shards) ftk_tool_count(&t, "masked_tokens", masked);
	if (truncated) ftk_tool_count(&t, "truncated", truncated);
	if (not_written) ftk_tool_count(&t, "not-written", not_written);
	/* tokens before any cut: those kept plus those cut (or to be cut) */
	uint64_t all_tokens = cf.max_tokens > 0 ? tokens + over_tokens : tokens;
	if (over_records) {
		ftk_tool_count(&t, cf.max_tokens > 0 ? "tokens-truncated" : "tokens-past-context", over_tokens);
		if (cf.max_tokens <= 0) ftk_tool_count(&t, "records-past-context", over_records);
	}
	if (ctx_limit > 0 && all_tokens && over_tokens * 20 > all_tokens) {
		uint64_t n_ok = t.n_in - t.n_rejected;
		if (cf.max_tokens > 0)
			warning("%llu of %llu records were longer than --max-tokens %ld and were cut "
				"there: %.0f%% of all the tokens are gone",
				(unsigned long long)over_records, (unsigned long long)n_ok, ctx_limit,
				100.0 * (double)over_tokens / (double)all_tokens);
		else
			warning("%llu of %llu records are longer than the model's %ld tokens "
				"(model_max_length); training will cut them there and lose %.0f%% of "
				"the tokens (longest %ld): split or filter them (--max-tokens %ld), "
				"or train with a longer --seq-len if the model allows it",
				(unsigned long long)over_records, (unsigned long long)n_ok, ctx_limit,
				100.0 * (double)over_tokens / (double)all_tokens, hi, ctx_limit);
	}
	if (!t.extra_stats) t.extra_stats = cJSON_CreateObject();
	cJSON_AddNumberToObject(t.extra_stats, "tokens", (double)tokens);
	cJSON_AddNumberToObject(t.extra_stats, "min_tokens", (double)lo);
	cJSON_AddNumberToObject(t.extra_stats, "max_tokens", (double)hi);
	if (ctx_limit > 0) {
		cJSON *cx = cJSON_AddObjectToObject(t.extra_stats, "context");
		cJSON_AddNumberToObject(cx, "limit", (double)ctx_limit);
		cJSON_AddStringToObject(cx, "from", ctx_source);
		cJSON_AddNumberToObject(cx, "records_over", (double)over_records);
		cJSON_AddNumberToObject(cx, "tokens_over", (double)over_tokens);
		cJSON_AddNumberToObject(cx, "tokens_over_fraction",
					all_tokens ? (double)over_tokens / (double)all_tokens : 0.0);
	}
	cJSON_AddStringToObject(t.extra_stats, "tokenizer_hash", ftk_tokenizer_hash(tok));
	if (chat) cJSON_AddStringToObject(t.extra_stats, "template", ftk_chat_name(chat));
	ftk_chat_free(chat);
	ftk_tokenizer_free(tok);
	return ftk_tool_finish(&t);
}

/*
 * chat.c: rendering records through the model's chat template, and the loss
 * mask derived from the render.
 *
 * The render is transformers.js's apply_chat_template (see chat.h).  The
 * assistant spans come from the Jinja interpreter's iteration reports: the
 * messages array is "tracked", so every iteration of a for loop over one of
 * its elements reports where its output went, and the fields content,
 * reasoning_content and tool_calls are "tainted", so the report also says
 * where the first byte taken from the message itself landed.  The role
 * header that precedes it (<|im_start|>assistant\n, the Llama 3 header) is
 * never learned; the content, the tool calls and the end-of-turn token are.
 *
 * The mask is then a matter of offsets: the render is encoded with byte
 * offsets, and a token is learned when its bytes lie inside a span.  A token
 * that straddles a span boundary means the template and the tokenizer
 * disagree about where a turn starts or ends; such a record is refused
 * rather than trained on with a mask that is off by a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "chat.h"
#include "jinja.h"
#include "json.h"
#include "record.h"

struct ftk_chat {
	const struct ftk_tokenizer *tok;
	struct ftk_jinja *tpl;
	char name[64];
	cJSON *specials;	/* {"bos_token": "<s>", ...} and ftk_chat_set_var's variables */
	char *gen_prompt;	/* what add_generation_prompt adds, "" when nothing or unknown */
};

static const char *const TAINT_KEYS[] = { "content", "reasoning_content", "tool_calls", "thinking", NULL };

void ftk_render_release(struct ftk_render *r)
{
	if (!r) return;
	strbuf_release(&r->text);
	free(r->spans);
	r->spans = NULL;
	r->n_spans = r->alloc_spans = 0;
}

int ftk_train_on_parse(const char *s)
{
	if (!strcmp(s, "assistant")) return FTK_TRAIN_ASSISTANT;
	if (!strcmp(s, "all")) return FTK_TRAIN_ALL;
	if (!strcmp(s, "last")) return FTK_TRAIN_LAST;
	return -1;
}

int ftk_chat_open(struct ftk_chat **out, const struct ftk_tokenizer *tok, const char *template_src,
		  const char *name, struct ftk_error *err)
{
	*out = NULL;
	const char *src = template_src ? template_src : ftk_tokenizer_chat_template(tok);
	if (!src)
		return ftk_error_msg(err, FTK_ENOTFOUND, "the tokenizer in '%s' has no chat_template (give one with --template)",
				     ftk_tokenizer_dir(tok));
	struct ftk_chat *c = xcalloc(1, sizeof(*c));
	c->tok = tok;
	int rc = ftk_jinja_parse(&c->tpl, src, strlen(src), err);
	if (rc) {
		if (err) {
			char m[sizeof(err->msg)];
			snprintf(m, sizeof(m), "chat template line %ld: %.700s", err->line, err->msg);
			snprintf(err->msg, sizeof(err->msg), "%s", m);
			err->line = 0;
		}
		free(c);
		return rc;
	}
	if (name) {
		snprintf(c->name, sizeof(c->name), "%s", name);
	} else {
		const char *dir = ftk_tokenizer_dir(tok);
		const char *base = strrchr(dir, '/');
		base = base && base[1] ? base + 1 : dir;
		snprintf(c->name, sizeof(c->name), "%.50s-%08x", base, (unsigned)(XXH64(src, strlen(src), 0) >> 32));
	}
	/* the special-token variables transformers.js passes */
	static const char *const keys[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
					    "cls_token", "mask_token", NULL };
	c->specials = cJSON_CreateObject();
	const cJSON *cfg = ftk_tokenizer_config(tok);
	for (int i = 0; keys[i]; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[i]);
		const char *s = cJSON_IsString(v) ? v->valuestring : ftk_json_get_str(v, "content");
		if (s && *s) cJSON_AddStringToObject(c->specials, keys[i], s);
	}
	/*
	 * The generation prompt (what add_generation_prompt appends, such as
	 * "<|im_start|>assistant\n"): an assistant turn whose output starts with
	 * it is learned from right after it, so that everything the model would
	 * generate at inference (Qwen3's <think> block included) is learned.
	 */
	c->gen_prompt = xstrdup("");
	cJSON *probe = cJSON_Parse("[{\"role\":\"user\",\"content\":\"x\"}]");
	struct ftk_render a = FTK_RENDER_INIT, b = FTK_RENDER_INIT;
	if (!ftk_chat_render(c, probe, NULL, 0, &a, NULL) && !ftk_chat_render(c, probe, NULL, 1, &b, NULL) &&
	    b.text.len > a.text.len && !memcmp(a.text.buf, b.text.buf, a.text.len)) {
		free(c->gen_prompt);
		c->gen_prompt = xstrndup(b.text.buf + a.text.len, b.text.len - a.text.len);
	}
	ftk_render_release(&a);
	ftk_render_release(&b);
	cJSON_Delete(probe);
	*out = c;
	return 0;
}

void ftk_chat_free(struct ftk_chat *c)
{
	if (!c) return;
	ftk_jinja_free(c->tpl);
	cJSON_Delete(c->specials);
	free(c->gen_prompt);
	free(c);
}

const char *ftk_chat_name(const struct ftk_chat *c) { return c->name; }

int ftk_chat_set_var(struct ftk_chat *c, const char *name, cJSON *value, struct ftk_error *err)
{
	static const char *const reserved[] = { "messages", "tools", "documents", "add_generation_prompt", NULL };
	for (int i = 0; reserved[i]; i++)
		if (!strcmp(name, reserved[i])) {
			cJSON_Delete(value);
			return ftk_error_msg(err, FTK_EUSAGE, "'%s' is set by the renderer, not by a template variable", name);
		}
	if (cJSON_GetObjectItemCaseSensitive(c->specials, name))
		cJSON_ReplaceItemInObjectCaseSensitive(c->specials, name, value);
	else
		cJSON_AddItemToObject(c->specials, name, value);
	return 0;
}

static int is_trailing_ws(char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; }

/*
 * Messages whose content is a list of parts, rendered as the text of those
 * parts joined by one space, as transformers' own server does for a
 * text-only model (transformers serve, commands/serving.py: the "text" of
 * each text part, " ".join), so that ftk-tokenize, ftk-generate and
 * ftk-serve give a template the same string for the same message: a
 * template that prints content as it is would otherwise print a list as a
 * Python value.  Content that is neither a string, null, nor a
 * list of text parts is refused, never printed.
 *
 * A null or missing content (an assistant turn that only calls tools, as
 * OpenAI writes it and docs/formats.md keeps it) reaches the template as "",
 * as vLLM hands it over (entrypoints/chat_utils.py: no content is no parts,
 * joined to "").  Templates concatenate content as a string: given null,
 * @huggingface/jinja fails on Qwen3's and Llama 3's templates, Python's
 * Jinja2 fails on Qwen3's and prints "None" into Llama 3's; given "", both
 * render the same text (tools/ref/gen-toolcall.mjs, toolcall_ref.py).
 *
 * *flat is a new array when some content was changed (caller frees), else NULL.
 */
static int flatten_content(const cJSON *messages, cJSON **flat, struct ftk_error *err)
{
	*flat = NULL;
	const cJSON *m;
	int i = 0, change = 0;
	cJSON_ArrayForEach(m, messages) {
		const cJSON *ct = cJSON_GetObjectItemCaseSensitive(m, "content");
		char field[64];
		snprintf(field, sizeof(field), "messages[%d].content", i);
		if (cJSON_IsArray(ct)) {
			int k = 0;
			const cJSON *p;
			cJSON_ArrayForEach(p, ct) {
				const char *type = ftk_json_get_str(p, "type");
				int text = cJSON_IsString(p) ||
					   (cJSON_IsObject(p) && (!type || !strcmp(type, "text")) &&
					    (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "text")) ||
					     cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "value"))));
				if (!text) {
					snprintf(field, sizeof(field), "messages[%d].content[%d]", i, k);
					return ftk_error_set(err, FTK_EDATA, NULL, 0, field,
							     "%s is %s%.40s%s: only text parts can be rendered (ftk convert "
							     "turns reasoning and tool_call parts into fields)",
							     field, type ? "a part of type '" : "a JSON ",
							     type ? type : ftk_json_type_name(p), type ? "'" : "");
				}
				k++;
			}
			change = 1;
		} else if (ct && !cJSON_IsString(ct) && !cJSON_IsNull(ct)) {
			return ftk_error_set(err, FTK_EDATA, NULL, 0, field,
					     "%s must be a string or a list of text parts, not a JSON %s", field,
					     ftk_json_type_name(ct));
		} else if (!ct || cJSON_IsNull(ct)) {
			change = change || cJSON_IsObject(m);
		}
		i++;
	}
	if (!change)
		return 0;
	cJSON *copy = cJSON_Duplicate(messages, 1), *cm;
	cJSON_ArrayForEach(cm, copy) {
		cJSON *ct = cJSON_GetObjectItemCaseSensitive(cm, "content");
		if (cJSON_IsObject(cm) && (!ct || cJSON_IsNull(ct))) {
			if (ct)
				cJSON_ReplaceItemInObjectCaseSensitive(cm, "content", cJSON_CreateString(""));
			else
				cJSON_AddStringToObject(cm, "content", "");
			continue;
		}
		if (!cJSON_IsArray(ct))
			continue;
		struct strbuf sb = STRBUF_INIT;
		const cJSON *p;
		int k = 0;
		cJSON_ArrayForEach(p, ct) {
			const cJSON *t = cJSON_IsString(p) ? p : cJSON_GetObjectItemCaseSensitive(p, "text");
			if (!cJSON_IsString(t))
				t = cJSON_GetObjectItemCaseSensitive(p, "value");	/* LLaMA-Factory's */
			if (k++)
				strbuf_addch(&sb, ' ');
			strbuf_addstr(&sb, t->valuestring);
		}
		cJSON_ReplaceItemInObjectCaseSensitive(cm, "content", cJSON_CreateString(sb.buf));
		strbuf_release(&sb);
	}
	*flat = copy;
	return 0;
}

int ftk_chat_render(const struct ftk_chat *c, const cJSON *messages, const cJSON *tools,
		    int add_generation_prompt, struct ftk_render *out, struct ftk_error *err)
{
	strbuf_reset(&out->text);
	out->n_spans = 0;
	if (!cJSON_IsArray(messages))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "messages", "not an array");
	cJSON *flat;
	int rc = flatten_content(messages, &flat, err);
	if (rc < 0)
		return rc;
	if (flat)
		messages = flat;
	cJSON *vars = cJSON_CreateObject();
	cJSON *mref = cJSON_CreateArrayReference(messages->child);
	cJSON_AddItemToObject(vars, "messages", mref);
	cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt);
	if (tools && !cJSON_IsNull(tools))
		cJSON_AddItemToObject(vars, "tools", cJSON_IsArray(tools) ? cJSON_CreateArrayReference(tools->child)
									  : cJSON_CreateObjectReference(tools->child));
	else
		cJSON_AddNullToObject(vars, "tools");
	cJSON_AddNullToObject(vars, "documents");
	const cJSON *sp;
	cJSON_ArrayForEach(sp, c->specials) cJSON_AddItemToObject(vars, sp->string, cJSON_Duplicate(sp, 1));

	struct ftk_jinja_opts opts = { 0 };
	opts.track = mref;
	opts.taint_keys = TAINT_KEYS;
	rc = ftk_jinja_render(c->tpl, vars, &opts, &out->text, err);
	cJSON_Delete(vars);
	if (rc) {
		cJSON_Delete(flat);
		if (err) {
			char m[sizeof(err->msg)];
			snprintf(m, sizeof(m), "chat template line %ld: %.700s", err->line, err->msg);
			snprintf(err->msg, sizeof(err->msg), "%s", m);
			err->line = 0;
		}
		free(opts.iters);
		return rc;
	}
	/* per assistant message, its largest iteration (a template may loop over
	 * the messages more than once, e.g. Qwen3 reversed to find the last query) */
	int nm = cJSON_GetArraySize(messages);
	long *best = xmalloc((nm + 1) * sizeof(*best));
	for (int i = 0; i < nm; i++) best[i] = -1;
	for (size_t k = 0; k < opts.n_iters; k++) {
		const struct ftk_jinja_iter *it = &opts.iters[k];
		if (it->end <= it->start) continue;
		long b = best[it->index];
		if (b < 0 || it->end - it->start > opts.iters[b].end - opts.iters[b].start) best[it->index] = (long)k;
	}
	for (int i = 0; i < nm; i++) {
		const char *role = ftk_json_get_str(cJSON_GetArrayItem(messages, i), "role");
		if (best[i] < 0 || !role || strcmp(role, "assistant")) continue;
		const struct ftk_jinja_iter *it = &opts.iters[best[i]];
		size_t s = it->first_taint >= 0 ? (size_t)it->first_taint : it->start, e = it->end;
		size_t gl = strlen(c->gen_prompt);
		if (gl && it->end - it->start >= gl && !memcmp(out->text.buf + it->start, c->gen_prompt, gl))
			s = it->start + gl;
		else
			while (s > it->start && out->text.buf[s - 1] == ' ') s--;
		while (e > s && is_trailing_ws(out->text.buf[e - 1])) e--;
		if (e <= s) continue;
		FTK_ALLOC_GROW(out->spans, out->n_spans + 1, out->alloc_spans);
		out->spans[out->n_spans++] = (struct ftk_span){ s, e, i };
	}
	free(best);
	free(opts.iters);
	cJSON_Delete(flat);
	/* text order (insertion sort: a handful of spans) */
	for (size_t i = 1; i < out->n_spans; i++)
		for (size_t j = i; j > 0 && out->spans[j - 1].start > out->spans[j].start; j--) {
			struct ftk_span t = out->spans[j - 1];
			out->spans[j - 1] = out->spans[j];
			out->spans[j] = t;
		}
	return 0;
}

/* The loss mask built as the tokenizer hands over ids and offsets. */
struct mask_walk {
	const struct ftk_render *r;
	uint8_t **mask;
	size_t *mask_alloc;
	size_t k, last;		/* the span the next token is looked for in */
	long learned;
	int straddle;		/* a token straddles a turn's boundary: what follows is 0 */
	size_t bad, bad_s, bad_e, bad_span;
	uint32_t bad_id;
};

static int mask_each(void *arg, size_t first, const uint32_t *ids, const uint32_t *start, const uint32_t *end,
		     size_t n, struct ftk_error *err)
{
	struct mask_walk *mw = arg;
	if (first + n + 1 > *mw->mask_alloc) {
		size_t na = *mw->mask_alloc * 2;
		if (na < first + n + 64) na = first + n + 64;
		*mw->mask = xrealloc(*mw->mask, na);
		*mw->mask_alloc = na;
	}
	uint8_t *m = *mw->mask + first;
	memset(m, 0, n);
	for (size_t i = 0; i < n && !mw->straddle; i++) {
		size_t ts = start[i], te = end[i];
		while (mw->k < mw->last && mw->r->spans[mw->k].end <= ts) mw->k++;
		if (mw->k >= mw->last) break;
		const struct ftk_span *sp = &mw->r->spans[mw->k];
		if (ts == te) {	/* a token the normalizer made: it belongs where it sits */
			if (ts >= sp->start && ts < sp->end) { m[i] = 1; mw->learned++; }
			continue;
		}
		if (te <= sp->start) continue;
		if (ts >= sp->start && te <= sp->end) { m[i] = 1; mw->learned++; continue; }
		mw->straddle = 1;	/* said once the ids are all made (a double BOS goes first) */
		mw->bad = first + i;
		mw->bad_id = ids[i];
		mw->bad_s = ts;
		mw->bad_e = te;
		mw->bad_span = mw->k;
	}
	return 0;
}

long ftk_chat_encode(const struct ftk_chat *c, const struct ftk_render *r, enum ftk_train_on policy,
		     struct ftk_tokens *toks, uint8_t **mask, size_t *mask_alloc, const char **reason,
		     struct ftk_error *err)
{
	*reason = NULL;
	/* offsets (8 bytes a token, and 8 a byte inside the tokenizer) only
	 * when there is a mask to build from them, and then a stretch at a
	 * time as the tokenizer makes them: a long render's are never all held */
	struct mask_walk mw = { .r = r, .mask = mask, .mask_alloc = mask_alloc, .last = r->n_spans };
	if (policy == FTK_TRAIN_LAST && r->n_spans) mw.k = r->n_spans - 1;
	long n = policy == FTK_TRAIN_ALL ? ftk_tokenizer_encode(c->tok, r->text.buf, r->text.len, 0, toks, err)
					 : ftk_tokenizer_encode_each(c->tok, r->text.buf, r->text.len, 0, mask_each, &mw,
								     toks, err);
	if (n < 0) { *reason = "encode-failed"; return n; }
	if ((size_t)n + 1 > *mask_alloc) {
		*mask_alloc = (size_t)n + 64;
		*mask = xrealloc(*mask, *mask_alloc);
	}
	if (policy == FTK_TRAIN_ALL) memset(*mask, 1, (size_t)n);
	long bos = ftk_tokenizer_bos_id(c->tok);
	if (bos >= 0 && n >= 2 && toks->ids[0] == (uint32_t)bos && toks->ids[1] == (uint32_t)bos) {
		*reason = "double-bos";
		return ftk_error_msg(err, FTK_EDATA, "the token ids start with two BOS tokens (%ld): the template writes one and "
				     "something added another", bos);
	}
	if (policy == FTK_TRAIN_ALL) return n;
	if (mw.straddle) {
		const struct ftk_span *sp = &r->spans[mw.bad_span];
		*reason = "mask-splits-token";
		return ftk_error_msg(err, FTK_EDATA,
				     "token %zu (id %u, bytes %zu..%zu of the render) straddles the boundary of assistant turn "
				     "messages[%d] (bytes %zu..%zu): the mask cannot follow the turn exactly",
				     mw.bad, mw.bad_id, mw.bad_s, mw.bad_e, sp->message, sp->start, sp->end);
	}
	if (!mw.learned) {
		*reason = "empty-mask";
		return ftk_error_msg(err, FTK_EDATA, "%s", r->n_spans ? "no token falls inside an assistant turn"
								  : "the render has no assistant turn to learn");
	}
	return n;
}

const cJSON *ftk_chat_messages(const cJSON *rec, int *owned)
{
	*owned = 0;
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
	if (cJSON_IsArray(msgs))
		return msgs;	/* content in parts is joined by ftk_chat_render */
	const char *p = ftk_json_get_str(rec, "prompt"), *comp = ftk_json_get_str(rec, "completion");
	if (p && comp) {
		cJSON *a = cJSON_CreateArray();
		cJSON *u = cJSON_CreateObject(), *as = cJSON_CreateObject();
		cJSON_AddStringToObject(u, "role", "user");
		cJSON_AddStringToObject(u, "content", p);
		cJSON_AddStringToObject(as, "role", "assistant");
		cJSON_AddStringToObject(as, "content", comp);
		cJSON_AddItemToArray(a, u);
		cJSON_AddItemToArray(a, as);
		*owned = 1;
		return a;
	}
	return NULL;
}

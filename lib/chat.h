/*
 * chat.h: a record rendered through the model's own chat template, the
 * character spans of its assistant turns, and the loss mask derived from them.
 *
 * Rendering is what transformers.js apply_chat_template does: the template
 * (tokenizer_config.json's chat_template, or one given explicitly) is run by
 * the Jinja interpreter (jinja.h) with the variables messages, tools,
 * documents (none), add_generation_prompt, and every special token named in
 * tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, ...).
 * The text is then encoded with add_special_tokens off: a template that
 * writes bos_token gets exactly one BOS.
 *
 * Assistant spans come from the same single render, not from re-rendering
 * prefixes (which breaks on templates such as Qwen3's that render earlier
 * turns differently).  The interpreter reports, for each iteration of a for
 * loop over the messages, where its output went and where the first byte
 * derived from the message's content, reasoning_content or tool_calls landed.
 * An assistant turn's span runs from that byte (moved back over spaces, so
 * that SentencePiece's "▁word" stays whole) to the end of the iteration's
 * output less trailing whitespace, so the end-of-turn token (<|im_end|>,
 * <|eot_id|>, </s>) is learned and the role header is not.
 *
 * Masks follow shard.h: mask[i] = 1 when token i is a target to learn.  A
 * record is refused (FTK_EDATA, with a short reason for --rejects) when its
 * mask is all zeros ("empty-mask"), when a span boundary falls inside a token
 * ("mask-splits-token"), or when the ids start with two BOS ("double-bos").
 */
#ifndef FTK_CHAT_H
#define FTK_CHAT_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"
#include "tokenizer.h"

struct ftk_chat;

/* One assistant turn in the rendered text: bytes [start, end). */
struct ftk_span {
	size_t start, end;
	int message;		/* index into messages */
};

/* A rendered conversation.  Owns its buffers; ftk_render_release frees them. */
struct ftk_render {
	struct strbuf text;
	struct ftk_span *spans;	/* assistant turns, in text order */
	size_t n_spans, alloc_spans;
};
#define FTK_RENDER_INIT { STRBUF_INIT, NULL, 0, 0 }
void ftk_render_release(struct ftk_render *r);

/*
 * Prepare the chat template of tok for rendering.  template_src NULL means
 * the tokenizer's own chat_template (FTK_ENOTFOUND, "the tokenizer has no
 * chat_template", when it has none).  name is the template's name for shard
 * headers; NULL derives "<model dir name>-<8 hex of the template's hash>".
 * tok is borrowed and must outlive the chat.  Returns 0 and *out (free with
 * ftk_chat_free), or the parse error of the template (FTK_EDATA, with the
 * template line in err->line, or FTK_EUNSUPPORTED naming the Jinja feature).
 */
int ftk_chat_open(struct ftk_chat **out, const struct ftk_tokenizer *tok,
		  const char *template_src, const char *name, struct ftk_error *err);
void ftk_chat_free(struct ftk_chat *c);

/*
 * Pass one more variable to the template on every render, as keyword
 * arguments to apply_chat_template do (Qwen3's enable_thinking, a
 * date_string...).  value is consumed.  Returns 0, or FTK_EUSAGE for a name
 * the renderer sets itself (messages, tools, documents, add_generation_prompt).
 */
int ftk_chat_set_var(struct ftk_chat *c, const char *name, cJSON *value, struct ftk_error *err);

/* The template's name (at most 63 bytes).  Borrowed. */
const char *ftk_chat_name(const struct ftk_chat *c);

/*
 * Render messages (a JSON array of {"role","content",...}, borrowed) with
 * tools (an array or NULL) through the template into out (reset first).
 * Fills out->spans with every assistant turn.  A content given as a list of
 * parts reaches the template as the text of its parts joined by " ", as
 * transformers' server joins them (the
 * same string whoever renders it: ftk-tokenize, ftk-generate, ftk-serve);
 * a null or missing content (a turn that only calls tools) reaches it as "",
 * as vLLM passes it; a content that is not a string, null, or a list of
 * text parts is FTK_EDATA with err->field "messages[i].content".  Returns 0, or FTK_EDATA with
 * the template's raise_exception message or a runtime error ("'x' is
 * undefined" where the template needs it), FTK_EUNSUPPORTED naming a Jinja
 * feature the interpreter lacks.
 */
int ftk_chat_render(const struct ftk_chat *c, const cJSON *messages, const cJSON *tools,
		    int add_generation_prompt, struct ftk_render *out, struct ftk_error *err);

enum ftk_train_on {
	FTK_TRAIN_ASSISTANT = 0,	/* every assistant turn (the default) */
	FTK_TRAIN_ALL,			/* every token */
	FTK_TRAIN_LAST,			/* the last assistant turn only */
};
/* The values' names in enum order, for an option table's choice row */
#define FTK_TRAIN_ON_CHOICES "assistant|all|last"
/* Parse "all", "assistant", "last".  Returns the value or -1. */
int ftk_train_on_parse(const char *s);

/*
 * Encode a render (without adding special tokens, as apply_chat_template
 * does) into toks and build its loss mask in *mask (xrealloc'd, *mask_alloc
 * its capacity; caller frees).  Returns the number of tokens, or FTK_EDATA
 * with *reason set to "empty-mask", "mask-splits-token" or "double-bos"
 * (static strings) and a message in err.  toks and mask are filled even
 * then, so a caller may still look at them.
 */
long ftk_chat_encode(const struct ftk_chat *c, const struct ftk_render *r,
		     enum ftk_train_on policy, struct ftk_tokens *toks, uint8_t **mask,
		     size_t *mask_alloc, const char **reason, struct ftk_error *err);

/*
 * Turn a record into messages for rendering: a chat record's messages (as
 * they are: ftk_chat_render joins content given in parts), a
 * prompt/completion pair (user, assistant), or plain text (NULL: not a chat).
 * Returns a borrowed or new array; *owned is set to 1 when the caller must
 * cJSON_Delete it.  NULL when the record has nothing to render.
 */
const cJSON *ftk_chat_messages(const cJSON *rec, int *owned);

#endif

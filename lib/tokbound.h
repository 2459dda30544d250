/*
 * tokbound.h: the most bytes of input text one token can stand for, so that
 * a text too long for a context can be refused from its length alone,
 * before it is tokenized (ftk-serve's prompts; issue 18.3).
 */
#ifndef FTK_TOKBOUND_H
#define FTK_TOKBOUND_H

#include <stddef.h>
#include "tokenizer.h"

/*
 * B such that no tokenization by tok of a text of L bytes has fewer than
 * L / B ids (rounded up), whatever the text: a text longer than B * N bytes
 * cannot fit in N tokens.  It is the longest vocabulary or added-token
 * string in bytes times what the normalizer can shrink text by (NFC, NFKC
 * and Lowercase by 3 at most: a Hangul syllable composed from three jamo,
 * the Kelvin sign lowercased to "k"; Replace by its pattern's length over
 * its content's).  Returns 0 when there is no bound: a normalizer or
 * pre-tokenizer that can delete text (Strip, StripAccents, Whitespace,
 * a Replace with empty content, a Split that removes), unknown tokens
 * fused into one, or a tokenizer.json that cannot be read again from
 * ftk_tokenizer_dir(tok).
 */
size_t ftk_tokenizer_bytes_per_token(const struct ftk_tokenizer *tok);

#endif

// gen-synthetic.mjs: reference ids for tokenizer components that the four
// committed tokenizers do not use (Metaspace, NFKC, NFD, Lowercase, Strip,
// Digits, Whitespace, regex Replace, GPT-2 ByteLevel with its regex and
// prefix space, merges without ignore_merges, TemplateProcessing with BOS and
// EOS, added tokens with lstrip/rstrip/single_word).  Each variant is a
// committed tokenizer.json with some components replaced (the "patch"); the
// C test applies the same patch.  Ids come from transformers.js.
//
//   cd tools/ref && npm install --ignore-scripts && node gen-synthetic.mjs
//
// writes tests/fixtures/tokref/synthetic.jsonl.zst: one line per variant,
// {"name","base","patch","texts":[...],"ids":[[...]...],"ids_add":[[...]...]}.
// MergedWithPrevious/MergedWithNext/Contiguous splits are left out: the
// tokenizers.js README says it cannot reproduce them.  Two of its quirks are
// avoided rather than copied: a Split on a String pattern with behavior
// Removed keeps the separators (the Rust library removes them; a Regex
// pattern is used here), and Prepend adds to an empty string (the Rust
// library does not; Strip is tested without Prepend).
import fs from 'fs';
import os from 'os';
import path from 'path';
import { execFileSync } from 'child_process';
import { fileURLToPath } from 'url';
import { AutoTokenizer, env } from '@huggingface/transformers';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASES = { stories260K: 'datasets/models/stories260K', llama3: 'tests/fixtures/tokenizers/llama3' };
const M = '\u2581';
const seq = (...normalizers) => ({ type: 'Sequence', normalizers });
const spNorm = [{ type: 'Prepend', prepend: M }, { type: 'Replace', pattern: { String: ' ' }, content: M }];
const VARIANTS = [
	{ name: 'sp-metaspace-always', base: 'stories260K', patch: { normalizer: null,
		pre_tokenizer: { type: 'Metaspace', replacement: M, prepend_scheme: 'always', split: true },
		decoder: { type: 'Metaspace', replacement: M, prepend_scheme: 'always', split: true } } },
	{ name: 'sp-metaspace-first-nosplit', base: 'stories260K', patch: { normalizer: null,
		pre_tokenizer: { type: 'Metaspace', replacement: M, prepend_scheme: 'first', split: false },
		decoder: { type: 'Metaspace', replacement: M, prepend_scheme: 'first', split: false } } },
	{ name: 'sp-nfkc-lower', base: 'stories260K', patch: {
		normalizer: seq({ type: 'NFKC' }, { type: 'Lowercase' }, ...spNorm) } },
	{ name: 'sp-nfd-digits', base: 'stories260K', patch: {
		normalizer: seq({ type: 'NFD' }, ...spNorm), pre_tokenizer: { type: 'Digits', individual_digits: true } } },
	{ name: 'sp-whitespace', base: 'stories260K', patch: { normalizer: null, pre_tokenizer: { type: 'Whitespace' } } },
	{ name: 'bl-gpt2', base: 'llama3', patch: {
		pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
		model: { ignore_merges: false } } },
	{ name: 'bl-split-removed-bos-eos', base: 'llama3', patch: {
		pre_tokenizer: { type: 'Sequence', pretokenizers: [
			{ type: 'Split', pattern: { Regex: ' ' }, behavior: 'Removed', invert: false },
			{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
		post_processor: { type: 'TemplateProcessing',
			single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|end_of_text|>', type_id: 0 } }],
			pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
			special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] },
				'<|end_of_text|>': { id: '<|end_of_text|>', ids: [128001], tokens: ['<|end_of_text|>'] } } } } },
	{ name: 'bl-replace-nfkc-lower-strip', base: 'llama3', patch: {
		normalizer: seq({ type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'NFKC' }, { type: 'Lowercase' },
			{ type: 'Strip', strip_left: true, strip_right: true }) } },
	{ name: 'bl-added-flags', base: 'llama3', added: [
		{ id: 128002, content: '<tool>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
		// single_word is false here: tokenizers.js reads the flag but never applies it
		{ id: 128003, content: 'zz', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }] },
];
const TEXTS = [
	'', ' ', 'Hello world', '  Hello   World  ', 'HELLO Wörld ÉCOLE', 'ﬁne ① ㎞ Ａｂｃ', 'e\u0301 n\u0303 Cafe\u0301',
	'Call 555-1234 or 1,000,000 at 3.14', 'tabs\tand\nnewlines\r\n end', "don't stop", 'x'.repeat(100),
	'a <tool> b', 'a<tool>b', 'a  <tool>  b', 'zz zz xzz zzx zz.', 'zz', 'word<|end_of_text|>word',
	'你好世界 and emoji 😀👍🏽', '\u00a0nbsp and \u3000 wide', 'The quick brown fox jumps over the lazy dog.',
	'    def f(x):\n        return 42\n', 'Once upon a time, there was a little girl named Lily.',
];
const mdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ftk-syn-'));
env.localModelPath = mdir + '/';
env.allowRemoteModels = false;
const rows = [];
for (const v of VARIANTS) {
	const base = path.join(ROOT, BASES[v.base]);
	const tj = JSON.parse(fs.readFileSync(path.join(base, 'tokenizer.json'), 'utf8'));
	for (const [k, val] of Object.entries(v.patch ?? {})) {
		if (k === 'model') Object.assign(tj.model, val);
		else tj[k] = val;
	}
	for (const a of v.added ?? []) {
		const i = tj.added_tokens.findIndex((x) => x.id === a.id);
		tj.added_tokens[i] = a;
	}
	const d = path.join(mdir, v.name);
	fs.mkdirSync(d);
	fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(tj));
	fs.copyFileSync(path.join(base, 'tokenizer_config.json'), path.join(d, 'tokenizer_config.json'));
	const tok = await AutoTokenizer.from_pretrained(v.name);
	const row = { name: v.name, base: BASES[v.base], patch: v.patch ?? {}, added: v.added ?? [], texts: TEXTS, ids: [], ids_add: [] };
	for (const t of TEXTS) {
		row.ids.push(tok.encode(t, { add_special_tokens: false }));
		row.ids_add.push(tok.encode(t));
	}
	rows.push(JSON.stringify(row));
}
fs.rmSync(mdir, { recursive: true });
fs.writeFileSync(path.join(ROOT, 'tests/fixtures/tokref/synthetic.jsonl.zst'),
	execFileSync('zstd', ['-19', '-q', '-c'], { input: rows.join('\n') + '\n' }));
console.log(`${rows.length} variants, ${TEXTS.length} texts each`);

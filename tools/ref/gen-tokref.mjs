// gen-tokref.mjs: reference token ids and chat renders for ftk's tokenizer tests.
//
// Everything here comes from transformers.js (@huggingface/transformers, which
// uses @huggingface/tokenizers for ids and @huggingface/jinja for templates):
// AutoTokenizer over the committed tokenizer files, encode() for ids and
// apply_chat_template() for renders, exactly as a transformers.js user gets them.
//
//   cd tools/ref && npm install --ignore-scripts && node gen-tokref.mjs
//
// writes tests/fixtures/tokref/texts.jsonl.zst and chat.jsonl.zst (zstd
// through the zstd command).  The chat records are converted from
// LLaMA-Factory's formats to the canonical messages format by convert()
// below, and the converted messages are stored, so the C test renders the
// same input.
import fs from 'fs';
import os from 'os';
import path from 'path';
import { execFileSync } from 'child_process';
import { fileURLToPath } from 'url';
import { AutoTokenizer, env } from '@huggingface/transformers';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'tests/fixtures/tokref');
const DS = path.join(ROOT, 'datasets');

// transformers.js loads "models" from a local folder: link the committed files there.
const mdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ftk-ref-'));
const MODELS = {
	qwen3: 'tests/fixtures/tokenizers/qwen3',
	llama3: 'tests/fixtures/tokenizers/llama3',
	llama2: 'tests/fixtures/tokenizers/llama2',
	stories260K: 'datasets/models/stories260K',
};
for (const [k, v] of Object.entries(MODELS)) fs.symlinkSync(path.join(ROOT, v), path.join(mdir, k));
env.localModelPath = mdir + '/';
env.allowRemoteModels = false;
const tok = {};
for (const k of Object.keys(MODELS)) tok[k] = await AutoTokenizer.from_pretrained(k);

// ---------------------------------------------------------------- texts
// Every string value of every JSON/JSONL file under datasets/, in file order,
// sampled with a stride so that each file gives about PER_FILE bytes.
const PER_FILE = 24000;
function strings(v, out) {
	if (typeof v === 'string') out.push(v);
	else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
	else if (v && typeof v === 'object') Object.values(v).forEach((x) => strings(x, out));
}
function walk(d, out) {
	for (const f of fs.readdirSync(d).sort()) {
		const p = path.join(d, f);
		if (fs.statSync(p).isDirectory()) walk(p, out);
		else if (/\.jsonl?$/.test(f) && !/nf4_reference|reference\.json|tokenizer/.test(f)) out.push(p);
	}
	return out;
}
const texts = [];
for (const file of walk(DS, [])) {
	const raw = fs.readFileSync(file, 'utf8');
	const all = [];
	let vals;
	try { vals = [JSON.parse(raw)]; } catch { vals = raw.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)); }
	vals.forEach((v) => strings(v, all));
	const uniq = [...new Set(all)].filter((s) => s.length > 0);
	const total = uniq.reduce((a, s) => a + s.length, 0);
	const stride = Math.max(1, Math.ceil(total / PER_FILE));
	const rel = path.relative(ROOT, file);
	for (let i = 0; i < uniq.length; i += stride) texts.push({ src: `${rel}#${i}`, text: uniq[i] });
}
// Hard strings: whitespace runs, digits, CJK, emoji, combining marks, text
// touching special tokens, odd code points.
const HARD = [
	'', ' ', '  ', '\n', '\n\n\n', '\t\t x', '   leading', 'trailing   ', 'a  b   c    d', ' \n \n  \r\n\tx',
	'12345678901234567890', '3.14159 -42 1,000,000 0x1F', '١٢٣ ٤٥٦ ۷۸۹', 'Ⅻ ½ ² ³',
	'你好，世界！这是一个测试。', '日本語のテキストとカタカナ', '한국어 텍스트입니다', 'ภาษาไทย',
	'😀😃😄 👩‍👩‍👧‍👦 🇺🇸 ❤️ 👍🏽', 'e\u0301 a\u0308 n\u0303 \u1100\u1161\u11a8', 'Cafe\u0301 vs Café', 'ﬁ ﬂ ㎞ ①',
	'<|im_start|>user\nhi<|im_end|>', 'x<|im_end|>y', '<|endoftext|><|endoftext|>', '<think>\nreason\n</think>\n\nanswer',
	'<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>', 'a<|eot_id|>b',
	'<s>', '</s>', '<unk>', 'a<s>b', '<s> hi</s>', ' <s>x', 'x </s> y', '<s><s>', '[INST] hi [/INST]',
	"it's I'M we'll they'd YOU'RE", "''' \"\" ``` ~~~", 'def f(x):\n    return x**2  # square\n',
	'{"name": "f", "arguments": {"x": 1}}', 'http://example.com/a?b=c&d=e#f', 'C:\\Users\\x\\file.txt',
	'\u00a0nbsp\u00a0 \u2003em\u2003 \u3000ideographic', '\u200bzero\u200bwidth\u200d', '\ufeffbom',
	'ctrl\u0001\u0002\u007f\u001b[0m', 'Ǆǅǆ İı ß ſ ΣΑΣ', 'x'.repeat(300), ' '.repeat(100) + 'x', 'ab'.repeat(200),
	'\ufffd\ufffd', 'a\ufffdb', '�', '\u{10FFFF}\u{E000}', 'Ω≈ç√∫˜µ≤≥÷', 'Zalgo: Z̵̡̛a̶l̸g̷o̴',
];
HARD.forEach((s, i) => texts.push({ src: `hard#${i}`, text: s, hard: true }));

function lines(rows) { return rows.map((r) => JSON.stringify(r)).join('\n') + '\n'; }
function zst(file, data) {
	fs.writeFileSync(file, execFileSync('zstd', ['-19', '-q', '-c'], { input: data, maxBuffer: 1 << 30 }));
}
const trows = texts.map((t) => {
	const r = { src: t.src, text: t.text, ids: {} };
	for (const k of Object.keys(tok)) r.ids[k] = tok[k].encode(t.text, { add_special_tokens: false });
	if (t.hard) {
		r.ids_add = {}; r.decoded = {};
		for (const k of Object.keys(tok)) {
			r.ids_add[k] = tok[k].encode(t.text);
			r.decoded[k] = r.ids[k].length ? tok[k].decode(r.ids[k], { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : '';
		}
	}
	return r;
});
fs.mkdirSync(OUT, { recursive: true });
zst(path.join(OUT, 'texts.jsonl.zst'), lines(trows));

// ---------------------------------------------------------------- chats
// LLaMA-Factory formats -> canonical messages (DESIGN.md).
function partsText(c) {
	if (typeof c === 'string') return { content: c };
	const r = { content: '' };
	for (const p of c) {
		if (p.type === 'text') r.content += p.value ?? p.text;
		else if (p.type === 'reasoning') r.reasoning_content = (r.reasoning_content ?? '') + p.value;
		else if (p.type === 'tool_call') {
			const v = JSON.parse(p.value);
			(r.tool_calls ??= []).push({ type: 'function', function: { name: v.name, arguments: JSON.stringify(v.arguments) } });
		}
	}
	return r;
}
function fromMessages(ms) { return ms.map((m) => ({ role: m.role, ...partsText(m.content) })); }
function fromShareGPT(conv) {
	const role = { human: 'user', gpt: 'assistant', system: 'system', observation: 'tool', function_call: 'assistant' };
	return conv.map((t) => {
		if (t.from === 'function_call') {
			const v = JSON.parse(t.value);
			return { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: v.name, arguments: JSON.stringify(v.arguments) } }] };
		}
		return { role: role[t.from], content: t.value };
	});
}
function tools(t) {
	if (!t) return undefined;
	const v = typeof t === 'string' ? JSON.parse(t) : t;
	return v.map((x) => (x.type === 'function' ? x : { type: 'function', function: x }));
}
const chats = [];
const LF = path.join(DS, 'llama_factory');
const jl = (f) => fs.readFileSync(path.join(LF, f), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const js = (f) => JSON.parse(fs.readFileSync(path.join(LF, f), 'utf8'));
jl('v1_sft_demo.jsonl').forEach((r, i) => chats.push({ src: `v1_sft_demo.jsonl:${i + 1}`, messages: fromMessages(r.messages) }));
jl('reason_tool_use_demo_50.jsonl').forEach((r, i) => chats.push({ src: `reason_tool_use_demo_50.jsonl:${i + 1}`, messages: fromMessages(r.messages), tools: tools(r.tools) }));
js('glaive_toolcall_en_demo.json').forEach((r, i) => chats.push({ src: `glaive_toolcall_en_demo.json[${i}]`, messages: fromShareGPT(r.conversations), tools: tools(r.tools) }));
js('kto_en_demo.json').forEach((r, i) => chats.push({ src: `kto_en_demo.json[${i}]`, messages: fromMessages(r.messages) }));
js('dpo_en_demo.json').forEach((r, i) => chats.push({ src: `dpo_en_demo.json[${i}]`, messages: [...fromShareGPT(r.conversations), ...fromShareGPT([r.chosen])] }));
jl('v1_dpo_demo.jsonl').forEach((r, i) => chats.push({ src: `v1_dpo_demo.jsonl:${i + 1}`, messages: fromMessages(r.chosen_messages ?? r.chosen) }));

const tpl = (f) => fs.readFileSync(path.join(OUT, 'templates', f), 'utf8');
const TEMPLATES = {
	qwen3: { tok: 'qwen3' },
	llama3: { tok: 'llama3' },
	'llama2-chat': { tok: 'llama2', template: tpl('llama2-chat.jinja') },
	'mistral-v0.1': { tok: 'llama2', template: tpl('mistral-v0.1.jinja') },
	stories260K: { tok: 'stories260K' },
};
// FNV-1a 64 over the ids as little-endian u32, so the fixture need not hold every id.
function fnv(ids) {
	let h = 0xcbf29ce484222325n;
	for (const id of ids) for (let b = 0; b < 4; b++) { h ^= BigInt((id >>> (8 * b)) & 255); h = (h * 0x100000001b3n) & 0xffffffffffffffffn; }
	return h.toString(16).padStart(16, '0');
}
function render(name, messages, tls, gen) {
	const T = TEMPLATES[name];
	const opts = { tokenize: false, add_generation_prompt: gen };
	if (tls) opts.tools = tls;
	if (T.template) opts.chat_template = T.template;
	try {
		const text = tok[T.tok].apply_chat_template(messages, opts);
		const ids = tok[T.tok].encode(text, { add_special_tokens: false });
		return { text, n: ids.length, fnv: fnv(ids) };
	} catch (e) {
		return { error: String(e.message ?? e) };
	}
}
const crows = chats.map((c, i) => {
	const r = { src: c.src, messages: c.messages };
	if (c.tools) r.tools = c.tools;
	r.renders = {};
	for (const k of Object.keys(TEMPLATES)) r.renders[k] = render(k, c.messages, c.tools, false);
	if (i % 10 === 0 && c.messages.at(-1).role === 'assistant') {
		r.gen = {};
		for (const k of Object.keys(TEMPLATES)) r.gen[k] = render(k, c.messages.slice(0, -1), c.tools, true);
	}
	return r;
});
zst(path.join(OUT, 'chat.jsonl.zst'), lines(crows));
fs.rmSync(mdir, { recursive: true });
console.log(`${trows.length} texts, ${crows.length} chats`);

// gen-parts.mjs: reference renders of chats whose content is given in text
// parts, for test_chat.c's content-parts case.
//
// transformers' own server (transformers serve, commands/serving.py) hands a
// text-only model's template each message's text parts joined by one space;
// that join is done here, and the render is @huggingface/jinja's (the engine
// of transformers.js's apply_chat_template) with the special tokens of each
// tokenizer_config.json, add_generation_prompt on.
//
//   cd tools/ref && npm install --ignore-scripts && node gen-parts.mjs
//
// writes tests/fixtures/tokref/parts.jsonl: {"tokenizer","messages","output"}.
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';
import { Template } from '@huggingface/jinja';

const ROOT = process.env.FTK_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOK = {
	qwen3: 'tests/fixtures/tokenizers/qwen3',
	llama3: 'tests/fixtures/tokenizers/llama3',
	stories260K: 'datasets/models/stories260K',
};
const CHATS = [
	[{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
	[
		{ role: 'system', content: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Be kind.' }] },
		{ role: 'user', content: [{ type: 'text', text: 'Who is Lily?' }, 'Tell me.'] },
		{ role: 'assistant', content: [{ type: 'text', text: 'A girl.' }] },
		{ role: 'user', content: [{ type: 'text', text: '' }, { type: 'text', text: '  spaced  ' }] },
	],
];
const joined = (msgs) => msgs.map((m) => ({
	...m,
	content: Array.isArray(m.content) ? m.content.map((p) => (typeof p === 'string' ? p : p.text)).join(' ') : m.content,
}));
const rows = [];
for (const [name, dir] of Object.entries(TOK)) {
	const cfg = JSON.parse(fs.readFileSync(path.join(ROOT, dir, 'tokenizer_config.json'), 'utf8'));
	const vars = {};
	for (const k of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
		const v = typeof cfg[k] === 'string' ? cfg[k] : cfg[k]?.content;
		if (v) vars[k] = v;
	}
	const t = new Template(cfg.chat_template);
	for (const msgs of CHATS)
		rows.push({ tokenizer: name, messages: msgs, output: t.render({ ...vars, messages: joined(msgs), add_generation_prompt: true, tools: null, documents: null }) });
}
fs.writeFileSync(path.join(ROOT, 'tests/fixtures/tokref/parts.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
console.log(`${rows.length} renders`);

// gen-toolcall.mjs: how Hugging Face renders an assistant turn that only calls
// tools, whose content is null (as OpenAI writes it, and ftk convert keeps it:
// docs/formats.md), for test tests/cli/tokenize-toolcall-null.
//
//   cd tools/ref && npm install --ignore-scripts && node gen-toolcall.mjs
//
// Input: tests/fixtures/tokref/toolcall-in.jsonl, the first three records of
// LLaMA-Factory's glaive_toolcall_en_demo.json with a tool call, as
//   ftk convert -q --no-provenance datasets/llama_factory/glaive_toolcall_en_demo.json
// writes them (content null beside tool_calls).  For the Qwen3 and Llama 3
// templates (tokenizer_config.json of tests/fixtures/tokenizers), through
// transformers.js's AutoTokenizer.apply_chat_template, each record is
// rendered twice: as it is ("null": transformers.js raises an error on both
// templates) and with each null content given as "" ("empty": the text and
// its ids, encoded without special tokens as apply_chat_template does).
// toolcall_ref.py does the same with Python's Jinja2 set up as transformers
// sets it up.  Writes tests/fixtures/tokref/toolcall.jsonl.
import fs from 'fs';
import os from 'os';
import path from 'path';
import { fileURLToPath } from 'url';
import { AutoTokenizer, env } from '@huggingface/transformers';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'tests/fixtures/tokref');
const mdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ftk-ref-'));
const MODELS = { qwen3: 'tests/fixtures/tokenizers/qwen3', llama3: 'tests/fixtures/tokenizers/llama3' };
for (const [k, v] of Object.entries(MODELS)) fs.symlinkSync(path.join(ROOT, v), path.join(mdir, k));
env.localModelPath = mdir + '/';
env.allowRemoteModels = false;

const recs = fs.readFileSync(path.join(OUT, 'toolcall-in.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const rows = [];
for (const name of Object.keys(MODELS)) {
	const tok = await AutoTokenizer.from_pretrained(name);
	recs.forEach((r, i) => {
		const opts = { tokenize: false, add_generation_prompt: false, tools: r.tools };
		const row = { line: i + 1, template: name };
		try {
			row.null = { text: tok.apply_chat_template(r.messages, opts) };
		} catch (e) {
			row.null = { error: String(e.message ?? e) };
		}
		const empty = r.messages.map((m) => (m.content === null ? { ...m, content: '' } : m));
		const text = tok.apply_chat_template(empty, opts);
		row.empty = { text, ids: tok.encode(text, { add_special_tokens: false }) };
		rows.push(row);
	});
}
fs.writeFileSync(path.join(OUT, 'toolcall.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
fs.rmSync(mdir, { recursive: true });
console.log(`${rows.length} renders`);

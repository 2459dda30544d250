// bench-tok.mjs: time other tokenizers on the same texts as bench/tokenize.sh.
//
//   node bench-tok.mjs LIB FILE [TOKENIZER_DIR]
//
// LIB: tiktoken-cl100k, tiktoken-o200k, or transformers (TOKENIZER_DIR is
// the model directory).  FILE holds JSON lines {"text": ...}; each text is
// encoded once, single-threaded.  Prints one JSON line: bytes (UTF-8 bytes of
// the texts), tokens, seconds and cpu_seconds (encoding only, loading excluded).
import fs from 'fs';
import path from 'path';

const [lib, file, dir] = process.argv.slice(2);
const texts = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l).text);
const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0);
let encode;
if (lib.startsWith('tiktoken')) {
	const { get_encoding } = await import('tiktoken');
	const enc = get_encoding(lib === 'tiktoken-cl100k' ? 'cl100k_base' : 'o200k_base');
	encode = (t) => enc.encode(t).length;
} else if (lib === 'transformers') {
	const { AutoTokenizer, env } = await import('@huggingface/transformers');
	env.localModelPath = path.dirname(path.resolve(dir)) + '/';
	env.allowRemoteModels = false;
	const tok = await AutoTokenizer.from_pretrained(path.basename(path.resolve(dir)));
	encode = (t) => tok.encode(t, { add_special_tokens: false }).length;
} else {
	throw new Error(`unknown library ${lib}`);
}
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
let tokens = 0;
for (const t of texts) tokens += encode(t);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const c1 = process.cpuUsage(c0);
const cpu_seconds = (c1.user + c1.system) / 1e6;
console.log(JSON.stringify({ lib, bytes, tokens, seconds, cpu_seconds }));

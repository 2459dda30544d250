// loglik_tok.mjs: token ids for tools/ref/eval_ref.py's log-likelihood requests,
// from transformers.js (not ftk's tokenizer), split at the context/continuation
// boundary as lm-evaluation-harness's _encode_pair does:
//
//   n_spaces = len(context) - len(context.rstrip())
//   continuation = context[-n_spaces:] + continuation; context = context[:-n_spaces]
//   whole = encode(context + continuation); ctx = encode(context)
//   cont = whole[len(ctx):]
//
// and, for an empty context, ctx = [] and cont = encode(continuation) (the
// harness then reads the prefix token, BOS, alone; eval_ref.py adds it).
// Encoding adds no special tokens.  Reads /tmp/ftk-loglik-requests.json, writes
// /tmp/ftk-loglik-tokens.json.  Run: cd tools/ref && node loglik_tok.mjs
import fs from 'fs';
import os from 'os';
import path from 'path';
import { fileURLToPath } from 'url';
import { AutoTokenizer, env } from '@huggingface/transformers';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const mdir = fs.mkdtempSync(path.join(os.tmpdir(), 'ftk-ref-'));
fs.symlinkSync(path.join(ROOT, 'datasets/models/stories260K'), path.join(mdir, 'stories260K'));
env.localModelPath = mdir + '/';
env.allowRemoteModels = false;
const tok = await AutoTokenizer.from_pretrained('stories260K');
const enc = (s) => (s === '' ? [] : Array.from(tok.encode(s, { add_special_tokens: false })));

const inp = JSON.parse(fs.readFileSync('/tmp/ftk-loglik-requests.json', 'utf8'));
const out = { requests: [], rolling: [] };
for (const r of inp.requests) {
	let ctx = r.context, cont = r.continuation, ctxIds, contIds;
	if (ctx === '') {
		ctxIds = [];
		contIds = enc(cont);
	} else {
		const kept = ctx.replace(/\s+$/u, '');
		const n = ctx.length - kept.length;
		if (n > 0) {
			cont = ctx.slice(ctx.length - n) + cont;
			ctx = kept;
		}
		const whole = enc(ctx + cont);
		ctxIds = enc(ctx);
		contIds = whole.slice(ctxIds.length);
	}
	out.requests.push({ ...r, ctx_ids: ctxIds, cont_ids: contIds });
}
for (const t of inp.rolling) out.rolling.push({ text: t, ids: enc(t) });
fs.writeFileSync('/tmp/ftk-loglik-tokens.json', JSON.stringify(out));
fs.rmSync(mdir, { recursive: true });
console.log(`tokenized ${out.requests.length} requests, ${out.rolling.length} texts`);

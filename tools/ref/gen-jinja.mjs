// gen-jinja.mjs: reference renders of small Jinja templates by @huggingface/jinja
// (the engine transformers.js's apply_chat_template uses), for test_jinja.c.
//
//   cd tools/ref && npm install --ignore-scripts && node gen-jinja.mjs
//
// writes tests/fixtures/tokref/jinja.jsonl: {"template","vars","output"|"error"}.
import fs from 'fs';
import path from 'path';
import { fileURLToPath } from 'url';
import { Template } from '@huggingface/jinja';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const msgs = [
	{ role: 'system', content: 'Be brief.' },
	{ role: 'user', content: 'Hi <there>' },
	{ role: 'assistant', content: '<think>\nhmm\n</think>\n\nHello!', tool_calls: [{ type: 'function', function: { name: 'f', arguments: { x: 1, y: [1.5, 'a'] } } }] },
	{ role: 'user', content: '  padded  ' },
];
const V = { messages: msgs, bos_token: '<s>', eos_token: '</s>', add_generation_prompt: true, n: 7, f: 2.5, z: 0, e: '', nul: null, t: true, obj: { b: 2, a: 1, nested: { k: [1, 2] } }, words: ['b', 'a', 'c', 'a'], nums: [3, 1, 2] };
const CASES = [
	'{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m["content"] }}|{% endfor %}',
	'{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }} {% endfor %}',
	'{% for m in messages %}{% if loop.previtem is defined %}{{ loop.previtem.role }}{% endif %}>{% if loop.nextitem %}{{ loop.nextitem.role }}{% endif %};{% endfor %}',
	'{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}{% if z %}z{% elif e %}e{% else %}neither{% endif %}',
	'{% set ns = namespace(found=false, count=0) %}{% for m in messages %}{% if m.role == "user" %}{% set ns.found = true %}{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }}',
	'{{ messages[0].content }}|{{ messages[-1].content }}|{{ messages[1:3]|length }}|{{ (messages[::-1]|first).role }}|{{ messages[::2]|map(attribute="role")|join(",") }}',
	'{{ "abcdef"[1:4] }} {{ "abcdef"[::-1] }} {{ "abcdef"[-2:] }} {{ "abcdef"[:-2] }} {{ "héllo"[1] }} {{ words[1:] }}',
	'{{ "a" in "cat" }} {{ "x" not in "cat" }} {{ "b" in words }} {{ "z" in words }} {{ "a" in obj }} {{ "q" in obj }}',
	'{{ none is none }} {{ n is number }} {{ f is integer }} {{ e is string }} {{ t is true }} {{ z is false }} {{ q is defined }} {{ obj is mapping }} {{ words is iterable }} {{ n is odd }} {{ n is even }} {{ n is not none }}',
	'{{ messages|length }} {{ "héllo"|length }} {{ "  x  "|trim }}! {{ "Hi There"|upper }} {{ "Hi There"|lower }} {{ "hello world"|title }} {{ "hello world"|capitalize }}',
	'{{ obj|tojson }} {{ words|tojson }} {{ messages[2].tool_calls|tojson }} {{ "a\\"b\\n<é>"|tojson }} {{ f|tojson }} {{ nul|tojson }} {{ nul }}',
	'{{ obj|tojson(indent=2) }}|{{ obj|tojson(sort_keys=true) }}|{{ "é"|tojson(ensure_ascii=true) }}',
	'{{ words|join("-") }} {{ words|first }} {{ words|last }} {{ words|reverse|join }} {{ words|unique|join }} {{ nums|sort|join(",") }} {{ words|sort(reverse=true)|join }}',
	'{{ missing|default("dflt") }} {{ e|default("empty", true) }} {{ n|string }} {{ "42"|int + 1 }} {{ "2.5"|float }} {{ f|int }} {{ -3|abs }}',
	'{{ obj|items|length }}{% for k, v in obj|items %}[{{ k }}={{ v }}]{% endfor %}{% for k in obj %}<{{ k }}>{% endfor %}',
	'{{ "a,b,,c".split(",") }} {{ " a  b ".split() }} {{ "a-b-c".split("-", 1) }} {{ "xAx".replace("x", "y") }} {{ "hello".startswith("he") }} {{ "hello".endswith(("x", "lo")) }}',
	"{{ '\\n\\nhi\\n'.strip('\\n') }}|{{ '  hi  '.lstrip() }}|{{ '  hi  '.rstrip() }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}",
	'{{ n + 1 }} {{ n - 10 }} {{ n * 2 }} {{ n / 2 }} {{ n // 2 }} {{ n % 4 }} {{ 2 ** 10 }} {{ f * 2 }} {{ 1.0 }} {{ n ~ "x" ~ f }} {{ "a" + n|string }}',
	'{{ 1 if t else 2 }} {{ "yes" if z else "no" }} {{ t and n }} {{ z or "fallback" }} {{ not t }} {{ (1, 2)|length }} {{ [1, "a", none, true] }} {{ {"k": "v", "n": 1} }}',
	'{%- for m in messages -%}\n  {{- m.role -}}\n  {%- if not loop.last %}, {% endif -%}\n{%- endfor %}\nend',
	'{% for m in messages %}\n    {{ m.role }}\n{% endfor %}\n  {# comment #}\ndone\n',
	'{% macro greet(name, punct="!") %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet("A") }} {{ greet("B", "?") }} {{ greet(name="C") }}',
	'{% set x %}block {{ n }}{% endset %}[{{ x }}]{% set a, b = [1, 2] %}{{ a }}{{ b }}',
	'{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}',
	'{% for m in messages if m.role == "user" %}{{ m.content }};{% endfor %}{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}',
	'{{ messages|selectattr("role", "equalto", "user")|map(attribute="content")|join("|") }} {{ messages|rejectattr("role", "equalto", "user")|length }}',
	'{{ obj.get("a") }} {{ obj.get("zz", "d") }} {{ obj.keys()|join }} {{ obj["nested"]["k"][1] }} {{ obj.nested.k|length }}',
	'{% if messages[0]["role"] == "system" %}{% set sys = messages[0]["content"] %}{% set rest = messages[1:] %}{% else %}{% set sys = "" %}{% set rest = messages %}{% endif %}{{ sys }}:{{ rest|length }}',
	"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
	'{{ messages[0].content + none }}',
	'{{ undefined_thing.attr }}|{{ undefined_thing is defined }}|{{ (undefined_thing or "x") }}',
	'{{ "x" == "x" }} {{ 1 == 1.0 }} {{ "1" == 1 }} {{ none == missing }} {{ t == 1 }} {{ words == words }} {{ "a" != "b" }} {{ e == false }}',
	'{{ 3 > 2 }} {{ 2 >= 2 }} {{ 1 < 0 }} {{ 1 <= 1 }} {{ -f }} {{ f|string }} {{ 10 ** 21 }} {{ 0.1 + 0.2 }}',
	'{{ "\\u00e9\\x41" }} {{ \'it\\\'s\' }} {{ "tab\\tend" }}',
	'{{ "%s" }} {{ "{{" }} {{ "}}" }}',
	'{{- "   a" }}  {{- " b" -}}   {{ "c" }}',
	'{% generation %}x{% endgeneration %}y',
	// null as a tool-calling turn's content: what a template can ask of it
	'{{ nul is string }} {{ nul is none }} {{ nul is defined }} {{ nul is mapping }} {% if nul %}t{% else %}f{% endif %} {{ not nul }} {{ nul == none }} {{ nul|default("d") }} {{ nul|default("d", true) }} {{ nul is not none and "</think>" in nul }}',
	'{{ nul|length }}',
	'{{ nul|trim }}',
	'{{ "</think>" in nul }}',
	'{{ "a" + nul }}',
	'{{ "a" ~ nul }}',
];
const out = CASES.map((template) => {
	const r = { template, vars: V };
	try {
		r.output = new Template(template).render(V);
	} catch (e) {
		r.error = String(e.message ?? e);
	}
	return JSON.stringify(r);
});
fs.writeFileSync(path.join(ROOT, 'tests/fixtures/tokref/jinja.jsonl'), out.join('\n') + '\n');
console.log(`${out.length} cases`);

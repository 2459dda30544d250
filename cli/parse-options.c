/*
 * parse-options.c: the option table of cli/parse-options.h, parsed, printed
 * as --help and listed for completion.
 *
 * The parser is written out rather than built on getopt_long so that the
 * table is the only description of an option (getopt needs a second one),
 * every message has one wording, and an unknown name can be answered with
 * the nearest names in the table.  It keeps getopt_long's behaviour that
 * scripts rely on: options and arguments in any order, unique prefixes of
 * long names, `--` and a lone `-`.
 *
 * Usage errors go through ftk_usage_error(), which prints the message with
 * the program's prefix and a hint naming the command being parsed (for a
 * subcommand, "ftk-ledger estimate"), then exits 2.
 */
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"

#define HELP_COLUMN 23

static const char *cur_prog;	/* the command being parsed, for the usage hint */

void ftk_strlist_release(struct ftk_strlist *l)
{
	if (!l)
		return;
	free(l->v);
	l->v = NULL;
	l->n = l->alloc = 0;
}

void ftk_usage_verror(const char *fmt, va_list ap)
{
	if (fmt) {
		char msg[4096];
		vsnprintf(msg, sizeof(msg), fmt, ap);
		fprintf(stderr, "%s: %s\n", ftk_progname, msg);
	}
	fprintf(stderr, "Try '%s --help' for more information.\n", cur_prog ? cur_prog : ftk_progname);
	exit(FTK_EXIT_USAGE);
}

void ftk_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ftk_usage_verror(fmt, ap);
}

/* ------------------------------------------------------------ values */

long long ftk_opt_parse_integer(const char *name, const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s && !*end && !errno && v >= lo && v <= hi)
		return v;
	if (hi == LLONG_MAX || hi == LONG_MAX || hi == INT_MAX)
		ftk_usage_error("%s needs an integer of at least %lld, not '%s'", name, lo, s);
	ftk_usage_error("%s needs an integer from %lld to %lld, not '%s'", name, lo, hi, s);
}

double ftk_opt_parse_number(const char *name, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*s && !*end && !errno && isfinite(v) && v >= lo && v <= hi)
		return v;
	if (hi >= DBL_MAX)
		ftk_usage_error("%s needs a number of at least %g, not '%s'", name, lo, s);
	ftk_usage_error("%s needs a number from %g to %g, not '%s'", name, lo, hi, s);
}

double ftk_opt_parse_number_open(const char *name, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*s && !*end && !errno && isfinite(v) && v > lo && v < hi)
		return v;
	if (hi >= DBL_MAX)
		ftk_usage_error("%s needs a number above %g, not '%s'", name, lo, s);
	ftk_usage_error("%s needs a number above %g and below %g, not '%s'", name, lo, hi, s);
}

/* K, M, G, T: the shift of each unit */
static int unit_shift(int c)
{
	switch (c) {
	case 'k': case 'K': return 10;
	case 'm': case 'M': return 20;
	case 'g': case 'G': return 30;
	case 't': case 'T': return 40;
	default: return -1;
	}
}

int ftk_parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t whole = 0;
	if (*p < '0' || *p > '9')
		return -1;	/* no sign, no space, no bare ".5" */
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	/* the fraction's first 19 digits, exactly (10^19 - 1 fits 64 bits);
	   later ones are below a byte even for T */
	uint64_t frac = 0, scale = 1;
	int has_frac = 0;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		has_frac = 1;
		for (int k = 0; *p >= '0' && *p <= '9'; p++, k++) {
			if (k < 19) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
		}
	}
	int shift = unit_shift(*p);
	if (shift > 0) {
		p++;
		if ((*p == 'i' || *p == 'I') && (p[1] == 'b' || p[1] == 'B'))
			p += 2;
		else if (*p == 'b' || *p == 'B')
			p++;
	} else {
		shift = 0;
		if (*p == 'b' || *p == 'B')
			p++;
		if (has_frac)
			return -1;	/* a byte count is whole */
	}
	if (*p)
		return -1;
	if (shift && whole > UINT64_MAX >> shift)
		return -1;
	uint64_t v = whole << shift;
	/* frac / scale of a unit, rounded down: below 1 << shift, so no overflow of
	   the product in 128 bits (scale <= 10^19 < 2^64, shift <= 40) */
	uint64_t part = (uint64_t)(((unsigned __int128)frac << shift) / scale);
	if (v > UINT64_MAX - part)
		return -1;
	*out = v + part;
	return 0;
}

char *ftk_format_size(uint64_t v, char *buf, size_t n)
{
	static const char units[] = "TGMK";
	for (int i = 0; i < 4; i++) {
		int shift = 40 - 10 * i;
		if (v && !(v & (((uint64_t)1 << shift) - 1))) {
			snprintf(buf, n, "%llu%c", (unsigned long long)(v >> shift), units[i]);
			return buf;
		}
	}
	snprintf(buf, n, "%llu", (unsigned long long)v);
	return buf;
}

uint64_t ftk_opt_parse_size(const char *name, const char *s, uint64_t lo, uint64_t hi)
{
	uint64_t v;
	char a[32], b[32];
	if (!ftk_parse_size(s, &v) && v >= lo && v <= hi)
		return v;
	ftk_format_size(lo, a, sizeof(a));
	if (hi == UINT64_MAX && !lo)
		ftk_usage_error("%s needs a size (such as 64M or 1.5G), not '%s'", name, s);
	if (hi == UINT64_MAX)
		ftk_usage_error("%s needs a size of at least %s (such as 64M or 1.5G), not '%s'", name,
				a, s);
	ftk_usage_error("%s needs a size from %s to %s (such as 64M or 1.5G), not '%s'", name, a,
			ftk_format_size(hi, b, sizeof(b)), s);
}

int ftk_opt_parse_choice(const char *name, const char *s, const char *choices)
{
	size_t n = strlen(s);
	int i = 0;
	for (const char *p = choices;; i++) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && !strncmp(p, s, n))
			return i;
		if (!bar)
			break;
		p = bar + 1;
	}
	ftk_usage_error("%s needs one of %s, not '%s'", name, choices, s);
}

/* ------------------------------------------------------------ similar names */

int ftk_levenshtein(const char *s1, const char *s2, int w, int s, int a, int d)
{
	size_t n1 = strlen(s1), n2 = strlen(s2);
	/* three rows of the (n1+1) x (n2+1) table: i-2, i-1, i */
	int *row = xcalloc(3 * (n2 + 1), sizeof(int));
	int *r2 = row, *r0 = row + (n2 + 1), *r1 = row + 2 * (n2 + 1);
	for (size_t j = 0; j <= n2; j++)
		r0[j] = (int)j * a;
	for (size_t i = 0; i < n1; i++) {
		r1[0] = (int)(i + 1) * d;
		for (size_t j = 0; j < n2; j++) {
			int v = r0[j] + s * (s1[i] != s2[j]);	/* substitute (or keep) */
			if (i > 0 && j > 0 && s1[i - 1] == s2[j] && s1[i] == s2[j - 1] &&
			    v > r2[j - 1] + w)
				v = r2[j - 1] + w;		/* swap two neighbours */
			if (v > r1[j] + a)
				v = r1[j] + a;			/* insert s2[j] */
			if (v > r0[j + 1] + d)
				v = r0[j + 1] + d;		/* delete s1[i] */
			r1[j + 1] = v;
		}
		int *t = r2;
		r2 = r0;
		r0 = r1;
		r1 = t;
	}
	int dist = r0[n2];
	free(row);
	return dist;
}

size_t ftk_similar(const char *word, const char *const *names, size_t n, size_t *out, size_t max,
		   int floor)
{
	int best = floor;
	size_t k = 0;
	size_t wl = strlen(word);
	if (!wl)
		return 0;
	/* git help.c's weights: a swap costs 0, a substitution 2, an insertion 1, a deletion 3 */
	for (size_t i = 0; i < n; i++) {
		int dist = !strncmp(names[i], word, wl) ? 0 : ftk_levenshtein(word, names[i], 0, 2, 1, 3) + 1;
		if (dist < best) {
			best = dist;
			k = 0;
		}
		if (dist == best && k < max)
			out[k++] = i;
	}
	return k;
}

/* ------------------------------------------------------------ the table */

static int is_option(const struct ftk_option *o)
{
	return o->kind != FTK_OPTION_GROUP && o->kind != FTK_OPTION_TEXT &&
	       o->kind != FTK_OPTION_SUBCOMMAND;
}

static int takes_arg(const struct ftk_option *o)
{
	switch (o->kind) {
	case FTK_OPTION_INT: case FTK_OPTION_LONG: case FTK_OPTION_DOUBLE: case FTK_OPTION_UINT64:
	case FTK_OPTION_SIZE: case FTK_OPTION_STRING: case FTK_OPTION_STRING_LIST: case FTK_OPTION_CHOICE:
		return 1;
	case FTK_OPTION_CALLBACK:
		return !(o->flags & FTK_OPTF_NOARG);
	default:
		return 0;
	}
}

int ftk_option_takes_arg(const struct ftk_option *o)
{
	return takes_arg(o);
}

static void print_help_line(FILE *fp, const char *left, const char *help)
{
	int len = (int)strlen(left);
	fputs(left, fp);
	if (!help || !*help) {
		fputc('\n', fp);
		return;
	}
	fprintf(fp, "%*s", len <= HELP_COLUMN - 2 ? HELP_COLUMN - len : 2, "");
	for (const char *p = help; *p; p++) {
		fputc(*p, fp);
		if (*p == '\n' && p[1])
			fprintf(fp, "%*s", HELP_COLUMN, "");
	}
	if (help[strlen(help) - 1] != '\n')
		fputc('\n', fp);
}

void ftk_parse_options_help(FILE *fp, const char *prog, const struct ftk_option *opts,
			    const char *const *usage)
{
	int i = 0;
	char left[256];
	if (usage) {
		for (; usage[i] && *usage[i]; i++)
			fprintf(fp, "%s%s\n", i ? "   or: " : "usage: ", usage[i]);
		for (; usage[i]; i++)
			fprintf(fp, "%s\n", usage[i]);
	} else {
		fprintf(fp, "usage: %s [options]\n", prog);
	}
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++) {
		if (o->flags & FTK_OPTF_HIDDEN)
			continue;
		switch (o->kind) {
		case FTK_OPTION_GROUP:
			fprintf(fp, "\n%s:\n", o->help);
			continue;
		case FTK_OPTION_TEXT:
			fputs(o->help, fp);
			continue;
		case FTK_OPTION_SUBCOMMAND:
			snprintf(left, sizeof(left), "  %s%s%s", o->long_name, o->argh ? " " : "",
				 o->argh ? o->argh : "");
			print_help_line(fp, left, o->help);
			continue;
		default:
			break;
		}
		int n = 0;
		if (o->short_name && o->long_name)
			n = snprintf(left, sizeof(left), "  -%c, --%s", o->short_name, o->long_name);
		else if (o->short_name)
			n = snprintf(left, sizeof(left), "  -%c", o->short_name);
		else
			n = snprintf(left, sizeof(left), "      --%s", o->long_name);
		const char *argh = o->argh ? o->argh : o->kind == FTK_OPTION_CHOICE ? o->choices : NULL;
		if (takes_arg(o) && argh)
			snprintf(left + n, sizeof(left) - n, " %s", argh);
		print_help_line(fp, left, o->help);
	}
}

/* The hidden --ftk-completion-helper: the table, one row a line, for shell completion. */
static void completion_helper(const struct ftk_option *opts)
{
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++) {
		if (o->flags & FTK_OPTF_HIDDEN || o->kind == FTK_OPTION_GROUP ||
		    o->kind == FTK_OPTION_TEXT)
			continue;
		const char *help = o->help ? o->help : "";
		size_t hl = strcspn(help, "\n");
		if (o->kind == FTK_OPTION_SUBCOMMAND) {
			printf("sub\t%s\t%.*s\n", o->long_name, (int)hl, help);
			continue;
		}
		char sh[3] = "";
		if (o->short_name)
			snprintf(sh, sizeof(sh), "-%c", o->short_name);
		printf("opt\t%s%s\t%s\t%d\t%s\t%.*s\n", o->long_name ? "--" : "",
		       o->long_name ? o->long_name : "", sh, takes_arg(o),
		       o->kind == FTK_OPTION_CHOICE ? o->choices : "", (int)hl, help);
	}
}

/* Up to 8 names of rows that pass keep(), for "did you mean". */
static size_t names_of(const struct ftk_option *opts, int subs, const char **names, size_t max)
{
	size_t n = 0;
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END && n < max; o++) {
		if (!o->long_name || o->flags & FTK_OPTF_HIDDEN)
			continue;
		if (subs ? o->kind == FTK_OPTION_SUBCOMMAND : is_option(o))
			names[n++] = o->long_name;
	}
	return n;
}

/* ", did you mean '--a'?" or " (did you mean one of ...)" into buf; "" when nothing is near. */
static const char *suggest(const char *word, const struct ftk_option *opts, int subs,
			   const char *dashes, char *buf, size_t bufsz)
{
	const char *names[256];
	size_t idx[8];
	size_t n = names_of(opts, subs, names, FTK_ARRAY_SIZE(names));
	size_t k = ftk_similar(word, names, n, idx, FTK_ARRAY_SIZE(idx), FTK_SIMILAR_OPTIONS);
	buf[0] = '\0';
	if (!k)
		return buf;
	size_t len = snprintf(buf, bufsz, "; did you mean %s", k > 1 ? "one of " : "");
	for (size_t i = 0; i < k && len < bufsz; i++)
		len += snprintf(buf + len, bufsz - len, "%s'%s%s'", i ? ", " : "", dashes, names[idx[i]]);
	if (len < bufsz)
		snprintf(buf + len, bufsz - len, "?");
	return buf;
}

static uint64_t parse_uint64(const char *name, const char *arg)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(arg, &end, 10);
	if (!*arg || *end || errno || arg[strspn(arg, " \t")] == '-')
		ftk_usage_error("%s needs an integer of at least 0, not '%s'", name, arg);
	return v;
}

void ftk_option_check(const struct ftk_option *o, const char *name, const char *arg)
{
	switch (o->kind) {
	case FTK_OPTION_INT: case FTK_OPTION_LONG:
		(void)ftk_opt_parse_integer(name, arg, o->ilo, o->ihi);
		break;
	case FTK_OPTION_DOUBLE:
		if (o->flags & FTK_OPTF_OPEN)
			(void)ftk_opt_parse_number_open(name, arg, o->dlo, o->dhi);
		else
			(void)ftk_opt_parse_number(name, arg, o->dlo, o->dhi);
		break;
	case FTK_OPTION_UINT64:
		(void)parse_uint64(name, arg);
		break;
	case FTK_OPTION_SIZE:
		(void)ftk_opt_parse_size(name, arg, o->ulo, o->uhi);
		break;
	case FTK_OPTION_CHOICE:
		(void)ftk_opt_parse_choice(name, arg, o->choices);
		break;
	default:	/* strings take anything; a callback checks when it runs */
		break;
	}
}

static void apply(const struct ftk_option *o, const char *arg, const char *name, const char *prog,
		  const struct ftk_option *opts, const char *const *usage)
{
	if (o->given)
		(*o->given)++;
	switch (o->kind) {
	case FTK_OPTION_FLAG:
		*(int *)o->value = (int)o->defval;
		break;
	case FTK_OPTION_INT:
		*(int *)o->value = (int)ftk_opt_parse_integer(name, arg, o->ilo, o->ihi);
		break;
	case FTK_OPTION_LONG:
		*(long *)o->value = (long)ftk_opt_parse_integer(name, arg, o->ilo, o->ihi);
		break;
	case FTK_OPTION_DOUBLE:
		*(double *)o->value = o->flags & FTK_OPTF_OPEN
					      ? ftk_opt_parse_number_open(name, arg, o->dlo, o->dhi)
					      : ftk_opt_parse_number(name, arg, o->dlo, o->dhi);
		break;
	case FTK_OPTION_UINT64:
		*(uint64_t *)o->value = parse_uint64(name, arg);
		break;
	case FTK_OPTION_SIZE:
		*(uint64_t *)o->value = ftk_opt_parse_size(name, arg, o->ulo, o->uhi);
		break;
	case FTK_OPTION_STRING:
		*(const char **)o->value = arg;
		break;
	case FTK_OPTION_STRING_LIST: {
		struct ftk_strlist *l = o->value;
		FTK_ALLOC_GROW(l->v, l->n + 1, l->alloc);
		l->v[l->n++] = arg;
		break;
	}
	case FTK_OPTION_CHOICE:
		*(int *)o->value = ftk_opt_parse_choice(name, arg, o->choices);
		break;
	case FTK_OPTION_CALLBACK:
		o->cb(o, arg);
		break;
	case FTK_OPTION_HELP:
		ftk_parse_options_help(stdout, prog, opts, usage);
		exit(0);
	case FTK_OPTION_VERSION:
		printf("%s %s\n", prog, FTK_VERSION);
		exit(0);
	default:
		break;
	}
}

static const struct ftk_option *find_long(const struct ftk_option *opts, const char *name,
					  size_t len)
{
	const struct ftk_option *hit = NULL;
	int n_prefix = 0;
	char others[512] = "";
	size_t ol = 0;
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++) {
		if (!is_option(o) || !o->long_name || strncmp(o->long_name, name, len))
			continue;
		if (strlen(o->long_name) == len)
			return o;	/* an exact name wins over longer ones it begins */
		hit = o;
		n_prefix++;
		if (ol < sizeof(others))
			ol += snprintf(others + ol, sizeof(others) - ol, "%s'--%s'", ol ? ", " : "",
				       o->long_name);
	}
	if (n_prefix > 1)
		ftk_usage_error("ambiguous option '--%.*s' (could be %s)", (int)len, name, others);
	return hit;
}

static const struct ftk_option *find_short(const struct ftk_option *opts, int c)
{
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++)
		if (is_option(o) && o->short_name == c)
			return o;
	return NULL;
}

/* 0: no subcommands; 1: one is required; 2: optional */
static int has_subcommands(const struct ftk_option *opts)
{
	int r = 0;
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++)
		if (o->kind == FTK_OPTION_SUBCOMMAND)
			r = o->flags & FTK_OPTF_SUB_OPTIONAL ? 2 : r ? r : 1;
	return r;
}

/* Store the subcommand named word; a usage error when there is none. */
static void pick_subcommand(const struct ftk_option *opts, const char *word)
{
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END; o++) {
		if (o->kind == FTK_OPTION_SUBCOMMAND && !strcmp(o->long_name, word)) {
			*(ftk_subcommand_fn *)o->value = o->fn;
			return;
		}
	}
	char hint[600];
	ftk_usage_error("unknown command '%s'%s", word, suggest(word, opts, 1, "", hint, sizeof(hint)));
}

static void list_subcommands(const struct ftk_option *opts, char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = '\0';
	for (const struct ftk_option *o = opts; o->kind != FTK_OPTION_END && len < n; o++)
		if (o->kind == FTK_OPTION_SUBCOMMAND)
			len += snprintf(buf + len, n - len, "%s%s", len ? ", " : "", o->long_name);
}

int ftk_parse_options(int argc, char **argv, const char *prog, const struct ftk_option *opts,
		      const char *const *usage)
{
	int nout = 0, subs = has_subcommands(opts);
	char hint[600], name[128];
	cur_prog = prog;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (!strcmp(a, "--")) {
			if (subs && i + 1 < argc) {
				i++;
				goto subcommand_at_i;
			}
			while (++i < argc)
				argv[nout++] = argv[i];
			break;
		}
		if (a[0] != '-' || !a[1]) {
			if (subs) {
subcommand_at_i:
				pick_subcommand(opts, argv[i]);
				memmove(argv, argv + i, (argc - i) * sizeof(*argv));
				argv[argc - i] = NULL;
				return argc - i;
			}
			argv[nout++] = a;
			continue;
		}
		if (a[1] == '-') {
			const char *nm = a + 2, *eq = strchr(nm, '=');
			size_t len = eq ? (size_t)(eq - nm) : strlen(nm);
			if (!strcmp(nm, "ftk-completion-helper")) {
				completion_helper(opts);
				exit(0);
			}
			const struct ftk_option *o = find_long(opts, nm, len);
			if (!o) {
				char word[128];
				snprintf(word, sizeof(word), "%.*s", (int)len, nm);
				ftk_usage_error("unknown option '--%s'%s", word,
						suggest(word, opts, 0, "--", hint, sizeof(hint)));
			}
			snprintf(name, sizeof(name), "--%s", o->long_name);
			const char *arg = NULL;
			if (takes_arg(o)) {
				if (eq)
					arg = eq + 1;
				else if (i + 1 < argc)
					arg = argv[++i];
				else
					ftk_usage_error("option '%s' needs a value", name);
			} else if (eq) {
				ftk_usage_error("option '%s' takes no value", name);
			}
			apply(o, arg, name, prog, opts, usage);
			continue;
		}
		for (int j = 1; a[j]; j++) {
			const struct ftk_option *o = find_short(opts, (unsigned char)a[j]);
			if (!o) {
				/* -verbose for --verbose: say so, as git does */
				if (a[2]) {
					const struct ftk_option *l = NULL;
					for (const struct ftk_option *p = opts; p->kind != FTK_OPTION_END; p++)
						if (is_option(p) && p->long_name && !strcmp(p->long_name, a + 1))
							l = p;
					if (l)
						ftk_usage_error("unknown option '-%c'; did you mean '--%s'?",
								a[j], l->long_name);
				}
				ftk_usage_error("unknown option '-%c'", a[j]);
			}
			if (o->long_name)
				snprintf(name, sizeof(name), "--%s", o->long_name);
			else
				snprintf(name, sizeof(name), "-%c", o->short_name);
			if (takes_arg(o)) {
				const char *arg = NULL;
				if (a[j + 1])
					arg = a + j + 1;
				else if (i + 1 < argc)
					arg = argv[++i];
				else
					ftk_usage_error("option '%s' needs a value", name);
				apply(o, arg, name, prog, opts, usage);
				break;
			}
			apply(o, NULL, name, prog, opts, usage);
		}
	}
	if (subs == 1) {
		char list[512];
		list_subcommands(opts, list, sizeof(list));
		ftk_usage_error("a command is required (%s)", list);
	}
	argv[nout] = NULL;
	return nout;
}

/*
 * smap.c: a string-to-long hash table for the eval runner (run_int.h).
 *
 * Open addressing with linear probing on an xxHash of the key, the table
 * kept at most half full, so that lookups by (id, sample) and by metric or
 * cluster name stay O(1) where cJSON objects would be linear lists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "lib/strbuf.h"
#include "run_int.h"

/* ------------------------------------------------------------ string map */

static size_t smap_slot(const struct smap *m, const char *k)
{
	size_t h = (size_t)XXH3_64bits(k, strlen(k)) & (m->cap - 1);
	while (m->keys[h] && strcmp(m->keys[h], k))
		h = (h + 1) & (m->cap - 1);
	return h;
}

void smap_put(struct smap *m, const char *k, long v)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct smap old = *m;
		m->cap = old.cap ? old.cap * 2 : 64;
		m->keys = xcalloc(m->cap, sizeof(*m->keys));
		m->vals = xcalloc(m->cap, sizeof(*m->vals));
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.keys[i]) {
				size_t s = smap_slot(m, old.keys[i]);
				m->keys[s] = old.keys[i];
				m->vals[s] = old.vals[i];
				m->n++;
			}
		free(old.keys);
		free(old.vals);
	}
	size_t s = smap_slot(m, k);
	if (!m->keys[s]) {
		m->keys[s] = xstrdup(k);
		m->n++;
	}
	m->vals[s] = v;
}

long smap_get(const struct smap *m, const char *k, long dflt)
{
	if (!m->cap)
		return dflt;
	size_t s = smap_slot(m, k);
	return m->keys[s] ? m->vals[s] : dflt;
}

/* The id for k, adding it as the next id when new. */
long smap_intern(struct smap *m, const char *k)
{
	long v = smap_get(m, k, -1);
	if (v < 0) {
		v = (long)m->n;
		smap_put(m, k, v);
	}
	return v;
}

void smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

void unit_key(char *buf, size_t n, const char *id, long sample)
{
	snprintf(buf, n, "%s\x1f%ld", id, sample);
}

long json_long(const cJSON *o, const char *k, long dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : dflt;
}

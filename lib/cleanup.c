/*
 * cleanup.c: the table of temporaries to remove when the program dies (see
 * cleanup.h).
 *
 * Each slot is an atomic pointer to a heap entry {pid, path}.  Adding claims
 * an empty slot with compare-and-swap; removing swaps the slot back to NULL
 * and frees the entry.  The runner swaps each slot to NULL before it unlinks,
 * so a file is removed at most once and an entry is never freed twice.  The
 * runner does not free (free is not async-signal-safe): the process is about
 * to end.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cleanup.h"
#include "err.h"

#define SLOTS 64

struct entry {
	pid_t pid;
	char path[];
};

static _Atomic(struct entry *) slots[SLOTS];

int ftk_cleanup_add(const char *path)
{
	size_t n = strlen(path);
	struct entry *e = xmalloc(sizeof(*e) + n + 1);
	e->pid = getpid();
	memcpy(e->path, path, n + 1);
	for (int i = 0; i < SLOTS; i++) {
		struct entry *expect = NULL;
		if (atomic_compare_exchange_strong(&slots[i], &expect, e))
			return 0;
	}
	free(e);
	return -1;
}

void ftk_cleanup_remove(const char *path)
{
	for (int i = 0; i < SLOTS; i++) {
		struct entry *e = atomic_load(&slots[i]);
		if (e && !strcmp(e->path, path) &&
		    atomic_compare_exchange_strong(&slots[i], &e, NULL)) {
			free(e);
			return;
		}
	}
}

void ftk_cleanup_run(void)
{
	pid_t self = getpid();
	for (int i = 0; i < SLOTS; i++) {
		struct entry *e = atomic_exchange(&slots[i], NULL);
		if (e && e->pid == self)
			unlink(e->path);
	}
}

void ftk_cleanup_run_at_exit(void)
{
	pid_t self = getpid();
	for (int i = 0; i < SLOTS; i++) {
		struct entry *e = atomic_exchange(&slots[i], NULL);
		if (e && e->pid == self)
			unlink(e->path);
		free(e);
	}
}

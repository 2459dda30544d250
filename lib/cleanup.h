/*
 * cleanup.h: temporary files that must not outlive the program.
 *
 * Outputs are written to a temporary name beside the target and renamed on
 * success (lib/stream.h).  When the program is killed (Ctrl-C, SIGTERM, a
 * SIGPIPE from a pipeline whose reader died) or exits early through die(),
 * those temporaries would stay behind as "out.jsonl.tmp.28290".  Whoever
 * creates one registers it here and unregisters it once it is renamed or
 * removed; the program side (cli/tool.c) removes what is still registered
 * from its signal handlers and at exit.
 *
 * lib/ only keeps the list: it installs no handler and never exits.  The list
 * is a fixed table of atomic pointers, so ftk_cleanup_run() is
 * async-signal-safe (it calls only getpid and unlink) and may run in a signal
 * handler while other threads register and unregister.  A forked child never
 * removes its parent's files (each entry remembers the pid that made it).
 */
#ifndef FTK_CLEANUP_H
#define FTK_CLEANUP_H

/*
 * Remember path (copied) as a temporary to remove if the program dies.
 * Returns 0, or -1 when the table (64 entries) is full; the file is then
 * simply not removed on a crash, nothing else changes.
 */
int ftk_cleanup_add(const char *path);

/* Forget path (the file was renamed or removed).  Unknown paths are ignored. */
void ftk_cleanup_remove(const char *path);

/*
 * Remove every registered file that this process registered, and forget
 * them.  Async-signal-safe.
 */
void ftk_cleanup_run(void);

/* The same, outside a signal handler (at exit): the entries are freed too. */
void ftk_cleanup_run_at_exit(void);

#endif

/*
 * ledger.h: appending to the cost ledger.
 *
 * The ledger is one append-only JSONL file shared by every tool, possibly by
 * many processes at once (parallel prep jobs, a trainer and an eval).  An
 * entry is written with a single write(2) on an O_APPEND descriptor while an
 * advisory flock(2) is held, so lines never tear or interleave.  If the file
 * does not end in a newline (a writer died mid-line, a power cut), the append
 * starts with one, so the damaged line stays on its own and the new entry is
 * intact; readers report and skip the damaged line (see ledger/).
 *
 * The entry format is DESIGN.md's: ts, run, stage, kind, tool, hours, device,
 * usd and whatever else the tool knows.  ftk_ledger_entry_* build one.
 */
#ifndef FTK_LEDGER_H
#define FTK_LEDGER_H

#include <cjson/cJSON.h>
#include "err.h"

/*
 * The longest entry appended, in bytes.  An entry goes in with one write
 * under the lock, and a long write can be cut by a kill -9 (a probe tore a
 * 200 MB entry three times out of three); real entries are a few hundred
 * bytes.
 */
#define FTK_LEDGER_MAX_ENTRY 65536

/*
 * Append one JSON object (one line, without the newline) to the ledger at
 * path.  Returns 0, FTK_EUSAGE when line is not a single line, FTK_ELIMIT
 * when it is longer than FTK_LEDGER_MAX_ENTRY (nothing is written), or
 * FTK_EIO.
 */
int ftk_ledger_append(const char *path, const char *line, size_t len, struct ftk_error *err);

/*
 * A new entry with ts (now, UTC, RFC 3339), run (from $FTK_RUN when run is
 * NULL; omitted if neither), stage and kind, and under Slurm a "slurm" object
 * with job_id, array_job_id and array_task_id (strings, from SLURM_JOB_ID,
 * SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID; each only when set).  Caller
 * owns the result.
 */
cJSON *ftk_ledger_entry_new(const char *run, const char *stage, const char *kind);

/* Serialize entry compactly and append it.  entry stays the caller's. */
int ftk_ledger_append_entry(const char *path, const cJSON *entry, struct ftk_error *err);

/* The ledger path: explicit (non-NULL) wins, then $FTK_LEDGER, else NULL. */
const char *ftk_ledger_path(const char *explicit_path);

/* Format a UTC time as "2026-11-23T13:00:00Z" into buf (at least 21 bytes). */
void ftk_time_rfc3339(double unix_seconds, char *buf, size_t n);

/* Wall-clock seconds since the epoch, with sub-second precision. */
double ftk_now(void);

#endif

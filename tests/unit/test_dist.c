/*
 * test_dist.c: the NCCL id's shared-file rendezvous (dist.h), the one piece
 * of multi-node start-up that needs no GPU and no MPI, run here with real
 * processes.
 *
 * Three readers are forked before rank 0 writes (they must wait, then all
 * get the same bytes); a file of the same size left by another job (another
 * key) must not be taken, and a reader says so when it gives up; rank 0
 * names a path it cannot write.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "lib/err.h"
#include "lib/strbuf.h"
#include "trainer/dist.h"

enum { ID = 128 };

static void fill(char *id, size_t n, int seed)
{
	for (size_t i = 0; i < n; i++)
		id[i] = (char)((i * 131u + (unsigned)seed * 7u) & 0xff);
}

/* A reader process: exit 0 when it got exactly want's bytes, 1 on other bytes, 2 on error. */
static pid_t reader(const char *path, int rank, const char *key, const char *want, size_t n,
		    int timeout_ms)
{
	pid_t p = fork();
	if (p == 0) {
		char *id = malloc(n);
		struct ftk_error e;
		int rc = ftk_dist_file_id(path, rank, key, id, n, timeout_ms, &e);
		if (rc < 0) {
			fprintf(stderr, "rank %d: %s: %s\n", rank, e.file, e.msg);
			_exit(2);
		}
		_exit(memcmp(id, want, n) ? 1 : 0);
	}
	return p;
}

static int status_of(pid_t p)
{
	int st = 0;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

START_TEST(readers_wait_for_rank_0)
{
	char id[ID], path[] = "nccl-id";
	fill(id, ID, 1);
	pid_t r[3];
	for (int i = 0; i < 3; i++)
		r[i] = reader(path, i + 1, "job-7", id, ID, 20000);
	usleep(300 * 1000);	/* the readers are polling a file that is not there yet */
	struct ftk_error e;
	ck_assert_int_eq(ftk_dist_file_id(path, 0, "job-7", id, ID, 0, &e), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(status_of(r[i]), 0);
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq((int)sb.st_size, ID + 5);
}
END_TEST

START_TEST(a_file_from_another_job_is_not_taken)
{
	char old[ID], id[ID], path[] = "nccl-id";
	struct ftk_error e;
	fill(old, ID, 2);
	fill(id, ID, 3);
	/* left by job-1 */
	ck_assert_int_eq(ftk_dist_file_id(path, 0, "job-1", old, ID, 0, &e), 0);
	/* job-2's reader waits past it until job-2's rank 0 writes */
	pid_t r = reader(path, 1, "job-2", id, ID, 20000);
	usleep(300 * 1000);
	ck_assert_int_eq(ftk_dist_file_id(path, 0, "job-2", id, ID, 0, &e), 0);
	ck_assert_int_eq(status_of(r), 0);
	/* with nobody writing, the reader gives up and says why */
	ck_assert_int_eq(ftk_dist_file_id(path, 1, "job-3", id, ID, 300, &e), FTK_ENET);
	ck_assert_str_eq(e.file, path);
	ck_assert_ptr_nonnull(strstr(e.msg, "no NCCL id for this job (key 'job-3')"));
	/* and when there is no file at all */
	ck_assert_int_eq(ftk_dist_file_id("nowhere", 1, NULL, id, ID, 200, &e), FTK_ENET);
	ck_assert_str_eq(e.msg, "no NCCL id from rank 0 after 0 s");
	/* without keys a file of the right size is taken */
	ck_assert_int_eq(ftk_dist_file_id("plain", 0, NULL, old, ID, 0, &e), 0);
	char got[ID];
	ck_assert_int_eq(ftk_dist_file_id("plain", 1, "", got, ID, 0, &e), 0);
	ck_assert_int_eq(memcmp(got, old, ID), 0);
}
END_TEST

START_TEST(rank_0_reports_a_path_it_cannot_write)
{
	char id[ID];
	struct ftk_error e;
	fill(id, ID, 5);
	ck_assert_int_eq(ftk_dist_file_id("no/such/dir/id", 0, "k", id, ID, 0, &e), FTK_EIO);
	ck_assert_str_eq(e.file, "no/such/dir/id");
	ck_assert_ptr_nonnull(strstr(e.msg, "writing the NCCL id"));
}
END_TEST

/*
 * Starting NCCL without mpirun: the rank variables are checked before
 * anything is loaded, and a machine without NCCL or a GPU says which.
 */
START_TEST(nccl_start_checks_the_rank_variables)
{
	struct ftk_dist *d;
	struct ftk_error e;
	unsetenv("OMPI_COMM_WORLD_SIZE");
	unsetenv("PMIX_RANK");
	unsetenv("SLURM_PROCID");
	unsetenv("SLURM_NTASKS");
	unsetenv("FTK_RANK");
	unsetenv("FTK_WORLD_SIZE");
	ck_assert_int_eq(ftk_dist_start(&d, FTK_DIST_MODE_NCCL, "cuda", &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "needs FTK_RANK and FTK_WORLD_SIZE"));
	ftk_dist_end(d);
	setenv("FTK_RANK", "3", 1);
	setenv("FTK_WORLD_SIZE", "2", 1);
	ck_assert_int_eq(ftk_dist_start(&d, FTK_DIST_MODE_NCCL, "cuda", &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "rank 3 is not in a world of 2");
	ftk_dist_end(d);
	/* Slurm's names serve when ftk's are not set */
	unsetenv("FTK_RANK");
	unsetenv("FTK_WORLD_SIZE");
	setenv("SLURM_PROCID", "1", 1);
	setenv("SLURM_NTASKS", "1", 1);
	ck_assert_int_eq(ftk_dist_start(&d, FTK_DIST_MODE_NCCL, "cuda", &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "rank 1 is not in a world of 1");
	ftk_dist_end(d);
	/* valid ranks: what stops it is NCCL or the GPU missing (here), or on a
	 * GPU machine the missing FTK_DIST_FILE */
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURM_NTASKS", "2", 1);
	unsetenv("FTK_DIST_FILE");
	int rc = ftk_dist_start(&d, FTK_DIST_MODE_NCCL, "cuda", &e);
	if (rc == FTK_EUNSUPPORTED)
		ck_assert_ptr_nonnull(strstr(e.msg, "nccl: "));
	else
		ck_assert_ptr_nonnull(strstr(e.msg, "needs FTK_DIST_FILE"));
	ftk_dist_end(d);
	/* and nccl is for GPUs */
	ck_assert_int_eq(ftk_dist_start(&d, FTK_DIST_MODE_NCCL, "cpu", &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "--dist nccl needs --device cuda"));
	ftk_dist_end(d);
}
END_TEST


static void clear_launchers(void)
{
	const char *v[] = { "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK",
			    "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "FTK_RANK",
			    "FTK_WORLD_SIZE", "FTK_DIST_FILE" };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		unsetenv(v[i]);
}

/*
 * The route follows what the build has: srun --mpi=pmix (PMIX_RANK and
 * Slurm's variables, no OMPI_*) takes MPI only when the build has it; a
 * GPU run without MPI takes the launcher's ranks and the shared file, and
 * a CPU run of several processes without MPI is refused by name.
 */
START_TEST(route_follows_the_build_and_the_launcher)
{
	struct ftk_dist_route r;
	struct ftk_error e;
	clear_launchers();
	/* alone */
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cuda", 1, &r, &e), 0);
	ck_assert_str_eq(r.transport, "none");
	ck_assert_int_eq(r.ranks, FTK_DIST_ALONE);
	/* srun --mpi=pmix -n 2 */
	setenv("PMIX_RANK", "1", 1);
	setenv("SLURM_PROCID", "1", 1);
	setenv("SLURM_NTASKS", "2", 1);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cuda", 1, &r, &e), 0);
	ck_assert_str_eq(r.transport, "nccl");
	ck_assert_int_eq(r.ranks, FTK_DIST_BY_MPI);
	ck_assert_str_eq(r.launcher, "pmix");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cuda", 0, &r, &e), 0);
	ck_assert_str_eq(r.transport, "nccl");
	ck_assert_int_eq(r.ranks, FTK_DIST_BY_ENV);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_NCCL, "cuda", 0, &r, &e), 0);
	ck_assert_int_eq(r.ranks, FTK_DIST_BY_ENV);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 1, &r, &e), 0);
	ck_assert_str_eq(r.transport, "mpi");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 0, &r, &e), FTK_EUNSUPPORTED);
	ck_assert_str_eq(e.msg, "started by pmix (PMIX_RANK is set) as one of 2 processes, but "
				"this ftk was built without MPI, which the CPU's data-parallel "
				"training needs: rebuild with OpenMPI (make deps) or start one "
				"process");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_MPI, "cuda", 0, &r, &e), FTK_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(e.msg, "built without MPI"));
	/* one task under PMIx without MPI: nothing to share, train alone */
	setenv("SLURM_NTASKS", "1", 1);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 0, &r, &e), 0);
	ck_assert_str_eq(r.transport, "none");
	/* mpirun */
	clear_launchers();
	setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 1, &r, &e), 0);
	ck_assert_str_eq(r.transport, "mpi");
	ck_assert_str_eq(r.launcher, "mpirun");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 0, &r, &e), FTK_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(e.msg, "started by mpirun (OMPI_COMM_WORLD_SIZE is set)"));
	/* no launcher: nccl with a rendezvous file, else none */
	clear_launchers();
	setenv("FTK_DIST_FILE", "x", 1);
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cuda", 0, &r, &e), 0);
	ck_assert_str_eq(r.transport, "nccl");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_AUTO, "cpu", 0, &r, &e), 0);
	ck_assert_str_eq(r.transport, "none");
	ck_assert_int_eq(ftk_dist_route(FTK_DIST_MODE_NCCL, "cpu", 1, &r, &e), FTK_EUSAGE);
	/* an unknown word is the option table's to refuse (tests/cli/train-dist);
	   a number outside the enum still gets an error, not a route */
	ck_assert_int_eq(ftk_dist_route((enum ftk_dist_mode)7, "cpu", 1, &r, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "--dist: no mode 7 (auto|none|mpi|nccl)");
	clear_launchers();
}
END_TEST

/* A python3 on PATH that prints the folders given, as sys.path would. */
static void fake_python(const char *bindir, const char *paths)
{
	char f[8192];
	snprintf(f, sizeof(f), "mkdir -p %s && printf '#!/bin/sh\\nprintf \"%s\"\\n' > "
			       "%s/python3 && chmod +x %s/python3",
		 bindir, paths, bindir, bindir);
	ck_assert_int_eq(system(f), 0);
}

/*
 * NCCL from a PyTorch wheel: the python3 on PATH says where its packages
 * are, and nvidia/nccl/lib/libnccl.so.2 under one of them is found; where
 * none holds it, the folders looked in are named.
 */
START_TEST(nccl_is_found_in_a_wheel_folder)
{
	char cwd[1024], bin[1100], site[1100], site2[1100], paths[4096], path[4200], cmd[4096];
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	snprintf(bin, sizeof(bin), "%s/fakebin", cwd);
	snprintf(site, sizeof(site), "%s/venv/lib/python3.11/site-packages", cwd);
	snprintf(site2, sizeof(site2), "%s/usr/lib/python3/dist-packages", cwd);
	snprintf(paths, sizeof(paths), "%s/lib/python311.zip\\n%s\\n%s", cwd, site2, site);
	fake_python(bin, paths);
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : strdup("/usr/bin:/bin");
	char np[8192];
	snprintf(np, sizeof(np), "%s:%s", bin, old);
	setenv("PATH", np, 1);
	struct strbuf looked = STRBUF_INIT;
	ck_assert_int_eq(ftk_dist_nccl_wheel(path, sizeof(path), &looked), 0);
	char want[8192];
	snprintf(want, sizeof(want), "nvidia/nccl/lib in python3's %s, %s", site2, site);
	ck_assert_str_eq(looked.buf, want);
	strbuf_release(&looked);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/nvidia/nccl/lib && : > %s/nvidia/nccl/lib/libnccl.so.2",
		 site, site);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(ftk_dist_nccl_wheel(path, sizeof(path), &looked), 1);
	snprintf(want, sizeof(want), "%s/nvidia/nccl/lib/libnccl.so.2", site);
	ck_assert_str_eq(path, want);
	strbuf_release(&looked);
	/* no python3 at all */
	setenv("PATH", "/nonexistent", 1);
	ck_assert_int_eq(ftk_dist_nccl_wheel(path, sizeof(path), &looked), 0);
	ck_assert_str_eq(looked.buf, "no python3 on PATH to ask for its wheels");
	strbuf_release(&looked);
	setenv("PATH", old, 1);
	free(old);
	/* FTK_NCCL_LIB names the library: its failure is its own */
	setenv("FTK_NCCL_LIB", cwd, 1);
	struct ftk_error e;
	ck_assert_ptr_null(ftk_dist_nccl_open(path, sizeof(path), &e));
	ck_assert_int_eq(e.code, FTK_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(e.msg, "nccl: FTK_NCCL_LIB='"));
	snprintf(want, sizeof(want), "%s/libnccl.so.2", cwd);
	ck_assert_str_eq(path, want);
	unsetenv("FTK_NCCL_LIB");
}
END_TEST

static Suite *dist_suite(void)
{
	Suite *s = suite_create("dist");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, readers_wait_for_rank_0);
	tcase_add_test(tc, a_file_from_another_job_is_not_taken);
	tcase_add_test(tc, rank_0_reports_a_path_it_cannot_write);
	tcase_add_test(tc, nccl_start_checks_the_rank_variables);
	tcase_add_test(tc, route_follows_the_build_and_the_launcher);
	tcase_add_test(tc, nccl_is_found_in_a_wheel_folder);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN_GUARDED(dist_suite)

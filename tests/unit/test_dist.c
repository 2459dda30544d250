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
	ck_assert_int_eq(ftk_dist_start(&d, "nccl", "cuda", &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "needs FTK_RANK and FTK_WORLD_SIZE"));
	ftk_dist_end(d);
	setenv("FTK_RANK", "3", 1);
	setenv("FTK_WORLD_SIZE", "2", 1);
	ck_assert_int_eq(ftk_dist_start(&d, "nccl", "cuda", &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "rank 3 is not in a world of 2");
	ftk_dist_end(d);
	/* Slurm's names serve when ftk's are not set */
	unsetenv("FTK_RANK");
	unsetenv("FTK_WORLD_SIZE");
	setenv("SLURM_PROCID", "1", 1);
	setenv("SLURM_NTASKS", "1", 1);
	ck_assert_int_eq(ftk_dist_start(&d, "nccl", "cuda", &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "rank 1 is not in a world of 1");
	ftk_dist_end(d);
	/* valid ranks: what stops it is NCCL or the GPU missing (here), or on a
	 * GPU machine the missing FTK_DIST_FILE */
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURM_NTASKS", "2", 1);
	unsetenv("FTK_DIST_FILE");
	int rc = ftk_dist_start(&d, "nccl", "cuda", &e);
	if (rc == FTK_EUNSUPPORTED)
		ck_assert_ptr_nonnull(strstr(e.msg, "nccl: "));
	else
		ck_assert_ptr_nonnull(strstr(e.msg, "needs FTK_DIST_FILE"));
	ftk_dist_end(d);
	/* and nccl is for GPUs */
	ck_assert_int_eq(ftk_dist_start(&d, "nccl", "cpu", &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "--dist nccl needs --device cuda"));
	ftk_dist_end(d);
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
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(dist_suite)

/*
 * stats.h: the numbers behind "how sure are we" in ftk-eval.
 *
 * A metric over a run is a list of observations x_i, one per scored case (or
 * per sample when --samples K > 1), each optionally in a cluster (cases that
 * share a source document, a conversation, a template: they are not
 * independent, and treating them as if they were makes error bars too
 * narrow).  Errored cases are not observations at all; the caller counts
 * them apart.
 *
 *   mean   the plain average.
 *   se     the standard error of the mean: s / sqrt(n) with the n-1 sample
 *          variance; with clusters, the cluster-robust (sandwich) form
 *          sqrt(G/(G-1) * sum_g (sum_{i in g} (x_i - mean))^2) / n, which is
 *          what Stata's CR1 gives for a regression on a constant and reduces
 *          to s / sqrt(n) when every case is its own cluster.
 *   95%    for a proportion (every x_i is 0 or 1): the Wilson score interval,
 *          which stays inside [0, 1] and keeps its coverage on small n where
 *          the mean +- 1.96 se interval does not; with clusters it is computed
 *          on the effective sample size p(1-p)/se^2.  Otherwise mean +- t se
 *          with Student's t on n-1 (or G-1) degrees of freedom.
 *
 * Comparisons pair the two runs' values case by case (d_i = b_i - a_i): the
 * mean difference, its standard error (clustered the same way), a t interval
 * and a two-sided p-value.  For pass/fail metrics, McNemar's test looks only
 * at the discordant pairs (b: passed in A, failed in B; c: failed in A,
 * passed in B): exact binomial when b + c < 25, else chi-square with the
 * continuity correction.
 *
 * Every function here is pure, allocates nothing it keeps, and returns NaN
 * for a quantity that is undefined (the se of one observation).
 */
#ifndef FTK_EVAL_STATS_H
#define FTK_EVAL_STATS_H

#include <stddef.h>

struct ftk_stat_summary {
	size_t n;		/* observations */
	size_t n_clusters;	/* distinct clusters, n when none were given */
	int clustered;		/* clusters were given (and not all singletons) */
	int binary;		/* every observation is 0 or 1 */
	double mean;
	double se;		/* NaN when n < 2 (or fewer than 2 clusters) */
	double lo, hi;		/* 95% interval; NaN when undefined */
	const char *interval;	/* "wilson" or "t" (static string) */
};

/*
 * Summarize x[0..n).  cluster may be NULL (independent observations) or give
 * each observation's cluster as a small non-negative id.  Always succeeds;
 * n = 0 gives mean NaN.
 */
void ftk_stats_summarize(const double *x, const long *cluster, size_t n,
			 struct ftk_stat_summary *out);

/*
 * Mean and standard error of x[0..n), clustered when cluster is not NULL.
 * Returns the number of clusters used (n when cluster is NULL).
 */
size_t ftk_stats_mean_se(const double *x, const long *cluster, size_t n, double *mean,
			 double *se);

/* Wilson score interval for k successes in n trials at normal quantile z. */
void ftk_stats_wilson(double k, double n, double z, double *lo, double *hi);

/* Standard normal CDF and its inverse (p in (0,1)). */
double ftk_stats_norm_cdf(double x);
double ftk_stats_norm_quantile(double p);

/* Student's t CDF and inverse with df > 0 degrees of freedom. */
double ftk_stats_t_cdf(double t, double df);
double ftk_stats_t_quantile(double p, double df);

/* The regularized incomplete beta function I_x(a, b). */
double ftk_stats_betainc(double a, double b, double x);

struct ftk_mcnemar {
	long b, c;		/* discordant pairs: pass->fail, fail->pass */
	double p_exact;		/* two-sided exact binomial p */
	double chi2;		/* (|b-c|-1)^2 / (b+c), continuity corrected */
	double p_chi2;
	double p;		/* p_exact when b+c < 25, else p_chi2 */
	const char *method;	/* "exact" or "chi2" */
};

/* McNemar's test from the discordant counts. */
void ftk_stats_mcnemar(long b, long c, struct ftk_mcnemar *out);

struct ftk_paired {
	size_t n;		/* pairs */
	size_t n_clusters;
	double mean_a, mean_b;
	double diff;		/* mean of b - a */
	double se;
	double lo, hi;		/* 95% t interval of the difference */
	double df;
	double t;		/* diff / se */
	double p;		/* two-sided */
};

/*
 * Paired comparison of a[i] and b[i] over i < n (cluster as above, may be
 * NULL).  With se = 0 the p-value is 1 when diff is 0 and 0 otherwise.
 */
void ftk_stats_paired(const double *a, const double *b, const long *cluster, size_t n,
		      struct ftk_paired *out);

#endif

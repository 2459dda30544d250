/*
 * stats.c: means, standard errors, intervals and paired tests (see stats.h).
 *
 * The special functions are written from their textbook definitions rather
 * than pulled from a library, because Debian's libm has no incomplete beta
 * and the whole need is small:
 *
 *   - the regularized incomplete beta I_x(a,b) by its continued fraction,
 *     evaluated with the modified Lentz method, using the symmetry
 *     I_x(a,b) = 1 - I_{1-x}(b,a) where the fraction converges slowly;
 *   - Student's t CDF from it: P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2;
 *   - the t quantile by bisection on that CDF (60 halvings: exact to the
 *     last bit that matters, and no derivative to go wrong);
 *   - the normal quantile by Newton steps on erfc from a rational start.
 *
 * tests/unit/test_stats.c checks all of them against numbers computed by
 * other means (numpy integration of the density, torch's gammaincc, exact
 * binomial sums), committed with the script that made them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lib/err.h"
#include "stats.h"

double ftk_stats_norm_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

double ftk_stats_norm_quantile(double p)
{
	if (!(p > 0 && p < 1))
		return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
	/* work in the lower tail, where erfc keeps its relative precision */
	if (p > 0.5)
		return -ftk_stats_norm_quantile(1 - p);
	/* a rough start (a logistic approximation), then Newton on the CDF */
	double x = -log(1 / p - 1) / 1.702;
	for (int i = 0; i < 50; i++) {
		double f = ftk_stats_norm_cdf(x) - p;
		double d = exp(-0.5 * x * x) / sqrt(2 * M_PI);
		if (d < 1e-300)
			break;
		double step = f / d;
		if (step > 2)
			step = 2;
		if (step < -2)
			step = -2;
		x -= step;
		if (fabs(step) < 1e-15 * (1 + fabs(x)))
			break;
	}
	return x;
}

#define LENTZ_TINY 1e-300	/* stands in for a zero denominator */

/* One step of modified Lentz with the coefficient aa: updates c and d, returns the factor. */
static double lentz_step(double aa, double *c, double *d)
{
	*d = 1 + aa * *d;
	if (fabs(*d) < LENTZ_TINY)
		*d = LENTZ_TINY;
	*c = 1 + aa / *c;
	if (fabs(*c) < LENTZ_TINY)
		*c = LENTZ_TINY;
	*d = 1 / *d;
	return *d * *c;
}

/* The continued fraction for I_x(a,b), modified Lentz: an even and an odd step per m. */
static double betacf(double a, double b, double x)
{
	const double eps = 1e-16;
	double qab = a + b, qap = a + 1, qam = a - 1;
	double c = 1, d = 1 - qab * x / qap;
	if (fabs(d) < LENTZ_TINY)
		d = LENTZ_TINY;
	d = 1 / d;
	double h = d;
	for (int m = 1; m <= 10000; m++) {
		int m2 = 2 * m;
		h *= lentz_step(m * (b - m) * x / ((qam + m2) * (a + m2)), &c, &d);
		double del = lentz_step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), &c, &d);
		h *= del;
		if (fabs(del - 1) < eps)
			break;
	}
	return h;
}

double ftk_stats_betainc(double a, double b, double x)
{
	if (!(a > 0 && b > 0) || isnan(x))
		return NAN;
	if (x <= 0)
		return 0;
	if (x >= 1)
		return 1;
	double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
	double bt = exp(lbt);
	if (x < (a + 1) / (a + b + 2))
		return bt * betacf(a, b, x) / a;
	return 1 - bt * betacf(b, a, 1 - x) / b;
}

double ftk_stats_t_cdf(double t, double df)
{
	if (isnan(t) || !(df > 0))
		return NAN;
	if (isinf(t))
		return t > 0 ? 1 : 0;
	double tail = 0.5 * ftk_stats_betainc(df / 2, 0.5, df / (df + t * t));
	return t > 0 ? 1 - tail : tail;
}

double ftk_stats_t_quantile(double p, double df)
{
	if (!(p > 0 && p < 1) || !(df > 0))
		return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
	if (p == 0.5)
		return 0;
	/* bracket: the t quantile is outside the normal one, and grows as df falls */
	double lo = -1, hi = 1;
	while (ftk_stats_t_cdf(lo, df) > p)
		lo *= 2;
	while (ftk_stats_t_cdf(hi, df) < p)
		hi *= 2;
	for (int i = 0; i < 200 && hi - lo > 1e-14 * (1 + fabs(lo)); i++) {
		double mid = 0.5 * (lo + hi);
		if (ftk_stats_t_cdf(mid, df) < p)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

void ftk_stats_wilson(double k, double n, double z, double *lo, double *hi)
{
	if (!(n > 0)) {
		*lo = *hi = NAN;
		return;
	}
	double p = k / n, z2 = z * z;
	double denom = 1 + z2 / n;
	double centre = (p + z2 / (2 * n)) / denom;
	double half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom;
	*lo = centre - half;
	*hi = centre + half;
	if (*lo < 0)
		*lo = 0;
	if (*hi > 1)
		*hi = 1;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

size_t ftk_stats_mean_se(const double *x, const long *cluster, size_t n, double *mean,
			 double *se)
{
	*mean = NAN;
	*se = NAN;
	if (n == 0)
		return 0;
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	double m = s / (double)n;
	*mean = m;
	if (!cluster) {
		if (n < 2)
			return n;
		double ss = 0;
		for (size_t i = 0; i < n; i++)
			ss += (x[i] - m) * (x[i] - m);
		*se = sqrt(ss / (double)(n - 1) / (double)n);
		return n;
	}
	/* sum the residuals per cluster: sort (cluster, residual) pairs by cluster */
	struct cr { long c; double r; };
	struct cr *v = xmalloc(n * sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		v[i].c = cluster[i];
		v[i].r = x[i] - m;
	}
	qsort(v, n, sizeof(*v), cmp_long);	/* c is the first member */
	size_t g = 0;
	double meat = 0;
	for (size_t i = 0; i < n;) {
		double sg = 0;
		size_t j = i;
		while (j < n && v[j].c == v[i].c)
			sg += v[j++].r;
		meat += sg * sg;
		g++;
		i = j;
	}
	free(v);
	if (g >= 2)
		*se = sqrt((double)g / (double)(g - 1) * meat) / (double)n;
	return g;
}

static int all_binary(const double *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (x[i] != 0 && x[i] != 1)
			return 0;
	return n > 0;
}

void ftk_stats_summarize(const double *x, const long *cluster, size_t n,
			 struct ftk_stat_summary *out)
{
	memset(out, 0, sizeof(*out));
	out->n = n;
	out->binary = all_binary(x, n);
	out->n_clusters = ftk_stats_mean_se(x, cluster, n, &out->mean, &out->se);
	out->clustered = cluster && out->n_clusters < n;
	out->lo = out->hi = NAN;
	const double z = ftk_stats_norm_quantile(0.975);
	if (out->binary) {
		out->interval = "wilson";
		double neff = (double)n;
		if (out->clustered && out->se > 0) {
			double p = out->mean;
			neff = p * (1 - p) / (out->se * out->se);
			if (neff > (double)n)
				neff = (double)n;
		}
		ftk_stats_wilson(out->mean * neff, neff, z, &out->lo, &out->hi);
	} else {
		out->interval = "t";
		double df = (double)(cluster ? out->n_clusters : n) - 1;
		if (df >= 1 && !isnan(out->se)) {
			double t = ftk_stats_t_quantile(0.975, df);
			out->lo = out->mean - t * out->se;
			out->hi = out->mean + t * out->se;
		}
	}
}

void ftk_stats_mcnemar(long b, long c, struct ftk_mcnemar *out)
{
	memset(out, 0, sizeof(*out));
	out->b = b;
	out->c = c;
	long n = b + c;
	if (n <= 0) {
		out->p_exact = out->p_chi2 = out->p = 1;
		out->chi2 = 0;
		out->method = "exact";
		return;
	}
	long k = b < c ? b : c;
	/* two-sided: twice the smaller tail of Binomial(n, 1/2), summed in log space */
	double tail = 0;
	for (long i = 0; i <= k; i++)
		tail += exp(lgamma((double)n + 1) - lgamma((double)i + 1) -
			    lgamma((double)(n - i) + 1) - (double)n * M_LN2);
	out->p_exact = 2 * tail > 1 ? 1 : 2 * tail;
	double d = fabs((double)(b - c)) - 1;
	if (d < 0)
		d = 0;
	out->chi2 = d * d / (double)n;
	out->p_chi2 = erfc(sqrt(out->chi2 / 2));	/* chi-square, 1 df, upper tail */
	if (n < 25) {
		out->p = out->p_exact;
		out->method = "exact";
	} else {
		out->p = out->p_chi2;
		out->method = "chi2";
	}
}

void ftk_stats_paired(const double *a, const double *b, const long *cluster, size_t n,
		      struct ftk_paired *out)
{
	memset(out, 0, sizeof(*out));
	out->n = n;
	out->lo = out->hi = out->t = out->p = out->df = NAN;
	double *d = xmalloc((n ? n : 1) * sizeof(*d));
	double sa = 0, sb = 0;
	for (size_t i = 0; i < n; i++) {
		d[i] = b[i] - a[i];
		sa += a[i];
		sb += b[i];
	}
	out->mean_a = n ? sa / (double)n : NAN;
	out->mean_b = n ? sb / (double)n : NAN;
	out->n_clusters = ftk_stats_mean_se(d, cluster, n, &out->diff, &out->se);
	free(d);
	if (n == 0)
		return;
	out->df = (double)out->n_clusters - 1;
	if (out->se == 0) {
		out->t = out->diff == 0 ? 0 : copysign(INFINITY, out->diff);
		out->p = out->diff == 0 ? 1 : 0;
		out->lo = out->hi = out->diff;
		return;
	}
	if (isnan(out->se) || out->df < 1)
		return;
	double tq = ftk_stats_t_quantile(0.975, out->df);
	out->lo = out->diff - tq * out->se;
	out->hi = out->diff + tq * out->se;
	out->t = out->diff / out->se;
	out->p = 2 * (1 - ftk_stats_t_cdf(fabs(out->t), out->df));
}

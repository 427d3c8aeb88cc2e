//! PURE spatial choice: where as well as when. Given the forecasts of several regions, plan
//! the same job in each allowed region with [`decide`] and rank the regions by the
//! emissions each plan expects.
//!
//! The job runs where it starts: a region is chosen before the job is dispatched (a
//! MultiKueue worker cluster, or a `simulate` replay) and the receding-horizon replanning
//! afterwards happens in that region only. Every candidate gets the same request (work,
//! deadline, strategy, constraints, state) with its own forecast, so each ranked plan keeps
//! [`decide`]'s guarantees there, the deadline guard included: whichever region is chosen,
//! the job is planned to finish by its deadline when that is feasible at all.

use super::{decide, Plan, PlanRequest, Reason};
use crate::series::Series;

/// A region the job may run in, with the intensities a plan there would use.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The region's name (a grid zone, a cloud region, a cluster's region label).
    pub region: &'a str,
    /// What is known of that region's grid from the request's `now` on (extended beyond
    /// its horizon by the caller, as for [`decide`]).
    pub forecast: &'a Series,
}

/// One region's plan, as [`rank`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'a> {
    pub region: &'a str,
    /// The region's position in the candidates given to [`rank`].
    pub index: usize,
    pub plan: Plan,
}

/// Whether `region` is one of `allowed` (`None`: every region is). Region names compare
/// without regard to ASCII case (`fr` is `FR`).
pub fn is_allowed(region: &str, allowed: Option<&[String]>) -> bool {
    allowed.is_none_or(|a| a.iter().any(|r| r.eq_ignore_ascii_case(region)))
}

/// Plans `req` in every candidate region `allowed` admits (its forecast replaced by the
/// region's) and ranks them: the least expected emissions first. A plan that cannot meet
/// the deadline ranks after every plan that can (with equal work and deadlines this only
/// matters if a caller mixes requests); ties keep the candidates' order, so the first
/// candidate ("home") wins a draw. Empty when no candidate is allowed. Never panics.
pub fn rank<'a>(
    req: &PlanRequest<'_>,
    candidates: &[Candidate<'a>],
    allowed: Option<&[String]>,
) -> Vec<Ranked<'a>> {
    let mut ranked: Vec<Ranked<'a>> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| is_allowed(c.region, allowed))
        .map(|(index, c)| Ranked {
            region: c.region,
            index,
            plan: decide(&PlanRequest {
                forecast: c.forecast,
                ..*req
            }),
        })
        .collect();
    let key = |r: &Ranked<'_>| {
        let grams = r.plan.expected_grams_per_kw;
        (
            r.plan.reason == Reason::DeadlineInfeasible,
            if grams.is_finite() { grams } else { f64::MAX },
        )
    };
    ranked.sort_by(|a, b| {
        let (ia, ga) = key(a);
        let (ib, gb) = key(b);
        ia.cmp(&ib)
            .then(ga.total_cmp(&gb))
            .then(a.index.cmp(&b.index))
    });
    ranked
}

/// The best region and its plan: the first of [`rank`], None when no candidate is allowed.
pub fn choose<'a>(
    req: &PlanRequest<'_>,
    candidates: &[Candidate<'a>],
    allowed: Option<&[String]>,
) -> Option<Ranked<'a>> {
    rank(req, candidates, allowed).into_iter().next()
}

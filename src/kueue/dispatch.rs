//! PURE MultiKueue dispatch: which worker cluster a Workload should be nominated to.
//!
//! Kueue's MultiKueue (with `multiKueue.dispatcherName: carbonshift.io/multikueue-dispatcher`
//! in its configuration) copies a Workload that reserved quota on the manager only to the
//! worker clusters in its `status.nominatedClusterNames`, and leaves filling that list to
//! the external dispatcher: carbonshift. The clusters are ranked by the emissions the job
//! would cause in each one's region ([`crate::plan::spatial::rank`], regions from the
//! [`REGION_LABEL`] of each MultiKueueCluster), and the Workload is nominated to the best
//! one. A cluster that has not admitted it within the dispatch timeout is passed over for
//! the next best; a forecast that makes another cluster better before the Workload is
//! admitted moves it there. Once a worker admits it (`status.clusterName`), the choice is
//! final: the job runs where it started, timed by that cluster's carbon-window check.

use chrono::{DateTime, TimeDelta, Utc};

use crate::timefmt;

/// The `multiKueue.dispatcherName` to set in Kueue's configuration.
pub const DISPATCHER_NAME: &str = "carbonshift.io/multikueue-dispatcher";
/// The `controllerName` of Kueue's MultiKueue AdmissionChecks.
pub const MULTIKUEUE_CONTROLLER: &str = "kueue.x-k8s.io/multikueue";
/// The label of a MultiKueueCluster that names its grid zone or cloud region.
pub const REGION_LABEL: &str = "carbonshift.io/region";
/// On the manager's Workload: the cluster carbonshift nominated, and when
/// (`<cluster> <RFC 3339>`).
pub const NOMINATED: &str = "carbonshift.io/nominated";
/// On the manager's Workload: when the nominated cluster's plan starts the job (RFC 3339).
/// The dispatch timeout counts from then: a worker whose carbon-window check holds the
/// Workload for its clean window is not passed over for it.
pub const EXPECTED_START: &str = "carbonshift.io/expected-start";
/// On the manager's Workload: the clusters passed over because they did not admit it in
/// time (comma-separated).
pub const PASSED_OVER: &str = "carbonshift.io/passed-over";
/// On a job object (or its Workload): the regions it may run in (comma-separated grid
/// zones or cloud regions, as the clusters' region labels name them).
pub const REGIONS: &str = "carbonshift.io/regions";

/// A worker cluster of the Workload's MultiKueueConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub name: String,
    /// Its [`REGION_LABEL`], if any.
    pub region: Option<String>,
    /// Whether Kueue reaches it (its `Active` condition).
    pub active: bool,
}

/// What the dispatcher reads of the manager's Workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub quota_reserved: bool,
    pub finished: bool,
    /// `status.clusterName`: a worker admitted it.
    pub dispatched: Option<String>,
    /// `status.nominatedClusterNames`.
    pub nominated: Vec<String>,
    /// carbonshift's own nomination ([`NOMINATED`]).
    pub ours: Option<(String, DateTime<Utc>)>,
    /// [`PASSED_OVER`].
    pub passed_over: Vec<String>,
    /// [`EXPECTED_START`].
    pub expected_start: Option<DateTime<Utc>>,
}

/// Why a cluster is nominated.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// The cleanest cluster, nominated first.
    Best,
    /// The previous nomination did not admit the Workload within the timeout.
    TimedOut { previous: String },
    /// A new forecast makes this cluster cleaner than the previous nomination.
    Cleaner { previous: String },
}

/// What to do with the Workload now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nominate `cluster` (alone), recording `passed_over`.
    Nominate {
        cluster: String,
        passed_over: Vec<String>,
        why: Why,
    },
    /// Nothing until then (the nomination's timeout), unless something changes.
    Wait { until: DateTime<Utc> },
    /// Nothing to do: not ours to dispatch (yet), or already dispatched.
    Nothing,
}

/// The workers best first: those whose region is among `ranked_regions` in that order
/// (clusters sharing a region by name), then active workers whose region has no forecast
/// or no label, by name (a job is never stranded for want of a label). Inactive workers and
/// regions the job is not allowed in (absent from `ranked_regions` while labelled) are left
/// out.
pub fn order(workers: &[Worker], ranked_regions: &[&str], unranked: &[&str]) -> Vec<String> {
    let mut active: Vec<&Worker> = workers.iter().filter(|w| w.active).collect();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<String> = Vec::new();
    for region in ranked_regions {
        out.extend(
            active
                .iter()
                .filter(|w| w.region.as_deref() == Some(*region))
                .map(|w| w.name.clone()),
        );
    }
    out.extend(
        active
            .iter()
            .filter(|w| w.region.as_deref().is_none_or(|r| unranked.contains(&r)))
            .map(|w| w.name.clone()),
    );
    out
}

/// The next step for a Workload given its workers best first (see [`order`]), the time now
/// and the dispatch timeout. Pure.
pub fn step(view: &View, best_first: &[String], now: DateTime<Utc>, timeout: TimeDelta) -> Step {
    if view.finished || view.dispatched.is_some() || !view.quota_reserved {
        return Step::Nothing;
    }
    let Some(first) = best_first.first() else {
        return Step::Nothing;
    };
    let fresh = |passed: &[String]| -> Option<String> {
        best_first.iter().find(|c| !passed.contains(c)).cloned()
    };
    // Every worker passed over: start again from the best.
    let passed: Vec<String> = match fresh(&view.passed_over) {
        Some(_) => view.passed_over.clone(),
        None => Vec::new(),
    };
    let best = fresh(&passed).unwrap_or_else(|| first.clone());
    // Our nomination stands only while Kueue still has it.
    let current = view
        .ours
        .as_ref()
        .filter(|(c, _)| view.nominated.len() == 1 && view.nominated[0] == *c);
    let Some((cluster, at)) = current else {
        return Step::Nominate {
            cluster: best,
            passed_over: passed,
            why: Why::Best,
        };
    };
    // The timeout counts from the nomination, or from the start planned there if later.
    let since = view.expected_start.map_or(*at, |s| s.max(*at));
    if now - since >= timeout {
        let mut passed = passed;
        if !passed.contains(cluster) {
            passed.push(cluster.clone());
        }
        let (next, passed) = match fresh(&passed) {
            Some(n) => (n, passed),
            None => (first.clone(), Vec::new()),
        };
        return Step::Nominate {
            cluster: next,
            passed_over: passed,
            why: Why::TimedOut {
                previous: cluster.clone(),
            },
        };
    }
    if best != *cluster && best_first.contains(cluster) {
        return Step::Nominate {
            cluster: best,
            passed_over: passed,
            why: Why::Cleaner {
                previous: cluster.clone(),
            },
        };
    }
    if !best_first.contains(cluster) {
        // The nominated cluster left the candidates (inactive, removed, not allowed).
        return Step::Nominate {
            cluster: best,
            passed_over: passed,
            why: Why::Best,
        };
    }
    Step::Wait {
        until: since + timeout,
    }
}

/// The [`NOMINATED`] annotation's value.
pub fn nominated_value(cluster: &str, at: DateTime<Utc>) -> String {
    format!("{cluster} {}", timefmt::format(at))
}

/// Reads a [`NOMINATED`] annotation (None if it is not one carbonshift wrote).
pub fn parse_nominated(s: &str) -> Option<(String, DateTime<Utc>)> {
    let (cluster, at) = s.trim().split_once(' ')?;
    Some((cluster.to_string(), timefmt::parse(at.trim()).ok()?))
}

/// A comma-separated list ([`PASSED_OVER`], [`REGIONS`]): trimmed, empty items dropped.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(s)
    }

    fn w(name: &str, region: Option<&str>, active: bool) -> Worker {
        Worker {
            name: name.into(),
            region: region.map(str::to_string),
            active,
        }
    }

    fn v(ours: Option<(&str, i64)>, passed: &[&str]) -> View {
        View {
            quota_reserved: true,
            nominated: ours.map(|(c, _)| vec![c.to_string()]).unwrap_or_default(),
            ours: ours.map(|(c, s)| (c.to_string(), t(s))),
            passed_over: passed.iter().map(|s| s.to_string()).collect(),
            ..View::default()
        }
    }

    fn s(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    const TIMEOUT: TimeDelta = TimeDelta::seconds(60);

    #[test]
    fn workers_are_ordered_by_their_region_then_unlabelled_inactive_ones_left_out() {
        let workers = [
            w("c", Some("DE"), true),
            w("b", Some("FR"), true),
            w("a", Some("DE"), true),
            w("z", None, true),
            w("y", Some("FR"), false),
            w("x", Some("PL"), true),
            w("u", Some("XX"), true),
        ];
        assert_eq!(
            order(&workers, &["FR", "DE"], &["XX"]),
            s(&["b", "a", "c", "u", "z"])
        );
        assert!(order(&workers[4..5], &["FR"], &[]).is_empty());
    }

    #[test]
    fn the_best_is_nominated_first_then_kept_until_the_timeout() {
        let best = s(&["b", "a"]);
        assert_eq!(
            step(&v(None, &[]), &best, t(0), TIMEOUT),
            Step::Nominate {
                cluster: "b".into(),
                passed_over: vec![],
                why: Why::Best
            }
        );
        assert_eq!(
            step(&v(Some(("b", 0)), &[]), &best, t(59), TIMEOUT),
            Step::Wait { until: t(60) }
        );
    }

    #[test]
    fn a_cluster_that_does_not_admit_in_time_is_passed_over_for_the_next_best() {
        let best = s(&["b", "a"]);
        assert_eq!(
            step(&v(Some(("b", 0)), &[]), &best, t(60), TIMEOUT),
            Step::Nominate {
                cluster: "a".into(),
                passed_over: s(&["b"]),
                why: Why::TimedOut {
                    previous: "b".into()
                }
            }
        );
        // Both passed over: back to the best, the slate wiped.
        assert_eq!(
            step(&v(Some(("a", 60)), &["b"]), &best, t(120), TIMEOUT),
            Step::Nominate {
                cluster: "b".into(),
                passed_over: vec![],
                why: Why::TimedOut {
                    previous: "a".into()
                }
            }
        );
        // A passed-over cluster that becomes the best again is not taken back.
        assert_eq!(
            step(&v(Some(("a", 60)), &["b"]), &best, t(100), TIMEOUT),
            Step::Wait { until: t(120) }
        );
    }

    #[test]
    fn the_timeout_counts_from_the_start_planned_in_the_nominated_region() {
        let best = s(&["b", "a"]);
        let mut view = v(Some(("b", 0)), &[]);
        view.expected_start = Some(t(240));
        assert_eq!(
            step(&view, &best, t(200), TIMEOUT),
            Step::Wait { until: t(300) }
        );
        assert!(matches!(
            step(&view, &best, t(300), TIMEOUT),
            Step::Nominate { ref cluster, why: Why::TimedOut { .. }, .. } if cluster == "a"
        ));
        // A start already past counts from the nomination.
        view.expected_start = Some(t(-100));
        assert_eq!(
            step(&view, &best, t(10), TIMEOUT),
            Step::Wait { until: t(60) }
        );
    }

    #[test]
    fn a_cleaner_forecast_before_admission_moves_the_nomination() {
        let now_best = s(&["a", "b"]);
        assert_eq!(
            step(&v(Some(("b", 0)), &[]), &now_best, t(10), TIMEOUT),
            Step::Nominate {
                cluster: "a".into(),
                passed_over: vec![],
                why: Why::Cleaner {
                    previous: "b".into()
                }
            }
        );
    }

    #[test]
    fn nothing_before_quota_after_admission_or_without_workers() {
        let best = s(&["b"]);
        let mut view = v(None, &[]);
        view.quota_reserved = false;
        assert_eq!(step(&view, &best, t(0), TIMEOUT), Step::Nothing);
        let mut view = v(Some(("b", 0)), &[]);
        view.dispatched = Some("b".into());
        assert_eq!(step(&view, &best, t(600), TIMEOUT), Step::Nothing);
        assert_eq!(step(&v(None, &[]), &[], t(0), TIMEOUT), Step::Nothing);
    }

    #[test]
    fn a_nomination_someone_else_rewrote_or_a_cluster_gone_is_nominated_again() {
        let best = s(&["b", "a"]);
        let mut view = v(Some(("b", 0)), &[]);
        view.nominated = s(&["a", "b"]);
        assert!(matches!(
            step(&view, &best, t(5), TIMEOUT),
            Step::Nominate { ref cluster, why: Why::Best, .. } if cluster == "b"
        ));
        assert!(matches!(
            step(&v(Some(("gone", 0)), &[]), &best, t(5), TIMEOUT),
            Step::Nominate { ref cluster, why: Why::Best, .. } if cluster == "b"
        ));
    }

    #[test]
    fn annotations_round_trip_and_bad_ones_are_ignored() {
        let at = t(42);
        assert_eq!(
            parse_nominated(&nominated_value("worker-b", at)),
            Some(("worker-b".into(), at))
        );
        assert_eq!(parse_nominated("worker-b"), None);
        assert_eq!(parse_nominated("worker-b yesterday"), None);
        assert_eq!(parse_list(" a, ,b,"), s(&["a", "b"]));
    }
}

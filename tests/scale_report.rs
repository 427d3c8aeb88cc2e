//! The parsing and the report of the control-plane scale measurement (`tests/scale/`,
//! `hack/scale-test.sh`), without a cluster.

#[path = "scale/report.rs"]
mod report;

use std::collections::BTreeMap;

use report::*;
use serde_json::json;

const APISERVER: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="APPLY",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="APPLY",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",group="carbonshift.io",resource="carbonawarejobs",subresource="status",verb="APPLY",version="v1alpha1"} 7
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="PUT"} 100
apiserver_request_total{code="200",group="batch",resource="jobs",subresource="",verb="GET"} 40
apiserver_request_total_other{verb="APPLY"} 1000
"#;

#[test]
fn parses_sample_lines() {
    let s = parse_sample(r#"a_b{x="1",y="q\"uo\\te",z=""} 2.5 1700000000"#).expect("a sample");
    assert_eq!(s.name, "a_b");
    assert_eq!(s.label("x"), "1");
    assert_eq!(s.label("y"), r#"q"uo\te"#);
    assert_eq!(s.label("z"), "");
    assert_eq!(s.value, 2.5);
    let bare = parse_sample("carbonshift_reconcile_duration_seconds_count 1234").expect("bare");
    assert_eq!(
        (bare.name.as_str(), bare.value),
        ("carbonshift_reconcile_duration_seconds_count", 1234.0)
    );
    assert!(bare.labels.is_empty());
    assert_eq!(parse_sample("# TYPE x counter"), None);
    assert_eq!(parse_sample("x{a=\"1\" 3"), None, "unclosed label set");
    assert_eq!(parse_sample("x{a=1} 3"), None, "unquoted value");
    assert_eq!(parse_sample("x notanumber"), None);
    assert_eq!(
        parse_sample(r#"x{le="+Inf"} +Inf"#).map(|s| s.value),
        Some(f64::INFINITY)
    );
}

#[test]
fn sums_a_family_and_not_its_prefix_siblings() {
    let text = "m{a=\"1\"} 2\nm{a=\"2\"} 3\nm_count 100\nm 4\n";
    assert_eq!(sum(text, "m"), 9.0);
    assert_eq!(sum(text, "m_count"), 100.0);
    assert_eq!(sum(text, "absent"), 0.0);
    assert_eq!(sum(APISERVER, API_REQUESTS), 162.0);
}

#[test]
fn api_counts_sum_over_codes_and_diff() {
    let before = ApiCounts::parse(APISERVER);
    let key = |v: &str, g: &str, r: &str, s: &str| (v.into(), g.into(), r.into(), s.into());
    assert_eq!(
        before.0.get(&key("APPLY", "batch", "jobs", "")),
        Some(&15.0)
    );
    let after = ApiCounts::parse(
        &APISERVER
            .replace(
                "verb=\"APPLY\",version=\"v1\"} 10",
                "verb=\"APPLY\",version=\"v1\"} 1010",
            )
            .replace(
                "verb=\"APPLY\",version=\"v1alpha1\"} 7",
                "verb=\"APPLY\",version=\"v1alpha1\"} 1507",
            )
            .replace("verb=\"GET\"} 40", "verb=\"GET\"} 12040")
            .replace("verb=\"PUT\"} 100", "verb=\"PUT\"} 130"),
    );
    assert_eq!(before.writes_since(&after, "batch", "jobs", ""), 1000);
    assert_eq!(
        operator_writes(&before, &after),
        "jobs 1000, status 1500, events 0"
    );
    assert_eq!(
        operator_writes(&before, &before),
        "jobs 0, status 0, events 0"
    );
    let table = api_table(&before, &after, 1000);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
            lines,
            [
                "  verb   resource                          requests   per job  by",
                "  APPLY  batch/jobs                            1000     1.000  operator (child Job apply)",
                "  APPLY  carbonshift.io/carbonawarejobs/status      1500     1.500  operator (status apply)",
                "  reads (informational; LISTs include this measurement's polling):",
                "  GET    batch/jobs                           12000    12.000",
            ],
            "leases are left out; reads listed apart:\n{table}"
        );
    assert!(api_table(&before, &before, 10).contains("(no writes)"));
}

#[test]
fn reads_proc() {
    let status =
        "Name:\tcarbonshift\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
    assert_eq!(proc_mem(status), Some((20480, 10240)));
    assert_eq!(proc_mem("Name: x\n"), None);
    // a command name with spaces and parentheses
    let stat =
        "1234 (carbon shift (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 12 0 100 0 0";
    assert_eq!(proc_stat(stat), Some(('S', 325)));
    assert_eq!(proc_stat("1234 (x) Z 1"), None);
    assert_eq!(
        mem_total_kib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
        Some(24576000)
    );
}

#[test]
fn counts_phases_from_the_table() {
    let page = json!({
        "kind": "Table",
        "metadata": {"continue": "abc"},
        "columnDefinitions": [{"name": "Name"}, {"name": "Phase"}, {"name": "Region"}],
        "rows": [
            {"cells": ["a", "Waiting", "DE"]},
            {"cells": ["b", null, null]},
            {"cells": ["c", "", ""]},
            {"cells": ["d", "Waiting", "DE"]},
            {"cells": ["e", "Running", "DE"]},
        ]
    });
    let mut counts = BTreeMap::new();
    assert_eq!(
        count_phases(&page, &mut counts),
        Ok(Some("abc".to_string()))
    );
    let last = json!({"metadata": {}, "columnDefinitions": [{"name": "Phase"}], "rows": [{"cells": ["Waiting"]}]});
    assert_eq!(count_phases(&last, &mut counts), Ok(None));
    assert_eq!(phases_text(&counts), "-=2 Running=1 Waiting=3");
    assert_eq!(with_phase(&counts), 4);
    let no_phase = json!({"columnDefinitions": [{"name": "Name"}], "rows": []});
    assert!(count_phases(&no_phase, &mut counts).is_err());
}

#[test]
fn figures() {
    assert_eq!(mib(14131), "13.8 MiB");
    assert_eq!(kib_per_job(14131, 788173, 10000), "77.4 KiB");
    assert_eq!(row("a", 1), format!("  a{} 1", " ".repeat(45)));
    let a = json!({"status": {"phase": "Waiting", "plan": [1], "gone": true}});
    let b = json!({"status": {"phase": "Waiting", "plan": [2], "new": "x"}});
    assert_eq!(
        status_changes(&a, &b),
        "gone: true -> -, new: - -> \"x\", plan: [1] -> [2]"
    );
    assert_eq!(status_changes(&a, &a), "(none)");
}

#[test]
fn rates_per_hour() {
    assert_eq!(per_hour(20, 660.0), 20.0 * 3600.0 / 660.0);
    assert_eq!(per_hour(0, 660.0), 0.0);
    assert_eq!(per_hour(5, 0.0), 0.0);
}

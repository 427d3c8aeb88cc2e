//! The pure part of the control-plane scale measurement (`tests/scale/main.rs`, run by
//! `hack/scale-test.sh`): reading Prometheus text and `/proc`, the server's table of
//! CarbonAwareJobs, and the report's tables and figures. No I/O, so its tests
//! (`tests/scale_report.rs`) run with every `cargo test`; the measurement needs a cluster.
#![allow(dead_code)] // the measurement and the tests each use part of it

use std::collections::BTreeMap;
use std::fmt::Write as _;

// ------------------------------------------------------------------------------------------
// Prometheus text exposition

/// One sample line of the text exposition format: `name{label="value",...} value [ts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// Parses one sample line; `None` for comments, blank and malformed lines.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = body.split_once('=')?;
            let quoted = after.strip_prefix('"')?;
            let mut chars = quoted.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i + 1,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.trim().to_string(), value);
            body = &quoted[end..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The samples of the family (or series) `name` in a scrape.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample> + 'a {
    text.lines()
        .filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ', '\t']))
        })
        .filter_map(parse_sample)
}

/// Sum of every sample named `name` (0 when there is none).
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text, name).map(|s| s.value).sum()
}

// ------------------------------------------------------------------------------------------
// apiserver_request_total

pub const API_REQUESTS: &str = "apiserver_request_total";

/// (verb, group, resource, subresource)
pub type ApiKey = (String, String, String, String);

/// The kube-apiserver's request counts by verb and resource, summed over the other labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiCounts(pub BTreeMap<ApiKey, f64>);

impl ApiCounts {
    pub fn parse(text: &str) -> Self {
        let mut out = BTreeMap::new();
        for s in samples(text, API_REQUESTS) {
            let key = (
                s.label("verb").to_string(),
                s.label("group").to_string(),
                s.label("resource").to_string(),
                s.label("subresource").to_string(),
            );
            *out.entry(key).or_insert(0.0) += s.value;
        }
        Self(out)
    }

    /// Requests in `after` not in `self`, by key (positive differences only).
    pub fn delta(&self, after: &Self) -> Vec<(ApiKey, u64)> {
        let mut keys: Vec<&ApiKey> = self.0.keys().chain(after.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let d =
                    after.0.get(k).copied().unwrap_or(0.0) - self.0.get(k).copied().unwrap_or(0.0);
                (d > 0.0).then(|| (k.clone(), d as u64))
            })
            .collect()
    }

    /// Writes (POST, PUT, PATCH, APPLY) of one (group, resource, subresource) since `self`.
    pub fn writes_since(&self, after: &Self, group: &str, resource: &str, sub: &str) -> u64 {
        self.delta(after)
            .into_iter()
            .filter(|((verb, g, r, s), _)| {
                WRITES.contains(&verb.as_str())
                    && verb != "DELETE"
                    && g == group
                    && r == resource
                    && s == sub
            })
            .map(|(_, d)| d)
            .sum()
    }
}

const WRITES: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/// Who sends the writes of a (group, resource, subresource) in this measurement.
fn who(group: &str, resource: &str, sub: &str) -> &'static str {
    match (group, resource, sub) {
        ("batch", "jobs", "") => "operator (child Job apply)",
        ("carbonshift.io", "carbonawarejobs", "status") => "operator (status apply)",
        ("events.k8s.io", "events", "") => "operator (Events)",
        ("batch", "jobs", "status") => "kube-controller-manager (Job controller)",
        ("", "events", "") => "kube-controller-manager (core Events)",
        ("carbonshift.io", "carbonawarejobs", "") => "this measurement (creating the jobs)",
        ("", "nodes", "status") => "kwok (node heartbeats)",
        ("", "serviceaccounts", "token") => "kube-controller-manager",
        _ => "",
    }
}

fn resource_name(group: &str, resource: &str, sub: &str) -> String {
    let mut r = String::new();
    if !group.is_empty() {
        r.push_str(group);
        r.push('/');
    }
    r.push_str(resource);
    if !sub.is_empty() {
        r.push('/');
        r.push_str(sub);
    }
    r
}

/// The table of API requests between two snapshots, by verb and resource: writes first
/// (not of leases, token or access reviews), then the reads of jobs and carbonawarejobs;
/// each also per CarbonAwareJob (`n`).
pub fn api_table(before: &ApiCounts, after: &ApiCounts, n: u64) -> String {
    let delta = before.delta(after);
    let per = |d: u64| d as f64 / n.max(1) as f64;
    let mut out = format!(
        "  {:<6} {:<32} {:>9} {:>9}  {}\n",
        "verb", "resource", "requests", "per job", "by"
    );
    let writes: Vec<_> = delta
        .iter()
        .filter(|((verb, _, res, _), _)| {
            WRITES.contains(&verb.as_str())
                && !["leases", "", "tokenreviews", "subjectaccessreviews"].contains(&res.as_str())
        })
        .collect();
    if writes.is_empty() {
        out.push_str("  (no writes)\n");
    }
    for ((verb, group, res, sub), d) in writes {
        let _ = writeln!(
            out,
            "  {:<6} {:<32} {:>9} {:>9.3}  {}",
            verb,
            resource_name(group, res, sub),
            d,
            per(*d),
            who(group, res, sub)
        );
    }
    let reads: Vec<_> = delta
        .iter()
        .filter(|((verb, _, res, _), _)| {
            ["GET", "LIST", "WATCH"].contains(&verb.as_str())
                && ["jobs", "carbonawarejobs"].contains(&res.as_str())
        })
        .collect();
    if !reads.is_empty() {
        out.push_str("  reads (informational; LISTs include this measurement's polling):\n");
        for ((verb, group, res, sub), d) in reads {
            let _ = writeln!(
                out,
                "  {:<6} {:<32} {:>9} {:>9.3}",
                verb,
                resource_name(group, res, sub),
                d,
                per(*d)
            );
        }
    }
    out
}

/// The operator's writes between two snapshots: "jobs J, status S, events E".
pub fn operator_writes(before: &ApiCounts, after: &ApiCounts) -> String {
    format!(
        "jobs {}, status {}, events {}",
        before.writes_since(after, "batch", "jobs", ""),
        before.writes_since(after, "carbonshift.io", "carbonawarejobs", "status"),
        before.writes_since(after, "events.k8s.io", "events", "")
    )
}

// ------------------------------------------------------------------------------------------
// /proc

/// (VmHWM, VmRSS) in KiB from `/proc/<pid>/status`.
pub fn proc_mem(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// (state, user + system CPU ticks) from `/proc/<pid>/stat`: after the parenthesised
/// command name, the state is the first field and utime, stime the 12th and 13th.
pub fn proc_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((state, utime + stime))
}

/// MemTotal of `/proc/meminfo`, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        l.strip_prefix("MemTotal:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

// ------------------------------------------------------------------------------------------
// The server's table of CarbonAwareJobs

/// Counts by the Phase column of one page of a `meta.k8s.io/v1` Table (an unset phase counts
/// as "-"), added to `counts`; returns the page's continue token.
pub fn count_phases(
    table: &serde_json::Value,
    counts: &mut BTreeMap<String, u64>,
) -> Result<Option<String>, String> {
    let columns = table["columnDefinitions"]
        .as_array()
        .ok_or("no columnDefinitions in the table")?;
    let col = columns
        .iter()
        .position(|c| c["name"] == "Phase")
        .ok_or("no Phase column in the table")?;
    for row in table["rows"].as_array().ok_or("no rows in the table")? {
        let phase = row["cells"][col].as_str().unwrap_or("");
        let phase = if phase.is_empty() { "-" } else { phase };
        *counts.entry(phase.to_string()).or_insert(0) += 1;
    }
    Ok(table["metadata"]["continue"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

/// Jobs with a phase (every count but "-").
pub fn with_phase(counts: &BTreeMap<String, u64>) -> u64 {
    counts
        .iter()
        .filter(|(p, _)| p.as_str() != "-")
        .map(|(_, c)| c)
        .sum()
}

/// "Phase=count Phase=count".
pub fn phases_text(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(p, c)| format!("{p}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------------------------------
// Figures

/// `count` over `secs` seconds, as a rate per hour (0 over an empty window).
pub fn per_hour(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 * 3600.0 / secs
    } else {
        0.0
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn kib_per_job(before_kib: u64, after_kib: u64, n: u64) -> String {
    format!(
        "{:.1} KiB",
        (after_kib as f64 - before_kib as f64) / n.max(1) as f64
    )
}

/// One row of the report: the label padded to 46 columns.
pub fn row(label: &str, value: impl std::fmt::Display) -> String {
    format!("  {label:<46} {value}")
}

/// The status fields that differ between two CarbonAwareJobs (as JSON):
/// "field: before -> after, ..." or "(none)".
pub fn status_changes(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let empty = serde_json::Map::new();
    let a = before["status"].as_object().unwrap_or(&empty);
    let b = after["status"].as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("-".to_string(), |v| v.to_string());
            format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    if changed.is_empty() {
        "(none)".to_string()
    } else {
        changed.join(", ")
    }
}

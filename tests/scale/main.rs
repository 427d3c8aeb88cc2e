//! Control plane at scale: the measuring and the report of `hack/scale-test.sh`. The script
//! brings up the private cluster, builds and starts the operator and creates the namespace;
//! then it runs this (docs/benchmarks.md, "Control plane at scale"):
//!
//! ```text
//! CARBONSHIFT_SCALE=1 cargo test --release --test scale -- --pid PID \
//!   --metrics http://127.0.0.1:43080 --operator-log LOG --run-dir DIR -n N [...]
//! ```
//!
//! With the cluster of `KUBECONFIG` it creates N CarbonAwareJobs in the namespace
//! (alternately FlexibleStart and PauseAndResume, `maxDelay: 48h`, 1-3 h of work, CPU-only:
//! no pods while they wait), `--chunk` per batch created one after the other, `--parallel`
//! batches at a time; waits until every one has `status.phase` and the operator has gone
//! quiet; follows `--replans` forecast refreshes; and prints the report on stdout (progress
//! on stderr). Figures: the operator's RSS (`/proc/PID/status`) and CPU (`/proc/PID/stat`),
//! its reconciles, forecast requests and transitions (its `/metrics`), the child Jobs, and
//! the API requests by resource from the kube-apiserver's `apiserver_request_total`
//! (snapshots kept in the run directory).
//!
//! A measurement, not a test: it exits non-zero only when it cannot measure. Without
//! `CARBONSHIFT_SCALE=1` (a plain `cargo test`) it says it is skipped and exits 0;
//! `--check-args` validates the arguments and exits.

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use carbonshift::api::CarbonAwareJob;
use clap::{value_parser, Parser};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use report::{row, ApiCounts};

/// Set to `1` to run the measurement (hack/scale-test.sh does).
const ENABLE_ENV: &str = "CARBONSHIFT_SCALE";
/// The operator's log line for every forecast fetch (src/forecast/cache.rs).
const REFRESHED: &str = "forecast refreshed";
/// The CarbonAwareJob whose status is compared across the replan.
const SAMPLE: u64 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "scale",
    about = "Measures the operator (already running) against N CarbonAwareJobs: see hack/scale-test.sh"
)]
struct Args {
    /// CarbonAwareJobs to create
    #[arg(short = 'n', default_value_t = 10_000, value_parser = value_parser!(u64).range(1..=100_000))]
    n: u64,
    /// objects per batch (created one after the other)
    #[arg(long, default_value_t = 500, value_parser = value_parser!(u64).range(1..))]
    chunk: u64,
    /// batches created concurrently
    #[arg(long, default_value_t = 2, value_parser = value_parser!(u64).range(1..))]
    parallel: u64,
    /// the operator's --forecast-refresh (for the report)
    #[arg(long, default_value = "1m", value_parser = positive_duration)]
    refresh: String,
    /// the operator's --status-interval (for the report)
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    status_interval: String,
    /// after the replans, count the writes over this long with nothing to do (0s: not
    /// measured; default: two status intervals and a minute)
    #[arg(long, value_parser = carbonshift::duration::parse_secs)]
    quiet_window: Option<i64>,
    /// give up waiting for phases after this many seconds, and report what there is
    #[arg(long, default_value_t = 1800, value_parser = value_parser!(u64).range(1..))]
    converge_timeout: u64,
    /// forecast refreshes to follow (0: none)
    #[arg(long, default_value_t = 2)]
    replans: u64,
    /// follow no forecast refresh
    #[arg(long)]
    no_replan: bool,
    /// the namespace to create the CarbonAwareJobs in (it must exist and be empty)
    #[arg(long, default_value = "carbonshift-scale")]
    namespace: String,
    /// the operator's process id
    #[arg(long, required_unless_present = "check_args")]
    pid: Option<u32>,
    /// the operator's metrics address, e.g. http://127.0.0.1:43080
    #[arg(long, required_unless_present = "check_args")]
    metrics: Option<String>,
    /// the operator's log file (its forecast fetches are counted there)
    #[arg(long, required_unless_present = "check_args")]
    operator_log: Option<PathBuf>,
    /// where the API snapshots and the sampled job are kept
    #[arg(long, required_unless_present = "check_args")]
    run_dir: Option<PathBuf>,
    /// the operator binary and revision, for the report
    #[arg(long, default_value = "(not given)")]
    binary: String,
    /// only validate the arguments
    #[arg(long)]
    check_args: bool,
}

fn positive_duration(v: &str) -> Result<String, String> {
    match carbonshift::duration::parse_secs(v) {
        Ok(s) if s > 0 => Ok(v.to_string()),
        Ok(_) => Err(format!("{v:?} must be longer than 0s")),
        Err(e) => Err(e.to_string()),
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[scale {}] {}",
        chrono::Utc::now().format("%H:%M:%S"),
        msg.as_ref()
    );
}

fn main() -> ExitCode {
    if std::env::var(ENABLE_ENV).as_deref() != Ok("1") {
        println!("skipping: {ENABLE_ENV} not set (hack/scale-test.sh runs this measurement)");
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    if args.check_args {
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[scale] cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(measure(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[scale] measurement failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------------------
// The operator process

struct Operator {
    pid: u32,
    metrics: String,
    log: PathBuf,
    ticks_per_sec: f64,
    http: reqwest::Client,
}

impl Operator {
    fn new(pid: u32, metrics: &str, log: &Path) -> Result<Self> {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .context("getconf CLK_TCK")?;
        let ticks_per_sec: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("getconf CLK_TCK printed no number")?;
        let op = Self {
            pid,
            metrics: metrics.trim_end_matches('/').to_string(),
            log: log.to_path_buf(),
            ticks_per_sec,
            http: reqwest::Client::new(),
        };
        ensure!(op.alive(), "no running process {pid}");
        Ok(op)
    }

    fn proc(&self, file: &str) -> Result<String> {
        let path = format!("/proc/{}/{file}", self.pid);
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    /// Running (a zombie that its parent has not reaped yet has exited).
    fn alive(&self) -> bool {
        self.proc("stat")
            .ok()
            .and_then(|s| report::proc_stat(&s))
            .is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
    }

    /// (VmHWM, VmRSS) in KiB.
    fn mem(&self) -> Result<(u64, u64)> {
        report::proc_mem(&self.proc("status")?).context("no VmHWM/VmRSS in /proc/PID/status")
    }

    /// User + system CPU seconds.
    fn cpu(&self) -> Result<f64> {
        let (_, ticks) =
            report::proc_stat(&self.proc("stat")?).context("unreadable /proc/PID/stat")?;
        Ok(ticks as f64 / self.ticks_per_sec)
    }

    async fn get(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.metrics);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.with_context(|| format!("reading {url}"))
    }

    async fn scrape(&self) -> Result<String> {
        self.get("/metrics").await
    }

    /// Reconciles so far (the reconcile histogram's count, exported from the start).
    async fn reconciles(&self) -> Result<u64> {
        let text = self.scrape().await?;
        let name = "carbonshift_reconcile_duration_seconds_count";
        ensure!(
            report::samples(&text, name).next().is_some(),
            "no {name} in the operator's /metrics"
        );
        Ok(report::sum(&text, name) as u64)
    }

    async fn forecast_requests(&self) -> Result<u64> {
        Ok(report::sum(&self.scrape().await?, "carbonshift_forecast_requests_total") as u64)
    }

    async fn transitions(&self) -> Result<u64> {
        Ok(report::sum(&self.scrape().await?, "carbonshift_transitions_total") as u64)
    }

    /// Forecast fetches the operator logged (one at start, one per refresh).
    fn refreshes(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().filter(|l| l.contains(REFRESHED)).count() as u64)
            .unwrap_or(0)
    }

    /// Waits until the reconcile count stops moving (3 polls, 5 s apart, unchanged), at most
    /// 10 minutes. After a large creation this takes a while: the Job controller of
    /// kube-controller-manager (20 QPS by default) sets each suspended Job's status long
    /// after the operator created it, and every such update is a reconcile.
    async fn settle(&self) -> Result<()> {
        let (mut last, mut same) = (None, 0);
        for _ in 0..120 {
            let cur = self.reconciles().await?;
            same = if last == Some(cur) { same + 1 } else { 0 };
            if same >= 3 {
                return Ok(());
            }
            last = Some(cur);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        log("warning: the operator never went quiet (reconciles still rising)");
        Ok(())
    }

    /// Waits up to 10 minutes for a forecast fetch after `(refreshes, forecast requests)`.
    async fn next_refresh(&self, since: (u64, u64)) -> Result<bool> {
        for _ in 0..120 {
            if self.refreshes() > since.0 || self.forecast_requests().await? > since.1 {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok(false)
    }

    /// After a refresh, every job is reconciled: waits for about `n` reconciles since
    /// `rec0` (at most 12 minutes), then for quiet.
    async fn replanned(&self, rec0: u64, n: u64) -> Result<()> {
        for _ in 0..360 {
            if self.reconciles().await?.saturating_sub(rec0) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        self.settle().await
    }
}

// ------------------------------------------------------------------------------------------
// The cluster

struct Cluster {
    client: Client,
    ns: String,
    cajs: Api<CarbonAwareJob>,
    run_dir: PathBuf,
}

/// `%XX` for everything but unreserved characters (continue tokens are base64).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn caj_name(i: u64) -> String {
    format!("scale-{i:05}")
}

/// The i-th CarbonAwareJob: alternately FlexibleStart and PauseAndResume, 1-3 h of work
/// within 48 h, one CPU-only pod (no pods while it waits).
fn manifest(i: u64, ns: &str) -> Result<CarbonAwareJob> {
    let strategy = if i.is_multiple_of(2) {
        "FlexibleStart"
    } else {
        "PauseAndResume"
    };
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "carbonshift.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {
            "name": caj_name(i),
            "namespace": ns,
            "labels": {"carbonshift.io/scale-test": "true"}
        },
        "spec": {
            "schedule": {
                "strategy": strategy,
                "maxDelay": "48h",
                "expectedDuration": format!("{}h", 1 + i % 3)
            },
            "power": {"watts": 300},
            "template": {"spec": {
                "backoffLimit": 1,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "work",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c", "sleep 3600"],
                        "resources": {"requests": {"cpu": "100m"}}
                    }]
                }}
            }}
        }
    }))?)
}

impl Cluster {
    async fn new(ns: &str, run_dir: &Path) -> Result<Self> {
        let client = Client::try_default()
            .await
            .context("a client from KUBECONFIG")?;
        Api::<Namespace>::all(client.clone())
            .get(ns)
            .await
            .with_context(|| format!("namespace {ns} (hack/scale-test.sh creates it)"))?;
        let cajs: Api<CarbonAwareJob> = Api::namespaced(client.clone(), ns);
        let existing = cajs.list_metadata(&ListParams::default().limit(1)).await?;
        ensure!(
            existing.items.is_empty(),
            "namespace {ns} already has CarbonAwareJobs"
        );
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        Ok(Self {
            client,
            ns: ns.to_string(),
            cajs,
            run_dir: run_dir.to_path_buf(),
        })
    }

    async fn get_text(&self, path: &str, accept: &str) -> Result<String> {
        let req = http::Request::get(path)
            .header(http::header::ACCEPT, accept)
            .body(Vec::new())?;
        self.client
            .request_text(req)
            .await
            .with_context(|| format!("GET {path}"))
    }

    /// The API server's `apiserver_request_total`, kept in the run directory as `file`.
    async fn api_snapshot(&self, file: &str) -> Result<ApiCounts> {
        let text = self.get_text("/metrics", "text/plain").await?;
        let lines: String = text
            .lines()
            .filter(|l| l.starts_with(&format!("{}{{", report::API_REQUESTS)))
            .flat_map(|l| [l, "\n"])
            .collect();
        ensure!(
            !lines.is_empty(),
            "no {} in the API server's /metrics",
            report::API_REQUESTS
        );
        std::fs::write(self.run_dir.join(file), &lines)?;
        Ok(ApiCounts::parse(&lines))
    }

    /// CarbonAwareJobs by phase ("-" for none), from the server's table (light on the API
    /// server: only the printer columns come back), 500 a page.
    async fn phases(&self) -> Result<BTreeMap<String, u64>> {
        let base = CarbonAwareJob::url_path(&(), Some(&self.ns));
        let mut counts = BTreeMap::new();
        let mut cont: Option<String> = None;
        loop {
            let mut path = format!("{base}?limit=500&includeObject=None");
            if let Some(c) = &cont {
                path.push_str(&format!("&continue={}", query_escape(c)));
            }
            let text = self
                .get_text(&path, "application/json;as=Table;v=v1;g=meta.k8s.io")
                .await?;
            let table: serde_json::Value =
                serde_json::from_str(&text).context("the table of CarbonAwareJobs")?;
            cont = report::count_phases(&table, &mut counts).map_err(anyhow::Error::msg)?;
            if cont.is_none() {
                return Ok(counts);
            }
        }
    }

    /// One CarbonAwareJob as the server has it, kept in the run directory as `file`.
    async fn caj_json(&self, name: &str, file: &str) -> Result<serde_json::Value> {
        let path = format!("{}/{name}", CarbonAwareJob::url_path(&(), Some(&self.ns)));
        let text = self.get_text(&path, "application/json").await?;
        std::fs::write(self.run_dir.join(file), &text)?;
        Ok(serde_json::from_str(&text)?)
    }

    /// (child Jobs, of them not suspended, pods) in the namespace.
    async fn children(&self) -> Result<(u64, u64, u64)> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.ns);
        let (mut count, mut running) = (0, 0);
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = jobs.list(&lp).await?;
            count += page.items.len() as u64;
            running += page
                .items
                .iter()
                .filter(|j| j.spec.as_ref().and_then(|s| s.suspend) != Some(true))
                .count() as u64;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pods = pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len() as u64;
        Ok((count, running, pods))
    }

    /// Creates the N CarbonAwareJobs: batches of `chunk`, each one object after the other,
    /// `parallel` batches at a time.
    async fn create(&self, n: u64, chunk: u64, parallel: u64) -> Result<()> {
        let batches: Vec<(u64, u64)> = (0..n)
            .step_by(chunk as usize)
            .map(|s| (s, (s + chunk).min(n)))
            .collect();
        let failures: Vec<anyhow::Error> = futures::stream::iter(batches)
            .map(|(from, to)| async move {
                for i in from..to {
                    self.cajs
                        .create(&PostParams::default(), &manifest(i, &self.ns)?)
                        .await
                        .with_context(|| format!("creating {}", caj_name(i)))?;
                }
                Ok::<_, anyhow::Error>(())
            })
            .buffer_unordered(parallel as usize)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        if let Some(first) = failures.first() {
            bail!("{} batch(es) failed; the first: {first:#}", failures.len());
        }
        Ok(())
    }

    /// Counts MODIFIED watch events of the namespace's CarbonAwareJobs from now on (an
    /// apply that changes nothing is a request but no event: these are the writes that
    /// changed an object). Metadata only, restarted where it ended; if the server has
    /// compacted past that point the count becomes a lower bound (`lossy` is set).
    async fn count_modified(&self) -> Result<WatchCount> {
        let list = self
            .cajs
            .list_metadata(&ListParams::default().limit(1))
            .await?;
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        let count = WatchCount::default();
        let (modified, lossy) = (count.modified.clone(), count.lossy.clone());
        let api = self.cajs.clone();
        tokio::spawn(async move {
            loop {
                let wp = WatchParams::default().timeout(290);
                let stream = match api.watch_metadata(&wp, &rv).await {
                    Ok(s) => s,
                    Err(e) => {
                        log(format!("watch of CarbonAwareJobs: {e}; retrying"));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    let seen = match ev {
                        Ok(WatchEvent::Modified(o)) => {
                            modified.fetch_add(1, Ordering::Relaxed);
                            o.metadata.resource_version
                        }
                        Ok(WatchEvent::Added(o) | WatchEvent::Deleted(o)) => {
                            o.metadata.resource_version
                        }
                        Ok(WatchEvent::Bookmark(b)) => Some(b.metadata.resource_version),
                        Ok(WatchEvent::Error(status)) => {
                            if status.code == 410 {
                                log("watch of CarbonAwareJobs expired (410): MODIFIED becomes a lower bound");
                                lossy.fetch_add(1, Ordering::Relaxed);
                                rv = String::new();
                            }
                            break;
                        }
                        Err(_) => break,
                    };
                    if let Some(v) = seen {
                        rv = v;
                    }
                }
                if rv.is_empty() {
                    match api.list_metadata(&ListParams::default().limit(1)).await {
                        Ok(l) => rv = l.metadata.resource_version.unwrap_or_default(),
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                }
            }
        });
        Ok(count)
    }
}

#[derive(Default, Clone)]
struct WatchCount {
    modified: Arc<AtomicU64>,
    lossy: Arc<AtomicU64>,
}

impl WatchCount {
    fn get(&self) -> u64 {
        self.modified.load(Ordering::Relaxed)
    }

    /// The count, marked when the watch lost events.
    fn show(&self, n: u64) -> String {
        if self.lossy.load(Ordering::Relaxed) > 0 {
            format!("{n} or more (the watch expired)")
        } else {
            n.to_string()
        }
    }
}

fn secs(from: Instant, to: Instant) -> String {
    format!("{:.1} s", (to - from).as_secs_f64())
}

// ------------------------------------------------------------------------------------------
// The measurement

/// What the replan after a forecast refresh did.
struct Replan {
    refreshes: u64,
    took: String,
    reconciles: u64,
    cpu: f64,
    transitions: u64,
    modified: u64,
    api: String,
    rss_after: u64,
    /// One row per further replan.
    more: Vec<String>,
    sample_changes: String,
}

async fn measure(args: &Args) -> Result<()> {
    let (Some(pid), Some(metrics), Some(op_log), Some(run_dir)) = (
        args.pid,
        args.metrics.as_deref(),
        args.operator_log.as_deref(),
        args.run_dir.as_deref(),
    ) else {
        bail!("--pid, --metrics, --operator-log and --run-dir are required");
    };
    let n = args.n;
    let op = Operator::new(pid, metrics, op_log)?;
    op.get("/readyz")
        .await
        .context("the operator is not ready")?;
    let cluster = Cluster::new(&args.namespace, run_dir).await?;
    let modified = cluster.count_modified().await?;

    // --- create -------------------------------------------------------------------------
    let api0 = cluster.api_snapshot("api-0-before.txt").await?;
    let rec0 = op.reconciles().await?;
    let fc0 = op.forecast_requests().await?;
    let cpu0 = op.cpu()?;
    let (_, rss0) = op.mem()?;
    log(format!(
        "operator idle: RSS {} MiB, {fc0} forecast requests so far",
        rss0 / 1024
    ));
    log(format!(
        "creating {n} CarbonAwareJobs ({} per batch, {} at a time)",
        args.chunk, args.parallel
    ));
    let t0 = Instant::now();
    cluster.create(n, args.chunk, args.parallel).await?;
    let t_created = Instant::now();
    log(format!("created in {}", secs(t0, t_created)));

    // --- converge -----------------------------------------------------------------------
    let poll = Duration::from_secs(if n >= 5000 { 15 } else { 5 });
    let converged = loop {
        let pc = cluster.phases().await?;
        let have = report::with_phase(&pc);
        let (_, rss) = op.mem()?;
        log(format!(
            "with a phase: {have}/{n}  ({}) RSS {} MiB, CPU {:.2} s, reconciles {}",
            report::phases_text(&pc),
            rss / 1024,
            op.cpu()?,
            op.reconciles().await?.saturating_sub(rec0)
        ));
        if have >= n {
            log("every job has a phase; waiting for the operator to go quiet");
            break have;
        }
        ensure!(op.alive(), "the operator exited (see {})", op_log.display());
        if t0.elapsed() > Duration::from_secs(args.converge_timeout) {
            log(format!(
                "not converged after {}s: waiting for quiet, then reporting what there is",
                args.converge_timeout
            ));
            break have;
        }
        tokio::time::sleep(poll).await;
    };
    let t_converged = Instant::now();
    let cpu_converged = op.cpu()?;
    let rec_converged = op.reconciles().await?.saturating_sub(rec0);
    let fc_converged = op.forecast_requests().await?.saturating_sub(fc0);
    op.settle().await?;
    let t_settled = Instant::now();
    let api1 = cluster.api_snapshot("api-1-settled.txt").await?;
    let cpu_settled = op.cpu()?;
    let (hwm1, rss1) = op.mem()?;
    let rec_settled = op.reconciles().await?.saturating_sub(rec0);
    let mod_settled = modified.get();
    let fc_settled = op.forecast_requests().await?;
    let refreshes_settled = op.refreshes();
    let phases = cluster.phases().await?;
    let (jobs, unsuspended, pods) = cluster.children().await?;
    let settled_scrape = op.scrape().await?;
    std::fs::write(
        run_dir.join("operator-metrics-settled.txt"),
        &settled_scrape,
    )?;
    let transitions = report::sum(&settled_scrape, "carbonshift_transitions_total") as u64;

    // --- replan -------------------------------------------------------------------------
    let replan = if !args.no_replan && args.replans > 0 {
        replan(args, &op, &cluster, &modified, transitions).await?
    } else {
        None
    };
    let (hwm2, rss2) = op.mem()?;
    let quiet = quiet_window(args, &op, &cluster).await?;

    // --- report -------------------------------------------------------------------------
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| report::mem_total_kib(&m))
        .map_or("?".to_string(), |k| {
            format!("{:.0} GiB", k as f64 / 1_048_576.0)
        });
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut out = vec![
        String::new(),
        format!(
            "=== carbonshift control plane at scale: N={n} CarbonAwareJobs, {} ===",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        format!(
            "machine: {cores} cores, {mem_gib}, load {load}; binary {}",
            args.binary
        ),
        format!(
            "operator: --region DE (forecast file: 450 gCO2/kWh for 24 h, then 60) --forecast-refresh {} --status-interval {}",
            args.refresh, args.status_interval
        ),
        String::new(),
        row(
            "jobs with a phase / created",
            format!("{converged} / {n}  ({})", report::phases_text(&phases)),
        ),
        row(
            &format!(
                "create (kube-rs, {} per batch, {} parallel)",
                args.chunk, args.parallel
            ),
            secs(t0, t_created),
        ),
        row(
            "converge (first create -> every phase set)",
            secs(t0, t_converged),
        ),
        row(
            "operator quiet (-> reconciles stop)",
            secs(t0, t_settled),
        ),
        row("operator RSS idle (before any job)", report::mib(rss0)),
        row("operator RSS steady (after converging)", report::mib(rss1)),
        row("operator RSS end (after the replan)", report::mib(rss2)),
        row(
            "operator peak RSS (VmHWM) converged / end",
            format!(
                "{} / {}  (target < 100 MiB at 10,000)",
                report::mib(hwm1),
                report::mib(hwm2)
            ),
        ),
        row(
            "RSS per job (steady - idle)",
            report::kib_per_job(rss0, rss1, n),
        ),
        row(
            "operator CPU to converge",
            format!(
                "{:.2} s  (until quiet: {:.2} s)",
                cpu_converged - cpu0,
                cpu_settled - cpu0
            ),
        ),
        row(
            "reconciles to converge / until quiet",
            format!("{rec_converged} / {rec_settled}"),
        ),
        row(
            "forecast upstream requests (all regions)",
            format!("{fc_settled} total; {fc_converged} while converging; {refreshes_settled} fetches logged (1 + refreshes)"),
        ),
        row(
            "child Jobs / not suspended / pods",
            format!("{jobs} / {unsuspended} / {pods}"),
        ),
        row("transitions counted by the operator", transitions),
        row(
            "CarbonAwareJob MODIFIED watch events",
            format!(
                "{}  (status applies that changed the object)",
                modified.show(mod_settled)
            ),
        ),
        String::new(),
        "API requests from creation until the operator was quiet (kube-apiserver apiserver_request_total):".to_string(),
        report::api_table(&api0, &api1, n).trim_end().to_string(),
    ];
    if !args.no_replan && args.replans > 0 {
        out.push(String::new());
        match &replan {
            Some(r) => {
                out.push(format!(
                    "Replan after a forecast refresh ({} refresh(es) in the window, {} from the refresh to quiet):",
                    r.refreshes, r.took
                ));
                out.push(row("reconciles", r.reconciles));
                out.push(row("operator CPU", format!("{:.2} s", r.cpu)));
                out.push(row("transitions (start/pause/resume)", r.transitions));
                out.push(row(
                    "CarbonAwareJob MODIFIED watch events",
                    modified.show(r.modified),
                ));
                out.push(r.api.trim_end().to_string());
                out.push(row(
                    "replan 1",
                    format!("RSS after {}", report::mib(r.rss_after)),
                ));
                out.extend(r.more.iter().cloned());
                out.push(format!(
                    "  status fields of {} that changed in the replan:",
                    caj_name(SAMPLE.min(n - 1))
                ));
                out.push(format!("    {}", r.sample_changes));
            }
            None => out.push("Replan: not measured (no forecast refresh seen).".to_string()),
        }
    }
    if let Some(q) = quiet {
        out.push(String::new());
        out.extend(q);
    }
    out.push(String::new());
    println!("{}", out.join("\n"));
    Ok(())
}

/// The writes while nothing happens: over `--quiet-window` (default two status intervals
/// and a minute, so every periodic persist would fall in it at least twice), with the
/// forecast refreshes and replans that come in it. Rows for the report, `None` when the
/// window is 0.
async fn quiet_window(
    args: &Args,
    op: &Operator,
    cluster: &Cluster,
) -> Result<Option<Vec<String>>> {
    let interval = carbonshift::duration::parse_secs(&args.status_interval)
        .map_err(|e| anyhow::anyhow!("--status-interval: {e}"))?;
    let window = args.quiet_window.unwrap_or(2 * interval + 60);
    if window <= 0 {
        return Ok(None);
    }
    let a = cluster.api_snapshot("api-q-0.txt").await?;
    let (rec0, cpu0, ref0) = (op.reconciles().await?, op.cpu()?, op.refreshes());
    log(format!("quiet window: counting writes for {window} s"));
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(window as u64);
    while Instant::now() < end {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_secs(60))).await;
        ensure!(op.alive(), "the operator exited during the quiet window");
        log(format!(
            "quiet window: {:.0} s of {window} s",
            t0.elapsed().as_secs_f64()
        ));
    }
    let b = cluster.api_snapshot("api-q-1.txt").await?;
    let secs = t0.elapsed().as_secs_f64();
    let status = a.writes_since(&b, "carbonshift.io", "carbonawarejobs", "status");
    let (hwm, rss) = op.mem()?;
    Ok(Some(vec![
        format!(
            "Quiet window: {secs:.0} s after the replans, --status-interval {} ({} forecast refresh(es) in it):",
            args.status_interval,
            op.refreshes().saturating_sub(ref0)
        ),
        row("operator writes", report::operator_writes(&a, &b)),
        row(
            "status writes per hour (extrapolated)",
            format!("{:.0}  (target 0 for waiting jobs)", report::per_hour(status, secs)),
        ),
        row(
            "reconciles / operator CPU",
            format!("{} / {:.2} s", op.reconciles().await?.saturating_sub(rec0), op.cpu()? - cpu0),
        ),
        row(
            "operator RSS / VmHWM after the window",
            format!("{} / {}", report::mib(rss), report::mib(hwm)),
        ),
    ]))
}

/// Follows `--replans` forecast refreshes: the first in detail, then RSS and writes of each
/// (to see whether memory keeps growing). `None` when no refresh came within 10 minutes.
async fn replan(
    args: &Args,
    op: &Operator,
    cluster: &Cluster,
    modified: &WatchCount,
    transitions0: u64,
) -> Result<Option<Replan>> {
    let n = args.n;
    let sample = caj_name(SAMPLE.min(n - 1));
    let before = cluster.caj_json(&sample, "sample-before.json").await?;
    let api2 = cluster.api_snapshot("api-2-before-replan.txt").await?;
    let rec0 = op.reconciles().await?;
    let ref0 = op.refreshes();
    let cpu0 = op.cpu()?;
    let mod0 = modified.get();
    log(format!(
        "waiting for the next forecast refresh (--forecast-refresh {}, checked every 5 s)",
        args.refresh
    ));
    if !op
        .next_refresh((ref0, op.forecast_requests().await?))
        .await?
    {
        log("no forecast refresh within 10 minutes: replan not measured");
        return Ok(None);
    }
    let t0 = Instant::now();
    op.replanned(rec0, n).await?;
    let t1 = Instant::now();
    let api3 = cluster.api_snapshot("api-3-after-replan.txt").await?;
    let after = cluster.caj_json(&sample, "sample-after.json").await?;
    let mut r = Replan {
        refreshes: op.refreshes().saturating_sub(ref0),
        took: secs(t0, t1),
        reconciles: op.reconciles().await?.saturating_sub(rec0),
        cpu: op.cpu()? - cpu0,
        transitions: op.transitions().await?.saturating_sub(transitions0),
        modified: modified.get().saturating_sub(mod0),
        api: report::api_table(&api2, &api3, n),
        rss_after: op.mem()?.1,
        more: Vec::new(),
        sample_changes: report::status_changes(&before, &after),
    };
    for k in 2..=args.replans {
        let a = cluster.api_snapshot(&format!("api-r{k}-0.txt")).await?;
        let since = (op.refreshes(), op.forecast_requests().await?);
        let (rec0, cpu0, mod0) = (op.reconciles().await?, op.cpu()?, modified.get());
        log(format!("replan {k}: waiting for the next refresh"));
        if !op.next_refresh(since).await? {
            break;
        }
        op.replanned(rec0, n).await?;
        let b = cluster.api_snapshot(&format!("api-r{k}-1.txt")).await?;
        r.more.push(row(
            &format!("replan {k}"),
            format!(
                "reconciles {}, CPU {:.2} s, operator writes {}, MODIFIED {}, RSS after {}",
                op.reconciles().await?.saturating_sub(rec0),
                op.cpu()? - cpu0,
                report::operator_writes(&a, &b),
                modified.show(modified.get().saturating_sub(mod0)),
                report::mib(op.mem()?.1)
            ),
        ));
    }
    Ok(Some(r))
}

//! The operator under test and what the end-to-end tests share: one `carbonshift run`
//! process per scenario, the scenario's namespace and forecast, CarbonAwareJob manifests for
//! kwok's GPU nodes, a poller that keeps a job's history, and the ledger assertion.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use carbonshift::api::{time, CarbonAwareJob, CarbonAwareJobStatus, Phase};
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::cluster::{
    self, job_pods_selector, must, pod_phase, wait_until, TestNamespace, COMPLETE,
};
use super::forecast::Forecast;

/// Facility power of every test job (1 GPU x 400 W x PUE 1.2), kW.
pub const POWER_KW: f64 = 0.48;
/// Region the operator plans with (`--region`) and the CSV's region column.
pub const REGION: &str = "DE";
/// `--deadline-margin` of every operator these tests start: long enough to see the deadline
/// guard fire that much early, short next to the scenarios' minutes of slack.
pub const DEADLINE_MARGIN: &str = "20s";
pub const DEADLINE_MARGIN_SECS: i64 = 20;

// ------------------------------------------------------------------------------------------
// The operator process

/// One `carbonshift run` process for one test namespace; SIGKILLed on drop, its log printed
/// if the test fails.
pub struct Operator {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub port: u16,
}

impl Operator {
    /// Starts the operator on `ns` with the forecast flags `provider` (e.g. the `file`
    /// provider and its CSV); `extra` are more flags, `envs` more environment variables.
    pub fn spawn(
        ns: &str,
        provider: &[&std::ffi::OsStr],
        dir: &Path,
        label: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let port = cluster::free_port();
        let log = dir.join(format!("{label}.log"));
        let out = must("create operator log", File::create(&log));
        let err = must("clone operator log", out.try_clone());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carbonshift"));
        // The operator reads CARBONSHIFT_* variables as flags; the test runner's own (the
        // cluster's CARBONSHIFT_KUEUE=1, the e2e gates) must not turn any on.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CARBONSHIFT_") {
                cmd.env_remove(&name);
            }
        }
        cmd.arg("run")
            .args(provider)
            .args([
                "--region",
                REGION,
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--deadline-margin", DEADLINE_MARGIN])
            .args(extra)
            .env("RUST_LOG", "info,carbonshift=debug")
            // Plain text in the log file (the operator colours its text logs by default).
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = must("spawn carbonshift run", cmd.spawn());
        println!(
            "[{ns}] {label}: pid {} metrics 127.0.0.1:{port} log {}",
            child.id(),
            log.display()
        );
        Self {
            child: Some(child),
            log,
            port,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let http = reqwest::Client::new();
        wait_until(
            format!("operator ready at {url}"),
            Duration::from_secs(60),
            || async {
                let ok = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok::<_, String>(ok.then_some(()))
            },
        )
        .await;
    }

    /// `GET /metrics`.
    pub async fn scrape(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let resp = must("GET /metrics", reqwest::get(&url).await);
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        must("read /metrics", resp.text().await)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let ok = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{signal} {pid} failed");
        }
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL: no graceful shutdown, no Lease release.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== operator log {} =====\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Cluster set-up and manifests

/// Everything one test needs: namespace, clients, a tempdir for the CSV and logs.
pub struct Env {
    pub client: Client,
    pub ns: TestNamespace,
    pub cajs: Api<CarbonAwareJob>,
    pub pods: Api<Pod>,
    pub jobs: Api<Job>,
    pub dir: tempfile::TempDir,
    pub forecast: PathBuf,
}

impl Env {
    pub async fn new(prefix: &str) -> Self {
        cluster::install_crd();
        let client = cluster::client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let dir = must("tempdir", tempfile::tempdir());
        let forecast = dir.path().join("forecast.csv");
        Self {
            cajs: Api::namespaced(client.clone(), &ns.name),
            pods: Api::namespaced(client.clone(), &ns.name),
            jobs: Api::namespaced(client.clone(), &ns.name),
            client,
            ns,
            dir,
            forecast,
        }
    }

    pub fn operator(&self, label: &str, extra: &[&str]) -> Operator {
        self.operator_with_env(label, extra, &[])
    }

    /// [`Env::operator`] with more environment variables (e.g. another `KUBECONFIG`).
    pub fn operator_with_env(
        &self,
        label: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        let provider = [
            "--forecast-provider".as_ref(),
            "file".as_ref(),
            "--forecast-file".as_ref(),
            self.forecast.as_os_str(),
        ];
        self.operator_with_provider(label, &provider, extra, envs)
    }

    /// An operator with other forecast flags than the namespace's CSV.
    pub fn operator_with_provider(
        &self,
        label: &str,
        provider: &[&std::ffi::OsStr],
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Operator {
        Operator::spawn(&self.ns.name, provider, self.dir.path(), label, extra, envs)
    }

    /// Events whose involved object is the CarbonAwareJob `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let mut evs: Vec<Event> = must("list events", api.list(&lp).await)
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("CarbonAwareJob"))
            .collect();
        evs.sort_by_key(|e| e.metadata.creation_timestamp.as_ref().map(time::from_time));
        evs
    }
}

pub fn event_reasons(evs: &[Event]) -> Vec<String> {
    evs.iter().filter_map(|e| e.reason.clone()).collect()
}

pub fn describe_events(evs: &[Event]) -> String {
    evs.iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A CarbonAwareJob whose single pod asks for one GPU, with `pod_annotations` for kwok.
pub fn manifest(
    name: &str,
    schedule: serde_json::Value,
    pod_annotations: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "carbonshift.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "template": {"spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"annotations": pod_annotations},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "train",
                            "image": "registry.example/train:1",
                            "resources": {
                                "requests": {"nvidia.com/gpu": "1"},
                                "limits": {"nvidia.com/gpu": "1"}
                            }
                        }]
                    }
                }
            }}
        }
    })
}

pub fn typed(value: serde_json::Value) -> CarbonAwareJob {
    must("manifest as CarbonAwareJob", serde_json::from_value(value))
}

pub async fn create(env: &Env, value: serde_json::Value) -> CarbonAwareJob {
    must(
        "create CarbonAwareJob",
        env.cajs.create(&PostParams::default(), &typed(value)).await,
    )
}

pub fn created_at(caj: &CarbonAwareJob) -> DateTime<Utc> {
    caj.metadata
        .creation_timestamp
        .as_ref()
        .map(time::from_time)
        .unwrap_or_else(Utc::now)
}

pub fn t_opt(
    t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<DateTime<Utc>> {
    t.as_ref().map(time::from_time)
}

pub fn condition<'a>(
    st: &'a CarbonAwareJobStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}

pub fn rel_close(actual: f64, expected: f64, rel: f64) -> bool {
    (actual - expected).abs() <= rel * expected.abs().max(1e-9)
}

// ------------------------------------------------------------------------------------------
// Tracking a job over time

/// A pod of the child Job as seen over time (times from the API server, whole seconds).
#[derive(Debug, Clone)]
pub struct PodSeen {
    pub name: String,
    pub created: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    /// Deletion requested (the containers stop then) or the pod finished.
    pub ended: Option<DateTime<Utc>>,
    pub phase: String,
}

/// One poll: the status and the pods alive then.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub status: CarbonAwareJobStatus,
    /// UIDs of pods not being deleted and not finished.
    pub live: BTreeSet<String>,
    /// Pods listed at all (including terminating ones).
    pub listed: usize,
}

/// Polls one CarbonAwareJob and its pods, keeping the history.
pub struct Tracker {
    pub cajs: Api<CarbonAwareJob>,
    pub pods: Api<Pod>,
    pub name: String,
    pub samples: Vec<Sample>,
    pub pods_seen: BTreeMap<String, PodSeen>,
    pub last: Option<CarbonAwareJob>,
}

impl Tracker {
    pub fn new(env: &Env, name: &str) -> Self {
        Self {
            cajs: env.cajs.clone(),
            pods: env.pods.clone(),
            name: name.to_string(),
            samples: Vec::new(),
            pods_seen: BTreeMap::new(),
            last: None,
        }
    }

    pub async fn poll(&mut self) {
        let at = Utc::now();
        // Errors are retried at the next poll: the API server may be briefly busy.
        let Ok(Some(caj)) = self.cajs.get_opt(&self.name).await else {
            return;
        };
        let Ok(pods) = self
            .pods
            .list(&ListParams::default().labels(&job_pods_selector(&self.name)))
            .await
        else {
            return;
        };
        let mut live = BTreeSet::new();
        for pod in &pods.items {
            let uid = pod.uid().unwrap_or_default();
            let phase = pod_phase(pod).to_string();
            let finished = phase == "Succeeded" || phase == "Failed";
            // `deletionTimestamp` is when the grace period ends; the deletion (and the
            // containers' SIGTERM) was requested that grace period earlier.
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            let deleted =
                t_opt(&pod.metadata.deletion_timestamp).map(|t| t - TimeDelta::seconds(grace));
            if deleted.is_none() && !finished {
                live.insert(uid.clone());
            }
            let started = pod.status.as_ref().and_then(|s| t_opt(&s.start_time));
            let finished_at = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| {
                    cs.iter().find_map(|c| {
                        c.state
                            .as_ref()?
                            .terminated
                            .as_ref()?
                            .finished_at
                            .as_ref()
                            .map(time::from_time)
                    })
                });
            let entry = self.pods_seen.entry(uid).or_insert_with(|| PodSeen {
                name: pod.name_any(),
                created: t_opt(&pod.metadata.creation_timestamp).unwrap_or(at),
                started: None,
                ended: None,
                phase: String::new(),
            });
            entry.started = entry.started.or(started);
            entry.phase = phase;
            if entry.ended.is_none() {
                entry.ended = deleted.or(if finished {
                    finished_at.or(Some(at))
                } else {
                    None
                });
            }
        }
        // A pod gone between two polls ended at the latest then.
        let listed: BTreeSet<String> = pods.items.iter().filter_map(|p| p.uid()).collect();
        for (uid, seen) in self.pods_seen.iter_mut() {
            if !listed.contains(uid) && seen.ended.is_none() {
                seen.ended = Some(at);
            }
        }
        self.samples.push(Sample {
            at,
            status: caj.status_or_default(),
            live,
            listed: pods.items.len(),
        });
        self.last = Some(caj);
    }

    pub fn status(&self) -> CarbonAwareJobStatus {
        self.last
            .as_ref()
            .map(CarbonAwareJob::status_or_default)
            .unwrap_or_default()
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status().phase
    }

    /// The phases seen, consecutive repeats collapsed.
    pub fn phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for s in &self.samples {
            if let Some(p) = s.status.phase {
                if out.last() != Some(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Seconds the job's pods have run: the work a checkpointing workload has done.
    pub fn pod_work_secs(&self, now: DateTime<Utc>) -> i64 {
        self.pods_seen
            .values()
            .filter_map(|p| Some((p.ended.unwrap_or(now) - p.started?).num_seconds().max(0)))
            .sum()
    }

    /// Status numbers must never go backwards: runtime, energy, emissions, pauses and the
    /// baseline. The baseline is the run-now counterfactual for the work done so far
    /// (started at creation, never paused), so it grows with the runtime only, and
    /// completion closes it at the work actually done instead of re-estimating it from
    /// expectedDuration: it does not shrink at completion either.
    pub fn assert_monotonic(&self) {
        for w in self.samples.windows(2) {
            let (a, b) = (&w[0].status, &w[1].status);
            let ctx = || {
                format!(
                    "between {} and {}:\n  before {a:?}\n  after  {b:?}",
                    w[0].at, w[1].at
                )
            };
            assert!(
                b.runtime_seconds >= a.runtime_seconds,
                "runtimeSeconds went backwards {}",
                ctx()
            );
            assert!(
                b.energy_kwh >= a.energy_kwh - 1e-12,
                "energyKWh went backwards {}",
                ctx()
            );
            assert!(
                b.emissions_grams >= a.emissions_grams - 1e-9,
                "emissionsGrams went backwards {}",
                ctx()
            );
            assert!(b.pauses >= a.pauses, "pauses went backwards {}", ctx());
            assert!(
                b.baseline_grams >= a.baseline_grams - 1e-9,
                "baselineGrams went backwards {}",
                ctx()
            );
        }
    }

    /// Distinct `readySince` values, in order: when each run's first pod was Ready, where
    /// the operator starts counting work (runtime, energy, emissions).
    pub fn ready_starts(&self) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = Vec::new();
        for s in &self.samples {
            if let Some(t) = t_opt(&s.status.ready_since) {
                if out.last() != Some(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The first run's `readySince`; panics with the history when none was seen.
    pub fn first_ready(&self) -> DateTime<Utc> {
        match self.ready_starts().first() {
            Some(t) => *t,
            None => panic!("no readySince seen; history:\n{}", self.dump()),
        }
    }

    /// Distinct `runningSince` values (starts and resumes) and `pausedSince` values, in order.
    pub fn transitions(&self) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
        let mut runs: Vec<DateTime<Utc>> = Vec::new();
        let mut pauses: Vec<DateTime<Utc>> = Vec::new();
        for s in &self.samples {
            if let Some(t) = t_opt(&s.status.running_since) {
                if runs.last() != Some(&t) {
                    runs.push(t);
                }
            }
            if let Some(t) = t_opt(&s.status.paused_since) {
                if s.status.start_time.is_some() && pauses.last() != Some(&t) {
                    pauses.push(t);
                }
            }
        }
        (runs, pauses)
    }

    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut last = None;
        for s in &self.samples {
            let key = (
                s.status.phase,
                s.status.runtime_seconds,
                s.status.pauses,
                s.live.len(),
                s.listed,
            );
            if last != Some(key) {
                out.push_str(&format!(
                    "  {} phase={:?} runtime={} pauses={} emissions={:.3} baseline={:.3} live_pods={} listed_pods={}\n",
                    s.at.format("%H:%M:%S%.3f"),
                    s.status.phase,
                    s.status.runtime_seconds,
                    s.status.pauses,
                    s.status.emissions_grams,
                    s.status.baseline_grams,
                    s.live.len(),
                    s.listed
                ));
                last = Some(key);
            }
        }
        for (uid, p) in &self.pods_seen {
            out.push_str(&format!(
                "  pod {} ({uid}) created {} started {:?} ended {:?} phase {}\n",
                p.name, p.created, p.started, p.ended, p.phase
            ));
        }
        out
    }

    /// Polls every 250 ms until `pred` holds for the status, and returns that status; panics
    /// after `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&CarbonAwareJobStatus) -> bool,
    ) -> CarbonAwareJobStatus {
        let until = Utc::now() + TimeDelta::from_std(timeout).unwrap_or(TimeDelta::MAX);
        loop {
            self.poll().await;
            let st = self.status();
            if self.last.is_some() && pred(&st) {
                return st;
            }
            assert!(
                Utc::now() < until,
                "timed out after {timeout:?} waiting for {what}; history:\n{}",
                self.dump()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls every 500 ms until the job is Succeeded or Failed, or panics at `until`.
    pub async fn until_finished(&mut self, until: DateTime<Utc>) {
        while !self.phase().is_some_and(Phase::is_terminal) {
            assert!(
                Utc::now() < until,
                "CarbonAwareJob {} not finished by {until}; history:\n{}",
                self.name,
                self.dump()
            );
            self.poll().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

pub async fn mark_pod_complete(pods: &Api<Pod>, name: &str) {
    let patch = json!({"metadata": {"annotations": {COMPLETE: "true"}}});
    must(
        &format!("annotate pod {name} {COMPLETE}=true"),
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
}

/// Asserts the ledger of a finished job against the forecast: runtime is the sum of the
/// run intervals, emissions their integral, baseline the integral of running at once from
/// creation for the net runtime (no checkpoint overhead in these jobs), avoided the
/// difference, energy power x runtime.
pub fn assert_ledger(
    st: &CarbonAwareJobStatus,
    intervals: &[(DateTime<Utc>, DateTime<Utc>)],
    created: DateTime<Utc>,
    f: &Forecast,
) {
    let runtime: i64 = intervals.iter().map(|(a, b)| (*b - *a).num_seconds()).sum();
    assert!(
        (st.runtime_seconds - runtime).abs() <= 1,
        "runtimeSeconds {} but the run intervals {intervals:?} add up to {runtime} s",
        st.runtime_seconds
    );
    let emissions: f64 = intervals
        .iter()
        .map(|(a, b)| POWER_KW * f.integral(*a, *b))
        .sum();
    // The second of runtime the check above allows (the operator sees a pod stop at its
    // next reconcile, so it can count up to that one second more or less), at the
    // intensity of the edge it falls on.
    let one_second = TimeDelta::seconds(1);
    let edge = intervals
        .iter()
        .flat_map(|(a, b)| {
            [
                f.integral(*a - one_second, *a),
                f.integral(*b, *b + one_second),
            ]
        })
        .fold(0.0, f64::max);
    assert!(
        (st.emissions_grams - emissions).abs() <= 0.01 * emissions.abs() + POWER_KW * edge,
        "emissionsGrams {} but the forecast over the run intervals {intervals:?} gives {emissions} (1 % and one second at an edge, {} g, allowed)",
        st.emissions_grams,
        POWER_KW * edge
    );
    let baseline = POWER_KW * f.integral(created, created + TimeDelta::seconds(st.runtime_seconds));
    assert!(
        rel_close(st.baseline_grams, baseline, 0.01),
        "baselineGrams {} but running {} s at once from creation ({created}) gives {baseline}",
        st.baseline_grams,
        st.runtime_seconds
    );
    assert!(
        (st.avoided_grams - (st.baseline_grams - st.emissions_grams)).abs() < 1e-6,
        "avoidedGrams {} != baselineGrams {} - emissionsGrams {}",
        st.avoided_grams,
        st.baseline_grams,
        st.emissions_grams
    );
    let energy = POWER_KW * st.runtime_seconds as f64 / 3600.0;
    assert!(
        rel_close(st.energy_kwh, energy, 0.01),
        "energyKWh {} but 0.48 kW x runtime gives {energy}",
        st.energy_kwh
    );
}

// ------------------------------------------------------------------------------------------
// The driver

/// Names the scenario whose task is unwinding (a panic in a spawned task names only the
/// worker thread).
pub struct ScenarioGuard(pub &'static str);

impl Drop for ScenarioGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== scenario {} FAILED (panic above) =====", self.0);
        }
    }
}

pub fn metric_value(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Plays a checkpointing workload until the job is Succeeded or Failed (or `until` passes,
/// which fails the test): polls `tr`, and once its pods have run `work_secs` in all (pod
/// start to deletion, API server times: independent of the operator's ledger), marks the
/// running pod complete. Returns that pod's name.
pub async fn run_until_finished(
    env: &Env,
    tr: &mut Tracker,
    work_secs: i64,
    until: DateTime<Utc>,
) -> Option<String> {
    let mut completed_pod = None;
    while !tr.phase().is_some_and(Phase::is_terminal) {
        assert!(
            Utc::now() < until,
            "job not finished by {until}; history:\n{}",
            tr.dump()
        );
        tr.poll().await;
        let now = Utc::now();
        if completed_pod.is_none() && tr.pod_work_secs(now) >= work_secs {
            let running = must(
                "list pods",
                env.pods
                    .list(&ListParams::default().labels(&job_pods_selector(&tr.name)))
                    .await,
            )
            .items
            .into_iter()
            .find(|p| cluster::pod_running_ready(p) && p.metadata.deletion_timestamp.is_none());
            if let Some(pod) = running {
                mark_pod_complete(&env.pods, &pod.name_any()).await;
                println!(
                    "[{}] pods ran {} s: completed pod {}",
                    env.ns.name,
                    tr.pod_work_secs(now),
                    pod.name_any()
                );
                completed_pod = Some(pod.name_any());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    completed_pod
}

/// A scenario of a concurrent end-to-end test.
pub type Scenario = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `all` concurrently (they spend their time waiting for forecast minutes to pass,
/// and the harness runs only as many tests at once as there are CPUs), then reports PASS
/// or FAIL with each one's duration under `title`, and fails if any failed.
/// `CARBONSHIFT_E2E_ONLY=a,b` runs only the scenarios whose names contain one of the words.
pub async fn run_scenarios(title: &str, all: Vec<(&'static str, Scenario)>) {
    let only: Option<Vec<String>> = std::env::var("CARBONSHIFT_E2E_ONLY").ok().map(|v| {
        v.split(',')
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect()
    });
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for (name, scenario) in all {
        if only
            .as_ref()
            .is_some_and(|words| !words.iter().any(|w| name.contains(w.as_str())))
        {
            continue;
        }
        handles.push((
            name,
            tokio::spawn(async move {
                let _guard = ScenarioGuard(name);
                let t = std::time::Instant::now();
                scenario.await;
                t.elapsed()
            }),
        ));
    }
    assert!(
        !handles.is_empty(),
        "CARBONSHIFT_E2E_ONLY={only:?} selects no scenario"
    );
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for (name, handle) in handles {
        match handle.await {
            Ok(took) => report.push(format!("PASS {name} ({:.0} s)", took.as_secs_f64())),
            Err(e) => {
                report.push(format!(
                    "FAIL {name}: {}",
                    if e.is_panic() {
                        "panicked (see above)"
                    } else {
                        "cancelled"
                    }
                ));
                failed.push(name);
            }
        }
    }
    println!(
        "{title} ({:.0} s in all):\n  {}",
        started.elapsed().as_secs_f64(),
        report.join("\n  ")
    );
    assert!(
        failed.is_empty(),
        "failed scenarios: {failed:?}\n  {}",
        report.join("\n  ")
    );
}

//! End-to-end tests on the local cluster's REAL node (`hack/cluster.sh`, docs/local-cluster.md):
//! kubelet and kube-proxy from the pinned Kubernetes module, Debian's containerd and runc,
//! pods in network namespaces on the cluster's bridge, images built locally and imported
//! (`hack/images.sh`).
//!
//! - [`real_node_end_to_end`]: the operator's image, installed with the real chart, runs
//!   in-cluster on the real node (its ServiceAccount, RBAC, probes, restricted security
//!   context, in-cluster configuration, leader election, a `file` forecast from a
//!   ConfigMap) and takes `examples/checkpointing`'s trainer through Waiting, Running,
//!   Paused, Running and Succeeded. The trainer is the example's `train.py`, unmodified; the
//!   test reads its output (`kubectl logs`' API) and its checkpoint file. A real Prometheus
//!   scrapes the operator with the scrape configuration the Prometheus Operator derives from
//!   the chart's ServiceMonitor and evaluates the chart's PrometheusRule.
//! - Beside it: pods reach each other directly and through a Service (kube-proxy), and a
//!   Job suspended more often than its `backoffLimit` still succeeds, with and without a
//!   podFailurePolicy.
//!
//! Runs with `CARBONSHIFT_E2E=1`, `KUBECONFIG` and the `hack/cluster.sh env` of a cluster
//! with its real node; `CARBONSHIFT_REAL_NODE=0` skips it.
//! ```text
//! hack/cluster.sh up && eval "$(hack/cluster.sh env)"
//! CARBONSHIFT_E2E=1 cargo test --test e2e_real_node -- --nocapture
//! ```

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carbonshift::api::{time, CarbonAwareJob, Phase};
use chrono::{DateTime, TimeDelta, Utc};
use common::cluster::{
    self, free_port, job_pods_selector, must, run, tool, wait_until, TestNamespace,
};
use common::forecast::{first_boundary, Forecast};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

/// Region of the forecast and of the chart's `region` value.
const REGION: &str = "DE";
/// Images `hack/images.sh` builds and imports into the node's containerd.
const PYTHON_IMAGE: &str = "localhost/carbonshift/python:3.11";
const OPERATOR_REPOSITORY: &str = "localhost/carbonshift/carbonshift";
const OPERATOR_TAG: &str = "dev";
/// The trainer's work: STEPS steps of one second, a checkpoint every CHECKPOINT_EVERY.
const STEPS: i64 = 100;
const CHECKPOINT_EVERY: i64 = 20;
/// CarbonshiftForecastStale as the test renders it: older than this, for ALERT_FOR.
const STALE_AFTER_SECS: i64 = 60;
const ALERT_FOR: &str = "20s";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------------------------------
// The real node

/// What `hack/cluster.sh env` says about the real node.
#[derive(Clone)]
struct RealNode {
    name: String,
    taint: String,
    containerd: String,
}

impl RealNode {
    /// `None` (skip) without CARBONSHIFT_E2E or with CARBONSHIFT_REAL_NODE=0; a cluster
    /// started without its real node otherwise fails the test.
    fn from_env() -> Option<Self> {
        if !cluster::enabled() {
            return None;
        }
        if std::env::var("CARBONSHIFT_REAL_NODE").as_deref() == Ok("0") {
            println!("skipping: CARBONSHIFT_REAL_NODE=0");
            return None;
        }
        let var = |name: &str| match std::env::var(name) {
            Ok(v) if !v.is_empty() => v,
            _ => panic!(
                "{name} is not set: start the cluster with its real node (hack/cluster.sh up) and \
                 eval \"$(hack/cluster.sh env)\", or set CARBONSHIFT_REAL_NODE=0 to skip"
            ),
        };
        Some(Self {
            name: var("CARBONSHIFT_REAL_NODE_NAME"),
            taint: var("CARBONSHIFT_REAL_NODE_TAINT"),
            containerd: var("CONTAINERD_ADDRESS"),
        })
    }

    /// Pod-spec fields that put a pod on the real node.
    fn placement(&self) -> Value {
        json!({
            "nodeSelector": {"kubernetes.io/hostname": self.name},
            "tolerations": [{"key": self.taint, "operator": "Exists", "effect": "NoSchedule"}],
        })
    }
}

/// Builds the operator image from this test's own `carbonshift` binary (or
/// CARBONSHIFT_OPERATOR_BINARY) and imports it into the node's containerd.
fn import_operator_image(node: &RealNode) {
    let binary = std::env::var("CARBONSHIFT_OPERATOR_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_carbonshift").to_owned());
    let script = repo().join("hack/images.sh");
    let script = script.to_string_lossy();
    let envs = [("CARBONSHIFT_OPERATOR_BINARY", binary.as_str())];
    run(&script, &["build", "operator"], &envs);
    run(
        &script,
        &["import", "--address", &node.containerd, "operator"],
        &envs,
    );
}

/// Merges `patch` into `base` (objects key by key; anything else replaced).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn read_yaml(path: &str) -> Value {
    let text = must(path, std::fs::read_to_string(repo().join(path)));
    must(path, serde_yaml::from_str(&text))
}

/// Creates (or replaces) an object from JSON in the namespace.
async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = must("object from JSON", serde_json::from_value(value));
    must("create", api.create(&PostParams::default(), &obj).await)
}

fn container_state(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()
}

// ------------------------------------------------------------------------------------------
// Pod logs, followed while each pod lives (a pause deletes the pod, and its logs with it)

#[derive(Default, Debug, Clone)]
struct PodRecord {
    name: String,
    created: Option<DateTime<Utc>>,
    /// When the pod's deletion was requested: the moment the kubelet sends SIGTERM.
    deleted: Option<DateTime<Utc>>,
    exit_code: Option<i32>,
    /// Log lines with the runtime's timestamps.
    lines: Vec<(DateTime<Utc>, String)>,
}

impl PodRecord {
    fn find(&self, needle: &str) -> Option<&(DateTime<Utc>, String)> {
        self.lines.iter().find(|(_, l)| l.contains(needle))
    }

    /// The number after `prefix` in the first line containing it.
    fn number_after(&self, prefix: &str) -> Option<i64> {
        number_after(&self.find(prefix)?.1, prefix)
    }

    /// The time and number of the last line containing `prefix`.
    fn last_number_after(&self, prefix: &str) -> Option<(DateTime<Utc>, i64)> {
        let (t, line) = self.lines.iter().rev().find(|(_, l)| l.contains(prefix))?;
        Some((*t, number_after(line, prefix)?))
    }

    /// How long the trainer process ran: its first line to its last.
    fn running_secs(&self) -> f64 {
        match (self.lines.first(), self.lines.last()) {
            (Some((a, _)), Some((b, _))) => (*b - *a).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        }
    }

    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(t, l)| format!("    {t} {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The whole number that follows `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> Option<i64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

type Records = Arc<Mutex<BTreeMap<String, PodRecord>>>;

/// Follows the log of `name` until its container exits, retrying until it has started.
async fn follow_log(pods: Api<Pod>, name: String, uid: String, records: Records) {
    let params = LogParams {
        follow: true,
        timestamps: true,
        ..LogParams::default()
    };
    for _ in 0..240 {
        match pods.log_stream(&name, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                while let Ok(Some(line)) = lines.try_next().await {
                    let (ts, text) = line.split_once(' ').unwrap_or((&line, ""));
                    let Ok(ts) = DateTime::parse_from_rfc3339(ts) else {
                        continue;
                    };
                    if let Ok(mut r) = records.lock() {
                        if let Some(rec) = r.get_mut(&uid) {
                            rec.lines.push((ts.with_timezone(&Utc), text.to_owned()));
                        }
                    }
                }
                return;
            }
            // Not started yet (ContainerCreating), or already gone.
            Err(_) => match pods.get_opt(&name).await {
                Ok(Some(p)) if p.uid().as_deref() == Some(uid.as_str()) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => return,
            },
        }
    }
}

/// Polls the Job's pods: records each pod, its deletion and exit code, and follows its log.
fn track_pods(pods: Api<Pod>, job: &str, records: Records) -> tokio::task::JoinHandle<()> {
    let selector = job_pods_selector(job);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                for pod in list.items {
                    let Some(uid) = pod.uid() else { continue };
                    let mut r = match records.lock() {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                    let new = !r.contains_key(&uid);
                    let rec = r.entry(uid.clone()).or_default();
                    rec.name = pod.name_any();
                    rec.created = pod
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(time::from_time);
                    if let Some(t) = &pod.metadata.deletion_timestamp {
                        // The deletion timestamp is "now + grace period"; SIGTERM went out
                        // when it was set, which is that less the grace period.
                        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
                        rec.deleted
                            .get_or_insert(time::from_time(t) - TimeDelta::seconds(grace));
                    }
                    if let Some(term) = container_state(&pod).and_then(|s| s.terminated.as_ref()) {
                        rec.exit_code = Some(term.exit_code);
                    }
                    drop(r);
                    if new {
                        tokio::spawn(follow_log(
                            pods.clone(),
                            pod.name_any(),
                            uid,
                            records.clone(),
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

// ------------------------------------------------------------------------------------------
// Prometheus

/// A Prometheus server (the pinned module's build, in .cache/bin) with its own data
/// directory, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, config: &str, rules: &str) -> Self {
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        std::fs::write(dir.join("rules.yml"), rules).expect("write rules.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let out = must("create prometheus.log", std::fs::File::create(&log));
        let err = must("clone log handle", out.try_clone());
        let child = must(
            "start prometheus (built by hack/cluster.sh build into .cache/bin)",
            Command::new(tool("prometheus"))
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn(),
        );
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn ready(&self) {
        let url = format!("{}/-/ready", self.url);
        wait_until("Prometheus ready", Duration::from_secs(60), || async {
            let ok = reqwest::get(&url).await.map(|r| r.status().is_success());
            Ok::<_, reqwest::Error>(ok?.then_some(()))
        })
        .await;
    }

    /// An instant query's vector: (labels, value) per series.
    async fn query(&self, promql: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("query {promql}: {body}"));
        }
        let series = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect())
    }

    /// The single value of `promql`, once it has one.
    async fn value(&self, what: &str, promql: &str) -> f64 {
        wait_until(what, Duration::from_secs(60), || async {
            Ok::<_, String>(self.query(promql).await?.first().map(|(_, v)| *v))
        })
        .await
    }

    /// State of alert `name`: "firing", "pending" or "" (inactive).
    async fn alert_state(&self, name: &str) -> Result<String, String> {
        let resp = reqwest::get(format!("{}/api/v1/alerts", self.url))
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        let alerts = body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str())
            .unwrap_or_default()
            .to_owned())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let targets = Command::new("curl")
                .args(["-s", &format!("{}/api/v1/targets", self.url)])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            eprintln!(
                "===== prometheus targets =====\n{targets}\n===== prometheus log =====\n{}",
                self.log_text()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `helm template` into namespace `ns` of one chart template with the given `--set`
/// values, as YAML documents.
fn helm_render(ns: &str, template: &str, sets: &[String]) -> Vec<Value> {
    let chart = repo().join("charts/carbonshift");
    let mut args = vec![
        "template".to_owned(),
        "carbonshift".to_owned(),
        chart.to_string_lossy().into_owned(),
        "--namespace".to_owned(),
        ns.to_owned(),
        "--show-only".to_owned(),
        template.to_owned(),
    ];
    for s in sets {
        args.push("--set".to_owned());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = run(&tool("helm").to_string_lossy(), &args, &[]);
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The scrape job the Prometheus Operator generates for endpoint 0 of a ServiceMonitor:
/// endpoint-slice discovery in the monitor's namespaces, kept by the Service's labels
/// (`selector.matchLabels`) and the endpoint's port name, with its interval, timeout,
/// path and honorLabels, and the target labels the operator sets.
fn scrape_job_from_service_monitor(sm: &Value, kubeconfig: &str) -> Value {
    let ns = sm["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = sm["metadata"]["name"].as_str().unwrap_or_default();
    let ep = &sm["spec"]["endpoints"][0];
    let namespaces: Vec<Value> = sm["spec"]["namespaceSelector"]["matchNames"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![json!(ns)]);
    let label_name = |k: &str| -> String {
        k.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let mut relabel = Vec::new();
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        let label = label_name(&k);
        relabel.push(json!({
            "action": "keep",
            "source_labels": [format!("__meta_kubernetes_service_label_{label}"), format!("__meta_kubernetes_service_labelpresent_{label}")],
            "regex": format!("({});true", v.as_str().unwrap_or_default()),
        }));
    }
    relabel.push(json!({"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": ep["port"]}));
    // `job` is the Service's name, or the value of its label named by `jobLabel`.
    let job_from = match sm["spec"]["jobLabel"].as_str() {
        Some(l) => format!("__meta_kubernetes_service_label_{}", label_name(l)),
        None => "__meta_kubernetes_service_name".to_owned(),
    };
    for (from, to) in [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_service_name", "service"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
        (job_from.as_str(), "job"),
    ] {
        relabel.push(json!({"source_labels": [from], "target_label": to}));
    }
    relabel.push(json!({"target_label": "endpoint", "replacement": ep["port"]}));
    json!({
        "job_name": format!("serviceMonitor/{ns}/{name}/0"),
        "honor_labels": ep["honorLabels"].as_bool().unwrap_or(false),
        "scrape_interval": ep["interval"],
        "scrape_timeout": ep["scrapeTimeout"],
        "metrics_path": ep["path"].as_str().unwrap_or("/metrics"),
        "scheme": ep["scheme"].as_str().unwrap_or("http"),
        "kubernetes_sd_configs": [{
            "role": "endpointslice",
            "kubeconfig_file": kubeconfig,
            "namespaces": {"names": namespaces},
        }],
        "relabel_configs": relabel,
    })
}

// ------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn real_node_end_to_end() {
    let Some(node) = RealNode::from_env() else {
        return;
    };
    let _logs = cluster::LogsOnFailure;
    cluster::install_crd();
    import_operator_image(&node);
    let client = cluster::client().await;
    real_node_ready_beside_kwok_nodes(&client, &node).await;
    // Each scenario is a task of its own: they wait on blocking commands (helm, kubectl).
    let tasks = [
        tokio::spawn(checkpointing_trainer_in_cluster(
            client.clone(),
            node.clone(),
        )),
        tokio::spawn(pods_reach_each_other(client.clone(), node.clone())),
        tokio::spawn(suspends_do_not_count_against_backoff_limit(
            client.clone(),
            node.clone(),
            false,
        )),
        tokio::spawn(suspends_do_not_count_against_backoff_limit(
            client, node, true,
        )),
    ];
    let mut failed = None;
    for task in tasks {
        if let Err(err) = task.await {
            failed.get_or_insert(err);
        }
    }
    if let Some(err) = failed {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// The real node is Ready with containerd as its runtime, tainted, and in the kwok nodes'
/// region.
async fn real_node_ready_beside_kwok_nodes(client: &Client, node: &RealNode) {
    const REGION_LABEL: &str = "topology.kubernetes.io/region";
    let nodes: Api<Node> = Api::all(client.clone());
    let real = must("get the real node", nodes.get(&node.name).await);
    let status = real.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"), "{} Ready", node.name);
    let runtime = status
        .node_info
        .map(|i| i.container_runtime_version)
        .unwrap_or_default();
    assert!(
        runtime.starts_with("containerd://"),
        "the real node's runtime is containerd, got {runtime:?}"
    );
    let taints = real.spec.clone().and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == node.taint && t.effect == "NoSchedule"),
        "tainted {}: {taints:?}",
        node.taint
    );
    let kwok = must(
        "list kwok nodes",
        nodes
            .list(&ListParams::default().labels(cluster::KWOK_NODE_SELECTOR))
            .await,
    )
    .items;
    assert!(!kwok.is_empty(), "kwok nodes beside the real node");
    let region = |n: &Node| n.labels().get(REGION_LABEL).cloned();
    for k in &kwok {
        assert_eq!(
            region(k),
            region(&real),
            "{} and {} in one region",
            k.name_any(),
            node.name
        );
    }
    assert!(region(&real).is_some(), "the real node has a region label");
}

/// The chart-installed operator pauses and resumes the checkpointing example on the real
/// node; Prometheus scrapes the operator and evaluates the chart's alerts.
async fn checkpointing_trainer_in_cluster(client: Client, node: RealNode) {
    let ns = TestNamespace::create(&client, "e2e-real-train").await;
    let n = ns.name.clone();
    let dir = must("tempdir", tempfile::tempdir());
    // The restricted Pod Security Standard, enforced: the operator's and the trainer's pods
    // must both pass it.
    cluster::kubectl(&[
        "label",
        "namespace",
        &n,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);

    // A forecast in 1-minute slots with two clean windows, p and p+2, dirty around them and
    // dirtier after: the plan runs in p, pauses in p+1, resumes in p+2 and finishes at once.
    // p leaves time to install the chart first.
    let p = first_boundary(Utc::now() + TimeDelta::seconds(60));
    let at = |k: i64| p + TimeDelta::minutes(k);
    let forecast = Forecast::around(p, |k| match k {
        0 | 2 => 50.0,
        ..=1 => 400.0,
        _ => 450.0 + 10.0 * (k - 3) as f64,
    });
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    create(
        &cms,
        json!({"metadata": {"name": "forecast"}, "data": {"forecast.csv": forecast.csv(REGION)}}),
    )
    .await;

    // The chart, installed for real: the operator image, in-cluster, on the real node.
    let chart = repo().join("charts/carbonshift");
    let placement = node.placement();
    let sets = [
        format!("image.repository={OPERATOR_REPOSITORY}"),
        format!("image.tag={OPERATOR_TAG}"),
        "image.pullPolicy=Never".to_owned(),
        "crds.enabled=false".to_owned(),
        format!("watchNamespace={n}"),
        format!("region={REGION}"),
        "forecast.provider=file".to_owned(),
        "forecast.fileConfigMap.name=forecast".to_owned(),
        "forecast.refresh=15s".to_owned(),
        "deadlineMargin=20s".to_owned(),
        "leaderElection.enabled=true".to_owned(),
        "logFormat=text".to_owned(),
        format!("nodeSelector.kubernetes\\.io/hostname={}", node.name),
        format!("tolerations[0].key={}", node.taint),
        "tolerations[0].operator=Exists".to_owned(),
        "tolerations[0].effect=NoSchedule".to_owned(),
    ];
    let mut args: Vec<String> = vec![
        "install".into(),
        "carbonshift".into(),
        chart.to_string_lossy().into_owned(),
        "-n".into(),
        n.clone(),
        "--wait".into(),
        "--timeout".into(),
        "3m".into(),
    ];
    for s in &sets {
        args.extend(["--set".to_owned(), s.clone()]);
    }
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&tool("helm").to_string_lossy(), &args_ref, &[]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let operator_pods = must(
        "list operator pods",
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=carbonshift"))
            .await,
    )
    .items;
    assert_eq!(operator_pods.len(), 1, "one operator pod");
    let op = &operator_pods[0];
    let op_spec = op.spec.as_ref().expect("pod spec");
    assert_eq!(
        op_spec.node_name.as_deref(),
        Some(node.name.as_str()),
        "operator on the real node"
    );
    assert_eq!(
        op_spec.service_account_name.as_deref(),
        Some("carbonshift"),
        "the chart's ServiceAccount"
    );
    let op_status = op.status.as_ref().expect("pod status");
    assert!(
        op_status
            .container_statuses
            .as_ref()
            .is_some_and(|c| c.iter().all(|c| c.ready)),
        "operator container ready (its readiness probe passed): {op_status:?}"
    );
    // Leader election on: the operator pod holds the release's Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let holder = wait_until(
        "the operator's leader Lease",
        Duration::from_secs(60),
        || async {
            let list = leases.list(&ListParams::default()).await?;
            Ok::<_, kube::Error>(
                list.items
                    .into_iter()
                    .find_map(|l| l.spec.and_then(|s| s.holder_identity)),
            )
        },
    )
    .await;
    // The identity is `POD_NAME_pid`; in its container the operator is pid 1.
    assert_eq!(
        holder,
        format!("{}_1", op.name_any()),
        "the Lease holder is the operator pod"
    );

    // Prometheus, configured as the Prometheus Operator would be from the chart's
    // ServiceMonitor, with the chart's PrometheusRule as its rule file.
    let monitor_sets = [
        "serviceMonitor.enabled=true".to_owned(),
        "serviceMonitor.interval=5s".to_owned(),
        "serviceMonitor.scrapeTimeout=4s".to_owned(),
    ];
    let sm = helm_render(
        &n,
        "templates/servicemonitor.yaml",
        &[&sets[..], &monitor_sets[..]].concat(),
    );
    let sm = sm
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("ServiceMonitor rendered");
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let rule_sets = [
        "prometheusRule.enabled=true".to_owned(),
        format!("prometheusRule.forecastStaleAfterSeconds={STALE_AFTER_SECS}"),
        format!("prometheusRule.forecastStaleFor={ALERT_FOR}"),
    ];
    let rule = helm_render(
        &n,
        "templates/prometheusrule.yaml",
        &[&sets[..], &rule_sets[..]].concat(),
    );
    let rule = rule
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule rendered");
    let config = json!({
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [dir.path().join("rules.yml")],
        "scrape_configs": [scrape_job_from_service_monitor(sm, &kubeconfig)],
    });
    let prom = Prometheus::start(
        dir.path(),
        &must("config YAML", serde_yaml::to_string(&config)),
        &must("rules YAML", serde_yaml::to_string(&rule["spec"])),
    );
    prom.ready().await;
    let up = prom
        .value(
            "the operator's scrape target up",
            &format!("up{{namespace=\"{n}\"}}"),
        )
        .await;
    assert_eq!(up, 1.0, "operator target up");

    // The example's trainer, its PVC bound to a hostPath volume on the real node.
    let ckpt = dir.path().join("checkpoints");
    must("mkdir checkpoints", std::fs::create_dir(&ckpt));
    run("chown", &["1000:1000", &ckpt.to_string_lossy()], &[]);
    let pv_name = format!("{n}-checkpoints");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    create(
        &pvs,
        json!({
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "100Mi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": ckpt, "type": "Directory"},
                "claimRef": {"namespace": n, "name": "checkpointing-demo"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node.name]}]}]}},
            },
        }),
    )
    .await;
    let mut pvc = read_yaml("examples/checkpointing/pvc.yaml");
    merge(
        &mut pvc,
        json!({"spec": {"storageClassName": "", "volumeName": pv_name}}),
    );
    create(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &n),
        pvc,
    )
    .await;
    let train_py = must(
        "read train.py",
        std::fs::read_to_string(repo().join("examples/checkpointing/train.py")),
    );
    create(
        &cms,
        json!({"metadata": {"name": "checkpointing-train-script"}, "data": {"train.py": train_py}}),
    )
    .await;

    let mut caj = read_yaml("examples/checkpointing/carbonawarejob.yaml");
    merge(
        &mut caj,
        json!({"spec": {
            "schedule": {"maxDelay": "5m", "expectedDuration": "2m"},
            "template": {"spec": {"template": {"spec": placement}}},
        }}),
    );
    let container = &mut caj["spec"]["template"]["spec"]["template"]["spec"]["containers"][0];
    container["image"] = json!(PYTHON_IMAGE);
    container["imagePullPolicy"] = json!("Never");
    container["command"] = json!([
        "python",
        "/app/train.py",
        "--checkpoint-dir",
        "/checkpoints",
        "--steps",
        STEPS.to_string(),
        "--step-seconds",
        "1",
        "--checkpoint-every",
        CHECKPOINT_EVERY.to_string()
    ]);
    let grace = caj["spec"]["template"]["spec"]["template"]["spec"]
        ["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("the example sets terminationGracePeriodSeconds");
    let cajs: Api<CarbonAwareJob> = Api::namespaced(client.clone(), &n);
    let name = caj["metadata"]["name"].as_str().expect("name").to_owned();
    create(&cajs, caj).await;
    println!("[{n}] p = {p}; created {name}");

    // Follow the job: phases from the status, pods and their logs.
    let records: Records = Arc::default();
    let tracker = track_pods(pods.clone(), &name, records.clone());
    let mut phases: Vec<Phase> = Vec::new();
    let mut stale_seen_inactive = false;
    let mut first_age = None;
    let until = at(7);
    let status = loop {
        assert!(
            Utc::now() < until,
            "{name} not finished by {until}; phases {phases:?}"
        );
        let obj = must("get CarbonAwareJob", cajs.get(&name).await);
        let st = obj.status.clone().unwrap_or_default();
        if let Some(ph) = st.phase {
            if phases.last() != Some(&ph) {
                println!("[{n}] {} {ph:?}", Utc::now());
                phases.push(ph);
            }
            if ph.is_terminal() {
                break st;
            }
        }
        if first_age.is_none() {
            if let Ok(v) = prom.query("max(carbonshift_forecast_age_seconds)").await {
                if let Some((_, age)) = v.first() {
                    first_age = Some(*age);
                    stale_seen_inactive = *age < STALE_AFTER_SECS as f64
                        && prom
                            .alert_state("CarbonshiftForecastStale")
                            .await
                            .as_deref()
                            == Ok("");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The last pod's final lines.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tracker.abort();
    let records: Vec<PodRecord> = {
        let r = records.lock().expect("records");
        let mut v: Vec<PodRecord> = r.values().cloned().collect();
        v.sort_by_key(|r| r.created);
        v
    };
    let history = records
        .iter()
        .map(|r| {
            format!(
                "  pod {} exit {:?} deleted {:?}\n{}",
                r.name,
                r.exit_code,
                r.deleted,
                r.text()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    println!("[{n}] status {status:?}\n{history}");

    assert_eq!(
        phases,
        vec![
            Phase::Waiting,
            Phase::Running,
            Phase::Paused,
            Phase::Running,
            Phase::Succeeded
        ],
        "phases; pods:\n{history}"
    );
    assert_eq!(status.pauses, 1, "one pause; {status:?}");
    assert_eq!(records.len(), 2, "one pod per run; pods:\n{history}");
    let job = must(
        "get Job",
        Api::<Job>::namespaced(client.clone(), &n).get(&name).await,
    );
    assert!(
        cluster::job_has_condition(&job, "Complete"),
        "the Job completed: {:?}",
        job.status
    );

    // The pause: SIGTERM, a checkpoint inside the grace period, exit 143 (not a SIGKILL).
    let first = &records[0];
    let second = &records[1];
    assert!(
        first.find("no checkpoint: starting from step 0").is_some(),
        "first run starts at 0:\n{history}"
    );
    let (sigterm_at, _) = first
        .find("received signal 15")
        .unwrap_or_else(|| panic!("the paused pod never logged SIGTERM:\n{history}"));
    assert!(
        first.find("paused: exiting").is_some(),
        "the paused pod did not checkpoint and exit on SIGTERM:\n{history}"
    );
    let (saved_at, last_saved_step) = first
        .last_number_after("checkpoint saved at step")
        .unwrap_or_else(|| panic!("no checkpoint on SIGTERM:\n{history}"));
    let deleted = first
        .deleted
        .unwrap_or_else(|| panic!("first pod never deleted:\n{history}"));
    let window = (saved_at - deleted).num_milliseconds() as f64 / 1000.0;
    assert!(
        window >= 0.0 && window <= grace as f64,
        "checkpoint {window:.1} s after the pause's SIGTERM (deletion at {deleted}), grace period {grace} s"
    );
    assert!(
        (*sigterm_at - deleted).num_seconds().abs() <= 2,
        "SIGTERM logged at {sigterm_at}, deletion at {deleted}"
    );
    assert_eq!(
        first.exit_code,
        Some(143),
        "paused pod exits 143 after its checkpoint:\n{history}"
    );

    // The resume: a new pod continues from the saved step; the work adds up to --steps.
    let resumed = second
        .number_after("resumed from checkpoint at step")
        .unwrap_or_else(|| panic!("the resumed pod did not load the checkpoint:\n{history}"));
    assert_eq!(
        resumed, last_saved_step,
        "resumed from the step saved at the pause"
    );
    let finished = second
        .number_after("training finished at step")
        .unwrap_or_else(|| panic!("the trainer did not finish:\n{history}"));
    assert_eq!(finished, STEPS, "final step");
    assert_eq!(second.exit_code, Some(0), "last pod exits 0");
    let executed = last_saved_step + (finished - resumed);
    assert!(
        executed - STEPS <= CHECKPOINT_EVERY,
        "{executed} steps executed for {STEPS}: more than one checkpoint interval repeated"
    );
    let file = must(
        "read the checkpoint file",
        std::fs::read_to_string(ckpt.join("last.json")),
    );
    let file: Value = must("checkpoint JSON", serde_json::from_str(&file));
    assert_eq!(file["step"].as_i64(), Some(STEPS), "checkpoint file's step");

    // The ledger's runtime against the trainer's own running time, per run segment.
    let ran: f64 = records.iter().map(PodRecord::running_secs).sum();
    let tolerance = 10.0 * records.len() as f64;
    println!(
        "[{n}] runtimeSeconds {} vs trainer {ran:.1} s in {} runs; checkpoint {window:.1} s after SIGTERM \
         (grace {grace} s); resumed at step {resumed}, {executed} steps executed for {STEPS}",
        status.runtime_seconds,
        records.len()
    );
    assert!(
        (status.runtime_seconds as f64 - ran).abs() <= tolerance,
        "runtimeSeconds {} but the trainer ran {ran:.1} s (tolerance {tolerance} s)",
        status.runtime_seconds
    );

    // Prometheus: the finished job's avoided emissions, and the stale-forecast alert.
    let avoided = wait_until(
        "the avoided total scraped",
        Duration::from_secs(60),
        || async {
            let v = prom
                .query(&format!(
                    "sum(carbonshift_avoided_emissions_grams_total{{namespace=\"{n}\"}})"
                ))
                .await?;
            Ok::<_, String>(v.first().map(|(_, v)| *v).filter(|v| *v > 0.0))
        },
    )
    .await;
    assert!(
        (avoided - status.avoided_grams).abs() <= 1e-6 * status.avoided_grams.abs().max(1.0),
        "carbonshift_avoided_emissions_grams_total {avoided} vs status.avoidedGrams {}",
        status.avoided_grams
    );
    assert!(status.avoided_grams > 0.0, "{status:?}");
    assert!(
        stale_seen_inactive,
        "the first scrape should show a fresh forecast and an inactive alert (age {first_age:?})"
    );
    let state = wait_until(
        "CarbonshiftForecastStale firing",
        Duration::from_secs(120),
        || async {
            let s = prom.alert_state("CarbonshiftForecastStale").await?;
            Ok::<_, String>((s == "firing").then_some(s))
        },
    )
    .await;
    assert_eq!(state, "firing");
    let age = prom
        .value("forecast age", "max(carbonshift_forecast_age_seconds)")
        .await;
    println!(
        "[{n}] Prometheus: avoided {avoided:.3} g (status {:.3} g); CarbonshiftForecastStale {state} at age {age:.0} s \
         (first scrape: age {first_age:?}, alert inactive: {stale_seen_inactive})",
        status.avoided_grams
    );
    assert!(age > STALE_AFTER_SECS as f64, "alert fired at age {age}");

    run(
        &tool("helm").to_string_lossy(),
        &["uninstall", "carbonshift", "-n", &n, "--wait"],
        &[],
    );
    let _ = pvs.delete(&pv_name, &DeleteParams::default()).await;
    ns.delete().await;
    drop(prom);
}

/// Pods on the real node reach each other by pod IP and through a Service's ClusterIP
/// (kube-proxy), and their output is readable through the API server (kubectl logs).
async fn pods_reach_each_other(client: Client, node: RealNode) {
    let ns = TestNamespace::create(&client, "e2e-real-net").await;
    let n = ns.name.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let pod = |name: &str, cmd: Vec<&str>| {
        let mut spec = json!({
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": PYTHON_IMAGE, "imagePullPolicy": "Never", "command": cmd}],
        });
        merge(&mut spec, node.placement());
        json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
    };
    create(
        &pods,
        pod("server", vec!["python", "-c", "import http.server as h, socketserver as s; s.TCPServer(('', 8000), h.SimpleHTTPRequestHandler).serve_forever()"]),
    )
    .await;
    let server_ip = wait_until(
        "server pod running with an IP",
        Duration::from_secs(60),
        || async {
            let p = pods.get("server").await?;
            let st = p.status.unwrap_or_default();
            Ok::<_, kube::Error>(
                (st.phase.as_deref() == Some("Running"))
                    .then_some(st.pod_ip)
                    .flatten(),
            )
        },
    )
    .await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &n);
    let svc = create(
        &services,
        json!({"metadata": {"name": "server"}, "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8000}]}}),
    )
    .await;
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    let script = format!(
        "import urllib.request as u, time\n\
         for url in ['http://{server_ip}:8000/', 'http://{cluster_ip}/']:\n\
         \x20   for i in range(30):\n\
         \x20       try:\n\
         \x20           print(url, u.urlopen(url, timeout=2).status); break\n\
         \x20       except Exception as e:\n\
         \x20           time.sleep(1)\n\
         \x20   else:\n\
         \x20       print(url, 'unreachable')\n"
    );
    create(&pods, pod("client", vec!["python", "-c", &script])).await;
    wait_until("client pod finished", Duration::from_secs(90), || async {
        let p = pods.get("client").await?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        Ok::<_, kube::Error>(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(()))
    })
    .await;
    let logs = cluster::kubectl(&["logs", "-n", &n, "client"]);
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        vec![
            format!("http://{server_ip}:8000/ 200"),
            format!("http://{cluster_ip}/ 200")
        ],
        "pod-to-pod and pod-to-Service requests, as kubectl logs shows them"
    );
    ns.delete().await;
}

/// A Job with `backoffLimit: 0` is suspended three times while its pod runs; every pod
/// the suspension terminates exits 143, and the Job still completes, with or without a
/// podFailurePolicy that ignores exit code 143.
async fn suspends_do_not_count_against_backoff_limit(client: Client, node: RealNode, policy: bool) {
    let ns = TestNamespace::create(
        &client,
        if policy {
            "e2e-real-pfp"
        } else {
            "e2e-real-backoff"
        },
    )
    .await;
    let n = ns.name.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &n);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    // Sleeps 20 s unless told to stop: SIGTERM exits 143, as a checkpointing trainer does.
    let script = "import signal, sys, time\n\
                  signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n\
                  print('started', flush=True)\n\
                  time.sleep(20)\n\
                  print('done', flush=True)\n";
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 10,
        "containers": [{"name": "work", "image": PYTHON_IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c", script]}],
    });
    merge(&mut pod_spec, node.placement());
    let mut spec = json!({"backoffLimit": 0, "template": {"spec": pod_spec}});
    if policy {
        spec["podFailurePolicy"] = json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"containerName": "work", "operator": "In", "values": [143]}},
        ]});
    }
    create(&jobs, json!({"metadata": {"name": "work"}, "spec": spec})).await;
    let selector = ListParams::default().labels(&job_pods_selector("work"));
    let running = || async {
        let list = pods.list(&selector).await?;
        Ok::<_, kube::Error>(
            list.items
                .into_iter()
                .find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && container_state(p).is_some_and(|s| s.running.is_some())
                })
                .map(|p| p.name_any()),
        )
    };
    let mut terminated = Vec::new();
    for round in 1..=3 {
        let pod = wait_until(
            format!("[{n}] a running pod (round {round})"),
            Duration::from_secs(60),
            running,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let patch = Patch::Merge(json!({"spec": {"suspend": true}}));
        must(
            "suspend",
            jobs.patch("work", &PatchParams::default(), &patch).await,
        );
        // The pod's exit, seen before the Job controller lets it go.
        let code = wait_until(
            format!("[{n}] pod {pod} terminated"),
            Duration::from_secs(60),
            || async {
                Ok::<_, kube::Error>(match pods.get_opt(&pod).await? {
                    Some(p) => container_state(&p)
                        .and_then(|s| s.terminated.as_ref())
                        .map(|t| Some(t.exit_code)),
                    None => Some(None),
                })
            },
        )
        .await;
        terminated.push(code);
        wait_until(
            format!("[{n}] no pods while suspended"),
            Duration::from_secs(60),
            || async {
                Ok::<_, kube::Error>(pods.list(&selector).await?.items.is_empty().then_some(()))
            },
        )
        .await;
        let patch = Patch::Merge(json!({"spec": {"suspend": false}}));
        must(
            "resume",
            jobs.patch("work", &PatchParams::default(), &patch).await,
        );
    }
    let job = wait_until(
        format!("[{n}] Job finished"),
        Duration::from_secs(90),
        || async {
            let j = jobs.get("work").await?;
            Ok::<_, kube::Error>(
                (cluster::job_has_condition(&j, "Complete")
                    || cluster::job_has_condition(&j, "Failed"))
                .then_some(j),
            )
        },
    )
    .await;
    let st = job.status.clone().unwrap_or_default();
    println!("[{n}] podFailurePolicy {policy}: exit codes {terminated:?}, status {st:?}");
    assert!(
        cluster::job_has_condition(&job, "Complete"),
        "paused 3 times with backoffLimit 0 (podFailurePolicy {policy}), the Job must complete: {st:?}"
    );
    assert_eq!(st.succeeded, Some(1), "one pod succeeded: {st:?}");
    assert_eq!(
        st.failed.unwrap_or(0),
        0,
        "no pod counted as failed: {st:?}"
    );
    let seen: Vec<i32> = terminated.iter().flatten().copied().collect();
    assert!(
        seen.iter().all(|c| *c == 143),
        "suspended pods exit 143 on SIGTERM: {terminated:?}"
    );
    ns.delete().await;
}

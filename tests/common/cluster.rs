//! Helpers for end-to-end tests against the local control plane of `hack/cluster.sh`: real
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with kwok playing the
//! kubelets of fake GPU nodes (pod lifecycle rules in `hack/kwok/stages.yaml`).
//!
//! A test is gated on the environment, so `cargo test` without a cluster skips it:
//! ```ignore
//! if !cluster::enabled() { return; }
//! let _logs = cluster::LogsOnFailure;
//! let client = cluster::client().await;
//! let ns = cluster::TestNamespace::create(&client, "my-test").await;
//! ```
//! Waits poll the API server (cheap on a local cluster, and unlike watches they cannot miss a
//! state that is already reached), and time out with a message naming what was awaited; the
//! [`LogsOnFailure`] guard then prints the tail of every component's log.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

/// Set to `1` to run end-to-end tests (with `KUBECONFIG` pointing at a cluster).
pub const E2E_ENV: &str = "CARBONSHIFT_E2E";
/// Annotation on a pod: kwok lets it run this long (a Go duration, e.g. `90s`), then it succeeds.
pub const RUN_FOR: &str = "test.carbonshift.io/run-for";
/// Annotation on a pod, set to `"true"` at any time: kwok makes it succeed at once.
pub const COMPLETE: &str = "test.carbonshift.io/complete";
/// Annotation on a pod, set to `"true"` at any time: kwok makes it fail at once.
pub const FAIL: &str = "test.carbonshift.io/fail";
/// Annotation on a pod: when deleted, it keeps terminating this long (a slow checkpoint).
pub const TERMINATE_AFTER: &str = "test.carbonshift.io/terminate-after";
/// Label that `hack/cluster.sh` puts on its fake nodes.
pub const KWOK_NODE_SELECTOR: &str = "type=kwok";
/// Extended resource the fake nodes advertise.
pub const GPU: &str = "nvidia.com/gpu";

/// True when end-to-end tests should run; otherwise says why the test is skipped.
pub fn enabled() -> bool {
    if std::env::var(E2E_ENV).as_deref() != Ok("1") {
        println!("skipping: {E2E_ENV} not set");
        return false;
    }
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipping: KUBECONFIG not set ({E2E_ENV}=1)");
        return false;
    }
    true
}

/// A client for the cluster in `KUBECONFIG`.
pub async fn client() -> Client {
    match Client::try_default().await {
        Ok(client) => client,
        Err(err) => panic!("cannot build a client from KUBECONFIG: {err}"),
    }
}

/// Where `hack/cluster.sh` writes component logs (`CARBONSHIFT_CLUSTER_LOGS` from
/// `hack/cluster.sh env`, else the default state directory).
pub fn logs_dir() -> PathBuf {
    std::env::var_os("CARBONSHIFT_CLUSTER_LOGS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/cluster/logs"),
        PathBuf::from,
    )
}

/// Prints the last `lines` lines of every component's log to stderr.
pub fn print_component_logs(lines: usize) {
    let dir = logs_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(err) => {
            eprintln!("no component logs in {}: {err}", dir.display());
            return;
        }
    };
    files.sort();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
    {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        eprintln!("===== last {lines} lines of {} =====", file.display());
        for line in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{line}");
        }
    }
}

/// Prints the components' logs if the test panics while this guard is alive.
pub struct LogsOnFailure;

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_component_logs(60);
        }
    }
}

/// A DNS-1123 label unique to this process and moment: `prefix-<base36>`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut n = nanos ^ (u128::from(std::process::id()) << 64);
    let mut suffix = String::new();
    while n > 0 && suffix.len() < 10 {
        let digit = u32::try_from(n % 36).unwrap_or(0);
        suffix.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    let prefix: String = prefix.chars().take(63 - 1 - suffix.len()).collect();
    format!("{prefix}-{suffix}")
}

/// Polls `probe` every 250 ms until it yields `Some`, and returns that. Panics after `timeout`
/// with `what` and the last error the probe returned. Errors are retried: API calls can fail
/// briefly while controllers catch up.
pub async fn wait_until<T, E, F, Fut>(what: impl Display, timeout: Duration, mut probe: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(err) => last_error = Some(err.to_string()),
        }
        if start.elapsed() >= timeout {
            match last_error {
                Some(err) => {
                    panic!("timed out after {timeout:?} waiting for {what}; last error: {err}")
                }
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Unwraps an API result in a test, naming what was being done.
pub fn must<T, E: Debug>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: {err:?}"),
    }
}

/// A namespace of its own for one test, labelled `carbonshift.io/e2e=true`.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates a uniquely named namespace and waits for its default ServiceAccount, without
    /// which no pod can be admitted.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("carbonshift.io/e2e".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let namespaces: Api<Namespace> = Api::all(client.clone());
        must(
            "create namespace",
            namespaces.create(&PostParams::default(), &ns).await,
        );
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_until(
            format!("ServiceAccount default in namespace {name}"),
            Duration::from_secs(60),
            || accounts.get_opt("default"),
        )
        .await;
        Self {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace and waits (up to 2 min) until it is gone. With the operator
    /// still running this also checks that it releases the finalizers of the child Jobs
    /// whose CarbonAwareJobs the namespace deletion removed.
    pub async fn delete_and_wait(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        self.delete().await;
        wait_until(
            format!("namespace {name} gone"),
            Duration::from_secs(120),
            || async {
                Ok::<_, kube::Error>(namespaces.get_opt(&name).await?.is_none().then_some(()))
            },
        )
        .await;
    }

    /// Deletes the namespace (and so everything in it); does not wait.
    pub async fn delete(self) {
        let namespaces: Api<Namespace> = Api::all(self.client);
        must(
            "delete namespace",
            namespaces
                .delete(&self.name, &DeleteParams::background())
                .await,
        );
    }
}

/// The status of condition `type_` of a Job, if the Job reports it.
pub fn job_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Whether the Job reports condition `type_` as True.
pub fn job_has_condition(job: &Job, type_: &str) -> bool {
    job_condition(job, type_) == Some("True")
}

/// Whether the pod is Running with its Ready condition True.
pub fn pod_running_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's phase, or "" when it has none yet.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Label selector for the pods of Job `name` (set by the Job controller).
pub fn job_pods_selector(name: &str) -> String {
    format!("batch.kubernetes.io/job-name={name}")
}

/// Runs `kubectl` (from PATH: `hack/cluster.sh env` puts the matching build first) and
/// returns its stdout; panics with its stderr when it fails.
pub fn kubectl(args: &[&str]) -> String {
    run("kubectl", args, &[])
}

/// Runs `program` with `args` and extra environment `envs` and returns its stdout; panics
/// with its output when it cannot start or fails.
pub fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = match std::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .output()
    {
        Ok(output) => output,
        Err(err) => panic!("cannot run {program} {args:?}: {err}"),
    };
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CRD the tests install (idempotent server-side apply).
pub const CRD_PATH: &str = "crds/carbonshift.io_carbonawarejobs.yaml";

static CRD: Once = Once::new();

/// Installs (or updates) the CRD once per test binary and waits until it is served.
pub fn install_crd() {
    CRD.call_once(|| apply_crd(CRD_PATH, "crd/carbonawarejobs.carbonshift.io"));
}

/// Server-side applies the checked-in CRD at `file` (relative to the repository) and
/// waits until `crd` (`crd/<name>`) is Established.
pub fn apply_crd(file: &str, crd: &str) {
    apply_crd_with(file, crd, &[]);
}

/// [`apply_crd`] with more environment for kubectl (another cluster's `KUBECONFIG`). The
/// wait is retried: `kubectl wait` fails at once on a CRD the API server has not yet given
/// any status.
pub fn apply_crd_with(file: &str, crd: &str, envs: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let path = path.to_string_lossy();
    let apply = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "e2e",
        "-f",
        &path,
    ];
    run("kubectl", &apply, envs);
    for attempt in 0.. {
        let established = std::process::Command::new("kubectl")
            .args(["wait", "--for=condition=Established", "--timeout=10s", crd])
            .envs(envs.iter().copied())
            .output()
            .is_ok_and(|o| o.status.success());
        if established {
            return;
        }
        assert!(attempt < 10, "{crd} not Established after {attempt} tries");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A tool `hack/cluster.sh build` makes (helm, promtool, prometheus, ...): the first on PATH
/// (`hack/cluster.sh env` puts the matching build first), else the repository's tool cache.
pub fn tool(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/bin")
        .join(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = must(
        "bind a free port",
        std::net::TcpListener::bind("127.0.0.1:0"),
    );
    must("local address", listener.local_addr()).port()
}

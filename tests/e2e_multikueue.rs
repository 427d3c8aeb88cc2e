//! End-to-end test of carbonshift as MultiKueue's external dispatcher: three real local
//! control planes (`hack/multicluster.sh up`: a manager and two workers, each with Kueue
//! v0.17.0 and kwok GPU nodes), the manager's Kueue configured with
//! `multiKueue.dispatcherName: carbonshift.io/multikueue-dispatcher`, and
//! `carbonshift run --multikueue-dispatcher` on the manager reading a 1-minute forecast file
//! for both regions.
//!
//! Runs only with `CARBONSHIFT_E2E=1` and the three clusters' kubeconfigs in the
//! environment (else skipped, or failed when `CARBONSHIFT_E2E_MULTIKUEUE=1` requires them):
//! ```text
//! hack/multicluster.sh up && eval "$(hack/multicluster.sh env)"
//! CARBONSHIFT_E2E=1 CARBONSHIFT_E2E_MULTIKUEUE=1 cargo test --test e2e_multikueue -- --nocapture
//! ```
//!
//! worker-a is labelled region FR (40 g/kWh in the forecast), worker-b DE (400 g/kWh, but
//! 100 g/kWh from `p + 4 min` to `p + 7 min`). Its 2-GPU quota lets worker-a run one 2-GPU
//! job; worker-b takes two. worker-b runs its own `carbonshift run --kueue` with a
//! carbon-window check on its queue. Every Job asks for Flexible Start, 2 minutes of work
//! within 10 minutes. What it shows:
//! 1. the first Job is nominated to worker-a, the cleaner, alone: only worker-a gets a copy,
//!    admits it and runs its pods; the manager's Workload records `clusterName: worker-a`;
//! 2. the second is nominated to worker-a too, where the queue is full: after the dispatch
//!    timeout (30 s) it is passed over for worker-b, which admits it;
//! 3. the third is nominated to worker-a and waits there; the forecast file then makes FR
//!    dirtier than DE, and at the next refresh it is nominated to worker-b (no timeout) and
//!    admitted there;
//! 4. on worker-b both copies wait (check Pending, never deactivated) until DE's clean
//!    window, the start the dispatcher expected there; then they run, and their
//!    CarbonWindows record region DE at 100 g/kWh, as worker-b's emissions total does;
//! 5. `carbonshift_dispatches_total` counts each nomination by cluster, region and reason.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::cluster::{self, must, unique_name, wait_until};
use common::forecast::{first_boundary, Forecast};
use common::kueue::{
    cluster_api, condition, create_cluster_queue, create_flavor, create_job, create_local_queue,
    gpu_job, json_of, namespaced_api, object, owned_by, params_resource,
};
use common::operator::Operator;
use futures::FutureExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{json, Value};

const REQUIRE_ENV: &str = "CARBONSHIFT_E2E_MULTIKUEUE";
const DISPATCHER: &str = "carbonshift.io/multikueue-dispatcher";
const REGION_LABEL: &str = "carbonshift.io/region";
const NOMINATED: &str = "carbonshift.io/nominated";
const PASSED_OVER: &str = "carbonshift.io/passed-over";
const TIMEOUT_SECS: i64 = 30;
const REFRESH_SECS: i64 = 5;
const CLEAN: (&str, &str, f64) = ("worker-a", "FR", 40.0);
const DIRTY: (&str, &str, f64) = ("worker-b", "DE", 400.0);
const QUEUE: &str = "lq";
/// worker-b's clean window: minutes `p + 4 .. p + 7` at 100 g/kWh.
const DE_WINDOW: std::ops::Range<i64> = 4..7;
const DE_CLEAN: f64 = 100.0;

/// The three clusters.
struct Clusters {
    manager: Client,
    /// By MultiKueueCluster name.
    workers: BTreeMap<&'static str, Client>,
}

fn kubeconfig(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

async fn client_of(path: &str) -> Client {
    let kc = must("read kubeconfig", Kubeconfig::read_from(path));
    let config = must(
        "kubeconfig",
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await,
    );
    must("client", Client::try_from(config))
}

async fn clusters() -> Option<Clusters> {
    if !cluster::enabled() {
        return None;
    }
    let vars = [
        "CARBONSHIFT_MC_MANAGER_KUBECONFIG",
        "CARBONSHIFT_MC_WORKER_A_KUBECONFIG",
        "CARBONSHIFT_MC_WORKER_B_KUBECONFIG",
    ];
    let paths: Vec<Option<String>> = vars.iter().map(|v| kubeconfig(v)).collect();
    if paths.iter().any(Option::is_none) {
        assert!(
            std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
            "{REQUIRE_ENV}=1 but {} are not all set: run `hack/multicluster.sh up` and eval \"$(hack/multicluster.sh env)\"",
            vars.join(", ")
        );
        println!("skipping: the three clusters of hack/multicluster.sh are not in the environment");
        return None;
    }
    let p: Vec<String> = paths.into_iter().flatten().collect();
    Some(Clusters {
        manager: client_of(&p[0]).await,
        workers: [
            (CLEAN.0, client_of(&p[1]).await),
            (DIRTY.0, client_of(&p[2]).await),
        ]
        .into(),
    })
}

/// Names of the cluster-scoped objects of this run.
struct Names {
    ns: String,
    flavor: String,
    queue: String,
    config: String,
    check: String,
    /// worker-b's carbon-window AdmissionCheck and its CarbonWindowParameters.
    carbon_check: String,
    params: String,
}

#[tokio::test]
async fn carbonshift_dispatches_to_the_cleaner_cluster() {
    let Some(c) = clusters().await else {
        return;
    };
    let names = Names {
        ns: unique_name("e2e-mk"),
        flavor: unique_name("mk-flavor"),
        queue: unique_name("mk-cq"),
        config: unique_name("mk-config"),
        check: unique_name("mk-check"),
        carbon_check: unique_name("mk-carbon"),
        params: unique_name("mk-params"),
    };
    let result = AssertUnwindSafe(scenario(&c, &names)).catch_unwind().await;
    cleanup(&c, &names).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(c: &Clusters, n: &Names) {
    let manager_kc = kubeconfig("CARBONSHIFT_MC_MANAGER_KUBECONFIG").unwrap_or_default();
    let b_kc = kubeconfig("CARBONSHIFT_MC_WORKER_B_KUBECONFIG").unwrap_or_default();
    install_crds(&manager_kc, &["carbonawarejobs"]);
    install_crds(
        &b_kc,
        &["carbonawarejobs", "carbonwindows", "carbonwindowparameters"],
    );
    let dir = must("tempdir", tempfile::tempdir());
    let csv = dir.path().join("forecast.csv");
    let p = first_boundary(Utc::now());
    write_forecast(&csv, p, CLEAN.2, DIRTY.2);
    let provider: [&OsStr; 4] = [
        "--forecast-provider".as_ref(),
        "file".as_ref(),
        "--forecast-file".as_ref(),
        csv.as_os_str(),
    ];
    // worker-b times what it is sent with its own carbon-window check.
    let b = &c.workers[DIRTY.0];
    let worker_op = Operator::spawn(
        &n.ns,
        &provider,
        dir.path(),
        "worker-b-operator",
        &[
            "--kueue",
            "--status-interval",
            "5s",
            "--leader-election",
            "false",
        ],
        &[("KUBECONFIG", b_kc.as_str())],
    );
    worker_op.ready().await;
    create_carbon_check(b, n).await;
    set_up_queues(c, n).await;
    let timeout = format!("{TIMEOUT_SECS}s");
    let refresh = format!("{REFRESH_SECS}s");
    let flags = [
        "--multikueue-dispatcher",
        "--dispatch-timeout",
        timeout.as_str(),
        "--forecast-refresh",
        refresh.as_str(),
        "--leader-election",
        "false",
    ];
    let op = Operator::spawn(
        &n.ns,
        &provider,
        dir.path(),
        "dispatcher",
        &flags,
        &[("KUBECONFIG", manager_kc.as_str())],
    );
    op.ready().await;

    let jobs: Api<Job> = Api::namespaced(c.manager.clone(), &n.ns);
    // 1. The cleaner cluster.
    let first = create_job(&jobs, scheduled(gpu_job("first", QUEUE, 2, "20m"))).await;
    let wl1 = dispatched(c, n, &first, CLEAN.0, Duration::from_secs(60)).await;
    let t1 = nominated_at(&wl1, CLEAN.0);
    println!(
        "[{}] first: nominated {} {:.1} s after its Job was created, admitted there",
        n.ns,
        CLEAN.0,
        secs(created(&first), t1)
    );
    assert!(
        secs(created(&first), t1) < 15.0,
        "first nominated late: {wl1}"
    );
    assert_only_on(c, n, &first, CLEAN.0).await;
    wait_pods_running(&c.workers[CLEAN.0], &n.ns, "first", 2).await;

    // 2. worker-a is full: passed over after the timeout.
    let second = create_job(&jobs, scheduled(gpu_job("second", QUEUE, 2, "60s"))).await;
    let (t_a, _) = nomination(c, n, &second, CLEAN.0).await;
    let (t_b, wl2) = nomination_within(c, n, &second, DIRTY.0, Duration::from_secs(60)).await;
    let waited = secs(t_a, t_b);
    println!(
        "[{}] second: nominated {} at {t_a}, passed over for {} {waited:.1} s later (timeout {TIMEOUT_SECS} s)",
        n.ns, CLEAN.0, DIRTY.0
    );
    assert!(
        (TIMEOUT_SECS as f64..TIMEOUT_SECS as f64 + 10.0).contains(&waited),
        "passed over after {waited} s, timeout {TIMEOUT_SECS} s: {wl2}"
    );
    assert_eq!(
        wl2["metadata"]["annotations"][PASSED_OVER],
        json!(CLEAN.0),
        "{wl2}"
    );

    // 3. The forecast turns FR dirty before the third is admitted.
    let third = create_job(&jobs, scheduled(gpu_job("third", QUEUE, 2, "60s"))).await;
    let (t_a3, _) = nomination(c, n, &third, CLEAN.0).await;
    write_forecast(&csv, p, 900.0, DIRTY.2);
    let changed = Utc::now();
    let (t_b3, wl3) = nomination_within(c, n, &third, DIRTY.0, Duration::from_secs(30)).await;
    println!(
        "[{}] third: nominated {} at {t_a3}; forecast changed {:.1} s later; nominated {} {:.1} s after the change",
        n.ns,
        CLEAN.0,
        secs(t_a3, changed),
        DIRTY.0,
        secs(changed, t_b3)
    );
    assert!(
        secs(changed, t_b3) <= (2 * REFRESH_SECS + 5) as f64,
        "renominated {} s after the forecast changed: {wl3}",
        secs(changed, t_b3)
    );
    assert!(
        secs(t_a3, t_b3) < TIMEOUT_SECS as f64,
        "moved by the timeout, not the forecast: {wl3}"
    );
    assert!(
        wl3["metadata"]["annotations"][PASSED_OVER].is_null(),
        "{wl3}"
    );

    // worker-b's check holds both until DE's clean window, then they run there; the
    // dispatcher expects that start (no pass-over before it).
    let window = p + chrono::TimeDelta::minutes(DE_WINDOW.start);
    let expected_start = |wl: &Value| {
        let t = wl["metadata"]["annotations"]["carbonshift.io/expected-start"]
            .as_str()
            .unwrap_or_default();
        match DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("expected-start {t:?}: {e}: {wl}"),
        }
    };
    for wl in [&wl2, &wl3] {
        let start = expected_start(wl);
        assert!(
            window <= start && start <= window + chrono::TimeDelta::minutes(1),
            "expected start {start}, DE's window from {window}: {wl}"
        );
    }
    assert_wait_on_b(c, n, &[&second, &third], window).await;
    for job in [&second, &third] {
        let wl = dispatched(c, n, job, DIRTY.0, Duration::from_secs(300)).await;
        let admitted = condition_time(&wl, "Admitted");
        let start = expected_start(&wl);
        let late = secs(start, admitted);
        println!(
            "[{}] {}: admitted on {} at {admitted}, {late:.1} s after the start planned there ({start}; DE's clean window from {window})",
            n.ns,
            job.metadata.name.as_deref().unwrap_or_default(),
            DIRTY.0
        );
        assert!(
            (-1.0..20.0).contains(&late),
            "admitted at {admitted}, planned {start}: {wl}"
        );
        assert_only_on(c, n, job, DIRTY.0).await;
    }
    let ledgers = finished_ledgers(b, &n.ns, 2).await;
    for (name, st) in &ledgers {
        let (e, kwh) = (
            st["emissionsGrams"].as_f64().unwrap_or(0.0),
            st["energyKWh"].as_f64().unwrap_or(0.0),
        );
        println!(
            "[{}] worker-b CarbonWindow {name}: region {}, {kwh:.5} kWh, {e:.3} g",
            n.ns, st["region"]
        );
        assert_eq!(st["region"], json!(DIRTY.1), "{st}");
        assert!(
            kwh > 0.0 && (e / kwh - DE_CLEAN).abs() < 1.0,
            "{e} g for {kwh} kWh, not at {DE_CLEAN} g/kWh: {st}"
        );
    }
    let worker_metrics = worker_op.scrape().await;
    let total: f64 = ledgers
        .values()
        .map(|st| st["emissionsGrams"].as_f64().unwrap_or(0.0))
        .sum();
    let counted = metric_line(
        &worker_metrics,
        "carbonshift_emissions_grams_total",
        &[("namespace", &n.ns), ("region", DIRTY.1)],
    );
    assert!(
        counted.is_some_and(|g| (g - total).abs() < 1e-6),
        "worker-b counted {counted:?}, ledgers {total}: {worker_metrics}"
    );

    // 4. The nominations, counted.
    let text = op.scrape().await;
    let count = |cluster: &str, region: &str, reason: &str| {
        let labels = [("cluster", cluster), ("region", region), ("reason", reason)];
        metric_line(&text, "carbonshift_dispatches_total", &labels)
    };
    assert_eq!(count(CLEAN.0, CLEAN.1, "best"), Some(3.0), "{text}");
    assert_eq!(count(DIRTY.0, DIRTY.1, "timeout"), Some(1.0), "{text}");
    assert_eq!(count(DIRTY.0, DIRTY.1, "cleaner"), Some(1.0), "{text}");
    println!(
        "[{}] carbonshift_dispatches_total: 3 best ({}), 1 timeout and 1 cleaner ({})",
        n.ns, CLEAN.0, DIRTY.0
    );
}

/// `job` with the schedule both the dispatcher and worker-b's check read: Flexible Start,
/// 2 minutes of work, at most 10 minutes' delay.
fn scheduled(mut job: Job) -> Job {
    let a = [
        ("carbonshift.io/strategy", "FlexibleStart"),
        ("carbonshift.io/expected-duration", "2m"),
        ("carbonshift.io/max-delay", "10m"),
    ];
    job.metadata.annotations = Some(
        a.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    job
}

/// carbonshift's CRDs `plurals` on the cluster of kubeconfig `kc` (whichever cluster
/// `KUBECONFIG` names): an operator runs the CarbonAwareJob controller everywhere, and with
/// --kueue keeps CarbonWindows.
fn install_crds(kc: &str, plurals: &[&str]) {
    for plural in plurals {
        let file = format!("crds/carbonshift.io_{plural}.yaml");
        let crd = format!("crd/{plural}.carbonshift.io");
        cluster::apply_crd_with(&file, &crd, &[("KUBECONFIG", kc)]);
    }
}

/// The value of the sample of `name` with all of `labels`.
fn metric_line(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| want.iter().all(|x| l.contains(x.as_str())))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

fn window_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("carbonshift.io", "v1alpha1", "CarbonWindow"),
        "carbonwindows",
    )
}

/// On worker-b: parameters (Flexible Start, 2 min of work within 10 min, region DE) and the
/// carbon-window AdmissionCheck naming them, Active once its operator serves it.
async fn create_carbon_check(b: &Client, n: &Names) {
    let params: Api<DynamicObject> = Api::all_with(b.clone(), &params_resource());
    let spec = json!({"strategy": "FlexibleStart", "maxDelay": "10m", "expectedDuration": "2m", "region": DIRTY.1});
    let body = DynamicObject::new(&n.params, &params_resource()).data(json!({"spec": spec}));
    must(
        "create CarbonWindowParameters",
        params.create(&PostParams::default(), &body).await,
    );
    let spec = json!({
        "controllerName": "carbonshift.io/carbon-window",
        "parameters": {"apiGroup": "carbonshift.io", "kind": "CarbonWindowParameters", "name": n.params},
    });
    let checks = cluster_api(b, "AdmissionCheck");
    let check = object("AdmissionCheck", &n.carbon_check, spec);
    must(
        "create AdmissionCheck",
        checks.create(&PostParams::default(), &check).await,
    );
    wait_until(
        format!("AdmissionCheck {} Active on {}", n.carbon_check, DIRTY.0),
        Duration::from_secs(60),
        || async {
            let ac = json_of(&checks.get(&n.carbon_check).await?);
            Ok::<_, kube::Error>((condition(&ac, "Active") == Some("True")).then_some(()))
        },
    )
    .await;
}

/// The Jobs' copies on worker-b wait: quota reserved there, not admitted, the
/// carbon-window check Pending with carbonshift's reason, never deactivated; sampled every
/// 2 s until shortly before `window`.
async fn assert_wait_on_b(c: &Clusters, n: &Names, jobs: &[&Job], window: DateTime<Utc>) {
    let mut names = Vec::new();
    for job in jobs {
        let wl = manager_workload(c, n, job).await.unwrap_or_default();
        names.push(
            wl["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let api = namespaced_api(&c.workers[DIRTY.0], &n.ns, "Workload");
    let mut samples = vec![0; names.len()];
    while Utc::now() < window - chrono::TimeDelta::seconds(5) {
        for (i, name) in names.iter().enumerate() {
            let Ok(Some(copy)) = api.get_opt(name).await else {
                continue;
            };
            let copy = json_of(&copy);
            let entry = copy["status"]["admissionChecks"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"] == json!(n.carbon_check)))
                .cloned()
                .unwrap_or_default();
            let ours = entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("carbonshift: "));
            if entry["state"] == "Pending" && ours {
                assert_ne!(
                    condition(&copy, "Admitted"),
                    Some("True"),
                    "admitted before the window: {copy}"
                );
                assert_ne!(
                    copy["spec"]["active"],
                    json!(false),
                    "a copy is never deactivated: {copy}"
                );
                samples[i] += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (name, k) in names.iter().zip(&samples) {
        println!(
            "[{}] {name}: waiting on {} in {k} samples until {window}",
            n.ns, DIRTY.0
        );
        assert!(
            *k >= 3,
            "{name}: only {k} samples of the copy waiting on {}",
            DIRTY.0
        );
    }
}

/// The statuses of `count` CarbonWindows in `ns` once each is Succeeded (polled: MultiKueue
/// deletes a finished copy, and with it its CarbonWindow, soon after).
async fn finished_ledgers(b: &Client, ns: &str, count: usize) -> BTreeMap<String, Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(b.clone(), ns, &window_resource());
    let seen = std::sync::Mutex::new(BTreeMap::<String, Value>::new());
    let what = format!("{count} CarbonWindows Succeeded on {}", DIRTY.0);
    wait_until(what, Duration::from_secs(180), || async {
        let list = api.list(&ListParams::default()).await?;
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        for w in list.items {
            let v = json_of(&w);
            if v["status"]["phase"] == "Succeeded" {
                seen.insert(
                    w.metadata.name.clone().unwrap_or_default(),
                    v["status"].clone(),
                );
            }
        }
        Ok::<_, kube::Error>((seen.len() >= count).then(|| seen.clone()))
    })
    .await
}

fn condition_time(obj: &Value, type_: &str) -> DateTime<Utc> {
    let t = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == json!(type_)))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or_default();
    match DateTime::parse_from_rfc3339(t) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{type_} time {t:?}: {e}"),
    }
}

/// Both regions in one CSV around `p`: FR constant at `fr`; DE at `de` but for its clean
/// window, [`DE_WINDOW`] minutes after `p`, at [`DE_CLEAN`].
fn write_forecast(path: &std::path::Path, p: DateTime<Utc>, fr: f64, de: f64) {
    let a = Forecast::around(p, |_| fr).csv(CLEAN.1);
    let b =
        Forecast::around(p, |k| if DE_WINDOW.contains(&k) { DE_CLEAN } else { de }).csv(DIRTY.1);
    let body: String = b.lines().skip(1).map(|l| format!("{l}\n")).collect();
    // Write then rename, so the operator never reads half a file.
    let tmp = path.with_extension("tmp");
    must("write forecast", std::fs::write(&tmp, format!("{a}{body}")));
    must("rename forecast", std::fs::rename(&tmp, path));
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

fn created(job: &Job) -> DateTime<Utc> {
    job.metadata
        .creation_timestamp
        .as_ref()
        .map(carbonshift::api::time::from_time)
        .unwrap_or_else(Utc::now)
}

fn uid(job: &Job) -> String {
    job.metadata.uid.clone().unwrap_or_default()
}

async fn manager_workload(c: &Clusters, n: &Names, job: &Job) -> Option<Value> {
    let list = namespaced_api(&c.manager, &n.ns, "Workload")
        .list(&ListParams::default())
        .await
        .ok()?;
    owned_by(&list.items, &uid(job)).map(json_of)
}

/// When carbonshift nominated `cluster` (its annotation), or a panic naming the Workload.
fn nominated_at(wl: &Value, cluster: &str) -> DateTime<Utc> {
    let value = wl["metadata"]["annotations"][NOMINATED]
        .as_str()
        .unwrap_or_default();
    let (c, at) = value.split_once(' ').unwrap_or_default();
    assert_eq!(c, cluster, "{NOMINATED} is {value:?}: {wl}");
    match DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => panic!("{NOMINATED} {value:?}: {e}"),
    }
}

/// Waits until the Job's Workload is nominated to `cluster` alone, and not dispatched.
async fn nomination(c: &Clusters, n: &Names, job: &Job, cluster: &str) -> (DateTime<Utc>, Value) {
    nomination_within(c, n, job, cluster, Duration::from_secs(30)).await
}

async fn nomination_within(
    c: &Clusters,
    n: &Names,
    job: &Job,
    cluster: &str,
    within: Duration,
) -> (DateTime<Utc>, Value) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let wl = wait_until(
        format!("the Workload of Job {name} nominated to {cluster}"),
        within,
        || async {
            let wl = manager_workload(c, n, job).await;
            Ok::<_, String>(wl.filter(|w| {
                w["status"]["nominatedClusterNames"] == json!([cluster])
                    && w["status"]["clusterName"].is_null()
            }))
        },
    )
    .await;
    (nominated_at(&wl, cluster), wl)
}

/// Waits until the Job's Workload is admitted through `cluster` (`status.clusterName`, and
/// Admitted on the manager) and returns it.
async fn dispatched(c: &Clusters, n: &Names, job: &Job, cluster: &str, within: Duration) -> Value {
    let name = job.metadata.name.clone().unwrap_or_default();
    wait_until(
        format!("the Workload of Job {name} dispatched to {cluster}"),
        within,
        || async {
            let wl = manager_workload(c, n, job).await;
            Ok::<_, String>(wl.filter(|w| {
                w["status"]["clusterName"] == json!(cluster)
                    && condition(w, "Admitted") == Some("True")
            }))
        },
    )
    .await
}

/// The Job's Workload has a copy on `cluster` only, admitted there, and its Job runs there.
async fn assert_only_on(c: &Clusters, n: &Names, job: &Job, cluster: &str) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let wl = manager_workload(c, n, job).await.unwrap_or_default();
    let wl_name = wl["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (worker, client) in &c.workers {
        let copy = namespaced_api(client, &n.ns, "Workload")
            .get_opt(&wl_name)
            .await
            .ok()
            .flatten()
            .map(|w| json_of(&w));
        if *worker == cluster {
            let copy = must("copy on the chosen worker", copy.ok_or("no copy"));
            assert_eq!(condition(&copy, "Admitted"), Some("True"), "{copy}");
            let jobs: Api<Job> = Api::namespaced(client.clone(), &n.ns);
            wait_until(
                format!("Job {name} on {worker}"),
                Duration::from_secs(30),
                || jobs.get_opt(&name),
            )
            .await;
        } else {
            assert!(copy.is_none(), "a copy of {wl_name} on {worker}: {copy:?}");
        }
    }
}

async fn wait_pods_running(client: &Client, ns: &str, job: &str, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    wait_until(
        format!("{count} running pods of Job {job}"),
        Duration::from_secs(60),
        || async {
            let list = pods.list(&lp).await?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            Ok::<_, kube::Error>((running >= count).then_some(()))
        },
    )
    .await;
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = must(
        "namespace",
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"carbonshift.io/e2e": "true"}}}),
        ),
    );
    must(
        "create namespace",
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await,
    );
}

/// The worker queues (worker-a 2 GPUs, worker-b 4), the manager's MultiKueue check,
/// config and queue (8 GPUs), and the region labels of the MultiKueueClusters.
async fn set_up_queues(c: &Clusters, n: &Names) {
    for (worker, client) in &c.workers {
        create_namespace(client, &n.ns).await;
        create_flavor(client, &n.flavor).await;
        let (gpus, check) = if *worker == CLEAN.0 {
            ("2", None)
        } else {
            ("4", Some(n.carbon_check.as_str()))
        };
        create_cluster_queue(client, &n.ns, &n.queue, &n.flavor, check, gpus).await;
        create_local_queue(client, &n.ns, QUEUE, &n.queue).await;
    }
    for (worker, region) in [(CLEAN.0, CLEAN.1), (DIRTY.0, DIRTY.1)] {
        let patch = json!({"metadata": {"labels": {REGION_LABEL: region}}});
        must(
            "label MultiKueueCluster",
            cluster_api(&c.manager, "MultiKueueCluster")
                .patch(worker, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
    }
    let m = &c.manager;
    create_namespace(m, &n.ns).await;
    create_flavor(m, &n.flavor).await;
    let post = PostParams::default();
    let config = object(
        "MultiKueueConfig",
        &n.config,
        json!({"clusters": [CLEAN.0, DIRTY.0]}),
    );
    must(
        "create MultiKueueConfig",
        cluster_api(m, "MultiKueueConfig")
            .create(&post, &config)
            .await,
    );
    let check = object(
        "AdmissionCheck",
        &n.check,
        json!({
            "controllerName": "kueue.x-k8s.io/multikueue",
            "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig", "name": n.config},
        }),
    );
    must(
        "create AdmissionCheck",
        cluster_api(m, "AdmissionCheck").create(&post, &check).await,
    );
    create_cluster_queue(m, &n.ns, &n.queue, &n.flavor, Some(&n.check), "8").await;
    create_local_queue(m, &n.ns, QUEUE, &n.queue).await;
    for (client, what) in [(m, "manager")]
        .into_iter()
        .chain(c.workers.iter().map(|(w, c)| (c, *w)))
    {
        let api = cluster_api(client, "ClusterQueue");
        wait_until(
            format!("ClusterQueue {} Active on {what}", n.queue),
            Duration::from_secs(60),
            || async {
                let cq = json_of(&api.get(&n.queue).await?);
                Ok::<_, kube::Error>((condition(&cq, "Active") == Some("True")).then_some(()))
            },
        )
        .await;
    }
    println!(
        "[{}] queues Active: manager {} (MultiKueue check {}, dispatcher {DISPATCHER}), {} {} 2 GPUs, {} {} 4 GPUs",
        n.ns, n.queue, n.check, CLEAN.0, CLEAN.1, DIRTY.0, DIRTY.1
    );
}

/// Deletes what the test made, on every cluster (best effort).
async fn cleanup(c: &Clusters, n: &Names) {
    let dp = DeleteParams::background();
    let all = [&c.manager]
        .into_iter()
        .chain(c.workers.values())
        .collect::<Vec<_>>();
    for client in &all {
        let _ = Api::<Namespace>::all((*client).clone())
            .delete(&n.ns, &dp)
            .await;
    }
    for client in &all {
        let _ = cluster_api(client, "ClusterQueue")
            .delete(&n.queue, &dp)
            .await;
        let _ = cluster_api(client, "ResourceFlavor")
            .delete(&n.flavor, &dp)
            .await;
    }
    let _ = cluster_api(&c.manager, "AdmissionCheck")
        .delete(&n.check, &dp)
        .await;
    let _ = cluster_api(&c.manager, "MultiKueueConfig")
        .delete(&n.config, &dp)
        .await;
    let b = &c.workers[DIRTY.0];
    let _ = cluster_api(b, "AdmissionCheck")
        .delete(&n.carbon_check, &dp)
        .await;
    let _ = Api::<DynamicObject>::all_with(b.clone(), &params_resource())
        .delete(&n.params, &dp)
        .await;
}

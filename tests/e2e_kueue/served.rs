//! Step 4: `carbonshift run --kueue` serves the `carbonshift.io/carbon-window` AdmissionCheck:
//! the real operator binary, Kueue's real manager and JobSet controller, pods on kwok's GPU
//! nodes, on a forecast of 1-minute slots laid out around a minute boundary `p`:
//!
//! ```text
//! slot (min from p):  <0    0    1    2    3    4    5+
//! g/kWh:              400  100  100  500  500   90  200
//! ```
//!
//! - the AdmissionCheck, with CarbonWindowParameters `strategy: FlexibleStart, maxDelay: 8m`,
//!   is marked Active by carbonshift, and its ClusterQueue turns active;
//! - a Job of 2 pods, `expected-duration: 1m`, waits for the cleanest minute (p+4m): the
//!   Workload is held (`spec.active: false`, `carbonshift.io/held-until` exactly p+4m), it
//!   holds no quota meanwhile, and it is admitted at p+4m;
//! - a Job of 2 pods, `strategy: PauseAndResume`, `expected-duration: 3m`, runs at p, is
//!   held at p+2m until p+4m, which evicts it (one pause: the pods are deleted, the quota
//!   released), is admitted again at p+4m and completes;
//! - a 2-replica JobSet, like the first Job, waits for p+4m;
//! - a CarbonAwareJob like the first Job (`spec.schedule`), whose template carries the
//!   queue label, waits for p+4m the same way through its Job's Workload: held, no quota,
//!   admitted at p+4m, its check `Ready` as planned by the CarbonAwareJob, no CarbonWindow,
//!   the Job's `spec.suspend` written by Kueue alone, and its ledger its own status;
//! - from p+2m30s to p+3m45s the ClusterQueue reserves 0 GPUs, and all 8 after p+4m20s;
//! - the operator is SIGKILLed at p+4m30s and started again (it waits out the dead one's
//!   15 s Lease): the CarbonWindows keep their ledgers, and the jobs finish;
//! - each CarbonWindow ends Succeeded with a ledger that matches the forecast (runtime,
//!   energy, emissions as the integral of the samples, the run-now baseline), the Workloads
//!   carry the operator's Events, and `carbonshift_avoided_emissions_grams_total` of the
//!   namespace is the sum of the windows' avoided grams.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use carbonshift::api::window::CarbonWindow;
use carbonshift::api::{time, CarbonAwareJob, CarbonAwareJobStatus, Phase};
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::Event;

use super::common::forecast::{first_boundary, Forecast};
use super::common::kueue::params_resource;
use super::common::operator::{created_at, metric_value, rel_close, Operator, REGION};
use super::*;

/// 2 pods of 1 GPU at 400 W, PUE 1.2 (carbonshift's default power model), kW.
const POWER_KW: f64 = 2.0 * 0.4 * 1.2;
const AVOIDED: &str = "carbonshift_avoided_emissions_grams_total";

/// The three workloads, by their job object.
const FLEX: &str = "flex";
const PAUSE: &str = "pause";
const JOBSET: &str = "sweep";
/// A CarbonAwareJob whose template is for the queue (its child Job has its name).
const CAJ: &str = "planned";

fn intensity(k: i64) -> f64 {
    match k {
        k if k < 0 => 400.0,
        0 | 1 => 100.0,
        2 | 3 => 500.0,
        4 => 90.0,
        _ => 200.0,
    }
}

/// What one sample saw of a Workload: its check's entry and conditions, its CarbonWindow.
#[derive(Debug, Clone)]
struct Sample {
    at: DateTime<Utc>,
    check_state: String,
    /// `spec.active` (unset is active).
    active: bool,
    /// The `carbonshift.io/held-until` annotation, read.
    held_until: Option<DateTime<Utc>>,
    message: String,
    admitted: bool,
    reserved: bool,
    /// The CarbonWindow's `spec.created` (the job object's creation) and status.
    created: Option<DateTime<Utc>>,
    window: Option<CarbonAwareJobStatus>,
}

#[derive(Default)]
struct History {
    /// Samples by job object.
    workloads: BTreeMap<&'static str, Vec<Sample>>,
    /// (time, GPUs the ClusterQueue reserves).
    reserved_gpus: Vec<(DateTime<Utc>, i64)>,
    /// Workload name by job object.
    names: BTreeMap<&'static str, String>,
}

pub async fn carbonshift_serves_the_check(client: &Client, ns: &str, names: &Names) {
    cluster::install_crd();
    install_kueue_crds();
    let dir = must("tempdir", tempfile::tempdir());
    let p = first_boundary(Utc::now() + TimeDelta::seconds(45));
    let f = Forecast::around(p, intensity);
    let csv = dir.path().join("forecast.csv");
    f.write_csv(&csv, REGION);
    create_check(client, names).await;

    let provider: [&OsStr; 4] = [
        "--forecast-provider".as_ref(),
        "file".as_ref(),
        "--forecast-file".as_ref(),
        csv.as_os_str(),
    ];
    // Accrual written every 5 s, so that the samples see where in the forecast it accrued.
    let flags = ["--kueue", "--status-interval", "5s"];
    let spawn = |label: &str| Operator::spawn(ns, &provider, dir.path(), label, &flags, &[]);
    let mut operator = spawn("kueue-operator");
    operator.ready().await;
    let check = wait_check_active(client, &names.served_check).await;
    println!(
        "[{ns}] AdmissionCheck {} Active: {}",
        names.served_check,
        condition_field(&check, "Active", "message").unwrap_or_default()
    );
    create_cluster_queue(
        client,
        ns,
        &names.served_queue,
        &names.flavor,
        Some(&names.served_check),
        "8",
    )
    .await;
    create_local_queue(client, ns, "served", &names.served_queue).await;
    wait_queue_active(client, &names.served_queue, "True").await;

    let mut uids = create_workloads(client, ns).await;
    let created = Utc::now();
    assert!(
        created < p,
        "the jobs were created at {created}, after p = {p}: set-up took too long"
    );
    println!("[{ns}] 3 workloads and a CarbonAwareJob created at {created}; p = {p}");

    let mut history = History::default();
    let restart_at = p + TimeDelta::seconds(270);
    let give_up = p + TimeDelta::minutes(10);
    let mut restarted = false;
    loop {
        sample(client, ns, names, &mut uids, &mut history).await;
        if !restarted && Utc::now() >= restart_at {
            operator.kill();
            println!("[{ns}] operator SIGKILLed at {}", Utc::now());
            operator = spawn("kueue-operator-2");
            operator.ready().await;
            println!("[{ns}] operator started again, ready at {}", Utc::now());
            restarted = true;
        }
        if restarted && all_finished(&history) {
            break;
        }
        assert!(
            Utc::now() < give_up,
            "the workloads did not finish by p+10m: {}",
            describe(&history)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("{}", describe(&history));

    let flex = assert_waited_for(&history, FLEX, p, p + TimeDelta::minutes(4));
    let sweep = assert_waited_for(&history, JOBSET, p, p + TimeDelta::minutes(4));
    let planned = assert_waited_for(&history, CAJ, p, p + TimeDelta::minutes(4));
    assert_planned_by_its_carbon_aware_job(client, ns, &history).await;
    let pause = assert_paused_and_resumed(&history, p);
    assert_quota_released(&history, p);
    let mut avoided = 0.0;
    for (job, st, runtime) in [
        (FLEX, &flex, 50..=70),
        (JOBSET, &sweep, 50..=70),
        (CAJ, &planned, 50..=70),
        (PAUSE, &pause, 240..=285),
    ] {
        assert_window_ledger(&history, job, st, runtime, &f);
        avoided += st.avoided_grams;
    }
    let events = workload_events(client, ns, &history.names[PAUSE]).await;
    for reason in ["Started", "Paused", "Resumed", "Succeeded"] {
        assert!(
            events.iter().any(|r| r == reason),
            "the PauseAndResume Workload has no {reason} Event: {events:?}"
        );
    }
    let metrics = operator.scrape().await;
    let total = metric_value(&metrics, AVOIDED, &format!("namespace=\"{ns}\""));
    assert!(
        total.is_some_and(|t| (t - avoided).abs() < 0.01),
        "{AVOIDED} of {ns} is {total:?}, the CarbonWindows' avoidedGrams add up to {avoided}"
    );
    println!(
        "[{ns}] carbon-window check served: avoided {avoided:.3} g in all ({AVOIDED} {total:?}); \
         Events of the PauseAndResume Workload {events:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Set-up

/// The CarbonWindow and CarbonWindowParameters CRDs, as `kubectl apply` installs them.
fn install_kueue_crds() {
    for (file, crd) in [
        (
            "crds/carbonshift.io_carbonwindows.yaml",
            "crd/carbonwindows.carbonshift.io",
        ),
        (
            "crds/carbonshift.io_carbonwindowparameters.yaml",
            "crd/carbonwindowparameters.carbonshift.io",
        ),
    ] {
        cluster::apply_crd(file, crd);
    }
}

/// The CarbonWindowParameters and the AdmissionCheck that names them.
async fn create_check(client: &Client, names: &Names) {
    let params: Api<DynamicObject> = Api::all_with(client.clone(), &params_resource());
    let body = DynamicObject::new(&names.params, &params_resource())
        .data(json!({"spec": {"strategy": "FlexibleStart", "maxDelay": "8m"}}));
    must(
        "create CarbonWindowParameters",
        params.create(&PostParams::default(), &body).await,
    );
    let spec = json!({
        "controllerName": CONTROLLER_NAME,
        "parameters": {
            "apiGroup": "carbonshift.io",
            "kind": "CarbonWindowParameters",
            "name": names.params,
        },
    });
    must(
        "create AdmissionCheck",
        cluster_api(client, "AdmissionCheck")
            .create(
                &PostParams::default(),
                &object("AdmissionCheck", &names.served_check, spec),
            )
            .await,
    );
}

/// Deletes the CarbonWindowParameters, if created.
pub async fn delete_params(client: &Client, name: &str) {
    let params: Api<DynamicObject> = Api::all_with(client.clone(), &params_resource());
    match params.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => panic!("delete CarbonWindowParameters {name}: {err}"),
    }
}

async fn wait_check_active(client: &Client, name: &str) -> Value {
    let api = cluster_api(client, "AdmissionCheck");
    wait_until(
        format!("AdmissionCheck {name} marked Active by carbonshift"),
        STEP,
        || async {
            let ac = json_of(&api.get(name).await?);
            let ok = condition(&ac, "Active") == Some("True")
                && condition_field(&ac, "Active", "reason") == Some("Active");
            Ok::<_, kube::Error>(ok.then_some(ac))
        },
    )
    .await
}

/// The Jobs FLEX and PAUSE and the JobSet JOBSET in LocalQueue `served`; their uids.
async fn create_workloads(client: &Client, ns: &str) -> BTreeMap<&'static str, String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let annotate = |mut job: Job, pairs: &[(&str, &str)]| {
        job.metadata.annotations = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        job
    };
    let flex = annotate(
        gpu_job(FLEX, "served", 2, "60s"),
        &[("carbonshift.io/expected-duration", "1m")],
    );
    let pause = annotate(
        gpu_job(PAUSE, "served", 2, "150s"),
        &[
            ("carbonshift.io/strategy", "PauseAndResume"),
            ("carbonshift.io/expected-duration", "3m"),
        ],
    );
    let mut uids = BTreeMap::new();
    for (name, job) in [(FLEX, flex), (PAUSE, pause)] {
        let job = create_job(&jobs, job).await;
        uids.insert(name, job.metadata.uid.unwrap_or_default());
    }
    let jobsets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &jobset_resource());
    let spec = json!({"replicatedJobs": [{
        "name": "workers",
        "replicas": 2,
        "template": {"spec": gpu_job("unused", "served", 1, "60s").spec},
    }]});
    let mut js = DynamicObject::new(JOBSET, &jobset_resource()).data(json!({"spec": spec}));
    js.metadata.labels = Some([(QUEUE_NAME.to_owned(), "served".to_owned())].into());
    js.metadata.annotations = Some(
        [(
            "carbonshift.io/expected-duration".to_owned(),
            "1m".to_owned(),
        )]
        .into(),
    );
    let js = must(
        "create JobSet",
        jobsets.create(&PostParams::default(), &js).await,
    );
    uids.insert(JOBSET, js.metadata.uid.unwrap_or_default());
    create_carbon_aware_job(client, ns).await;
    uids
}

/// CAJ: a CarbonAwareJob like FLEX (2 pods of a GPU for 60 s, `expectedDuration: 1m`,
/// `maxDelay: 8m`) whose template carries the queue label, so its Job goes through Kueue.
async fn create_carbon_aware_job(client: &Client, ns: &str) {
    let job = gpu_job("unused", "served", 2, "60s");
    let caj = json!({
        "apiVersion": "carbonshift.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": CAJ},
        "spec": {
            "schedule": {"strategy": "FlexibleStart", "expectedDuration": "1m", "maxDelay": "8m"},
            "power": {"gpus": 2, "wattsPerGpu": 400.0, "pue": 1.2},
            "template": {
                "metadata": {"labels": {QUEUE_NAME: "served"}},
                "spec": job.spec,
            },
        },
    });
    let cajs: Api<CarbonAwareJob> = Api::namespaced(client.clone(), ns);
    must(
        "create CarbonAwareJob",
        cajs.create(
            &PostParams::default(),
            &must("CarbonAwareJob", serde_json::from_value(caj)),
        )
        .await,
    );
}

// ------------------------------------------------------------------------------------------
// Sampling

async fn sample(
    client: &Client,
    ns: &str,
    names: &Names,
    uids: &mut BTreeMap<&'static str, String>,
    h: &mut History,
) {
    let at = Utc::now();
    let cajs: Api<CarbonAwareJob> = Api::namespaced(client.clone(), ns);
    let caj = must("get CarbonAwareJob", cajs.get_opt(CAJ).await);
    if !uids.contains_key(CAJ) {
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        if let Some(uid) = must("get Job", jobs.get_opt(CAJ).await).and_then(|j| j.metadata.uid) {
            uids.insert(CAJ, uid);
        }
    }
    let workloads = must(
        "list Workloads",
        namespaced_api(client, ns, "Workload")
            .list(&ListParams::default())
            .await,
    );
    let windows: Api<CarbonWindow> = Api::namespaced(client.clone(), ns);
    for (job, uid) in uids.iter() {
        let job: &'static str = job;
        let Some(wl) = owned_by(&workloads.items, uid).map(json_of) else {
            continue;
        };
        let name = wl["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let window = must("get CarbonWindow", windows.get_opt(&name).await);
        // The CarbonAwareJob's ledger is its own status (it has no CarbonWindow; that
        // there is none is asserted at the end).
        let (created, window) = match (job, &caj) {
            (CAJ, Some(c)) => (Some(created_at(c)), c.status.clone()),
            _ => (
                window.as_ref().map(|w| time::from_time(&w.spec.created)),
                window.and_then(|w| w.status),
            ),
        };
        h.names.insert(job, name);
        let entry = wl["status"]["admissionChecks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == names.served_check.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let held = &wl["metadata"]["annotations"]["carbonshift.io/held-until"];
        let held_until = (!held.is_null()).then(|| parse_time(held, "held-until annotation"));
        h.workloads.entry(job).or_default().push(Sample {
            at,
            check_state: entry["state"].as_str().unwrap_or("-").to_owned(),
            active: wl["spec"]["active"].as_bool().unwrap_or(true),
            held_until,
            message: entry["message"].as_str().unwrap_or_default().to_owned(),
            admitted: condition(&wl, "Admitted") == Some("True"),
            reserved: condition(&wl, "QuotaReserved") == Some("True"),
            created,
            window,
        });
    }
    let cq = json_of(&must(
        "get ClusterQueue",
        cluster_api(client, "ClusterQueue")
            .get(&names.served_queue)
            .await,
    ));
    let gpus = flavor_total(&cq, "flavorsReservation", &names.flavor, GPU)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    h.reserved_gpus.push((at, gpus));
}

fn finished(s: &Sample) -> bool {
    s.window
        .as_ref()
        .and_then(|w| w.phase)
        .is_some_and(Phase::is_terminal)
}

fn all_finished(h: &History) -> bool {
    [FLEX, PAUSE, JOBSET, CAJ].iter().all(|job| {
        h.workloads
            .get(job)
            .and_then(|s| s.last())
            .is_some_and(finished)
    })
}

/// Each workload's changes of check state, admission and phase, one line each.
fn describe(h: &History) -> String {
    let mut out = String::new();
    for (job, samples) in &h.workloads {
        let mut last = String::new();
        for s in samples {
            let phase = s.window.as_ref().and_then(|w| w.phase);
            let line = format!(
                "check {} active {} held-until {:?} reserved {} admitted {} phase {phase:?}: {}",
                s.check_state,
                s.active,
                s.held_until.map(|t| t.format("%H:%M:%S").to_string()),
                s.reserved,
                s.admitted,
                s.message
            );
            if line != last {
                out.push_str(&format!(
                    "  {job} {}: {line}\n",
                    s.at.format("%H:%M:%S%.3f")
                ));
                last = line;
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Assertions

fn samples<'a>(h: &'a History, job: &str) -> &'a [Sample] {
    h.workloads.get(job).map(Vec::as_slice).unwrap_or_default()
}

/// The first sample at or after `t` that shows the Workload admitted.
fn admitted_after(h: &History, job: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    let s = samples(h, job)
        .iter()
        .find(|s| s.at >= t && s.admitted)
        .unwrap_or_else(|| panic!("{job} is never admitted after {t}:\n{}", describe(h)));
    s.at
}

/// The last status of the job's CarbonWindow, which must be Succeeded.
fn final_status(h: &History, job: &str) -> CarbonAwareJobStatus {
    let st = samples(h, job)
        .last()
        .and_then(|s| s.window.clone())
        .unwrap_or_else(|| panic!("{job} has no CarbonWindow"));
    assert_eq!(
        st.phase,
        Some(Phase::Succeeded),
        "{job}: {st:?}\n{}",
        describe(h)
    );
    st
}

/// A FlexibleStart workload that waits for `start`: while waiting it is never admitted,
/// it is held (deactivated, `held-until` the start to the second) and reserves no quota,
/// and it is admitted within 15 s of `start`.
fn assert_waited_for(
    h: &History,
    job: &str,
    p: DateTime<Utc>,
    start: DateTime<Utc>,
) -> CarbonAwareJobStatus {
    let waiting: Vec<&Sample> = samples(h, job).iter().filter(|s| s.at < start).collect();
    assert!(
        waiting.len() > 60,
        "{job}: only {} samples before {start}",
        waiting.len()
    );
    assert!(
        waiting.iter().all(|s| !s.admitted),
        "{job} was admitted before {start}:\n{}",
        describe(h)
    );
    let held: Vec<&Sample> = waiting
        .iter()
        .copied()
        .filter(|s| s.at >= p && s.at < start - TimeDelta::seconds(2))
        .collect();
    assert!(
        held.len() > 60
            && held
                .iter()
                .all(|s| !s.active && s.held_until == Some(start)),
        "{job}: not held until {start} in every sample from p to the start:\n{}",
        describe(h)
    );
    assert_says_why(h, job, &held, start);
    // No quota while waiting: not reserved in the samples from p to the start (a
    // reservation at creation is released by the hold).
    let reserved = waiting.iter().filter(|s| s.at >= p && s.reserved).count();
    assert_eq!(
        reserved,
        0,
        "{job} held quota while waiting:\n{}",
        describe(h)
    );
    let admitted = admitted_after(h, job, start);
    let late = (admitted - start).num_seconds();
    assert!(
        (0..=15).contains(&late),
        "{job} admitted {late} s after the planned start {start}"
    );
    let st = final_status(h, job);
    assert_eq!(st.pauses, 0, "{job}: {st:?}");
    println!(
        "[{job}] waited: {} samples before {start} unadmitted, {} held until {start}, \
         admitted {late} s after the planned start",
        waiting.len(),
        held.len()
    );
    st
}

/// Every one of `held` (more than 60 samples) shows the check Pending with a message of
/// carbonshift's that names the planned instant `until`.
fn assert_says_why<S: std::ops::Deref<Target = Sample>>(
    h: &History,
    job: &str,
    held: &[S],
    until: DateTime<Utc>,
) {
    let when = until.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let says = |s: &Sample| {
        s.check_state == "Pending"
            && s.message.starts_with("carbonshift: ")
            && s.message.contains(&when)
    };
    assert!(
        held.len() > 60 && held.iter().all(|s| says(s)),
        "{job}: not every held sample's check says it waits for {when}:\n{}",
        describe(h)
    );
}

/// The PauseAndResume workload: admitted at p, held (deactivated) at p+2m until p+4m,
/// which evicts it, admitted again at p+4m; one pause.
fn assert_paused_and_resumed(h: &History, p: DateTime<Utc>) -> CarbonAwareJobStatus {
    let s = samples(h, PAUSE);
    let first = admitted_after(h, PAUSE, p - TimeDelta::seconds(5));
    let first_late = (first - p).num_seconds();
    assert!(
        (0..=15).contains(&first_late),
        "{PAUSE} first admitted {first_late} s after p:\n{}",
        describe(h)
    );
    let pause = p + TimeDelta::minutes(2);
    let resume = p + TimeDelta::minutes(4);
    let before_pause = s
        .iter()
        .filter(|x| x.at >= first && x.at < pause - TimeDelta::seconds(2));
    assert!(
        before_pause.clone().count() > 60 && before_pause.clone().all(|x| x.admitted),
        "{PAUSE} not admitted throughout its first run (p to p+2m):\n{}",
        describe(h)
    );
    let evicted = s
        .iter()
        .find(|x| x.at > first && !x.admitted)
        .unwrap_or_else(|| panic!("{PAUSE} never evicted:\n{}", describe(h)));
    let evicted_late = (evicted.at - pause).num_seconds();
    assert!(
        (0..=10).contains(&evicted_late),
        "{PAUSE} evicted {evicted_late} s after the planned pause at {pause}:\n{}",
        describe(h)
    );
    let held = s
        .iter()
        .filter(|x| x.at >= evicted.at && x.at < resume - TimeDelta::seconds(2));
    assert!(
        held.clone().count() > 60
            && held
                .clone()
                .all(|x| !x.active && x.held_until == Some(resume)),
        "{PAUSE}: not held until {resume} throughout its pause:\n{}",
        describe(h)
    );
    let noted: Vec<&Sample> = held
        .clone()
        .filter(|x| x.at >= evicted.at + TimeDelta::seconds(5))
        .collect();
    assert_says_why(h, PAUSE, &noted, resume);
    let during = s
        .iter()
        .filter(|x| x.at >= evicted.at && x.at < resume)
        .filter(|x| x.admitted)
        .count();
    assert_eq!(
        during,
        0,
        "{PAUSE} admitted during its pause:\n{}",
        describe(h)
    );
    let again = admitted_after(h, PAUSE, resume);
    let again_late = (again - resume).num_seconds();
    assert!(
        (0..=15).contains(&again_late),
        "{PAUSE} admitted again {again_late} s after the planned resume"
    );
    let st = final_status(h, PAUSE);
    assert_eq!(st.pauses, 1, "{PAUSE}: {st:?}");
    println!(
        "[{PAUSE}] admitted {first_late} s after p, evicted {evicted_late} s after p+2m, \
         held until {resume}, admitted again {again_late} s after p+4m; pauses {}",
        st.pauses
    );
    st
}

/// The CarbonAwareJob's Workload: its check was set Ready by the Workload controller as
/// planned by the CarbonAwareJob (no CarbonWindow of its own), and Kueue, not carbonshift,
/// unsuspended its Job (the Job's `spec.suspend` has only Kueue's field manager).
async fn assert_planned_by_its_carbon_aware_job(client: &Client, ns: &str, h: &History) {
    let ready = samples(h, CAJ)
        .iter()
        .find(|s| s.check_state == "Ready")
        .unwrap_or_else(|| panic!("{CAJ}: its check is never Ready:\n{}", describe(h)));
    assert_eq!(
        ready.message,
        format!("carbonshift: planned by CarbonAwareJob {CAJ}"),
        "{CAJ}: the check's message"
    );
    let windows: Api<CarbonWindow> = Api::namespaced(client.clone(), ns);
    let name = &h.names[CAJ];
    let window = must("get CarbonWindow", windows.get_opt(name).await);
    assert!(
        window.is_none(),
        "{CAJ}: a CarbonWindow {name} was made for a CarbonAwareJob's Workload"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = must("get Job", jobs.get(CAJ).await);
    let suspend_managers: Vec<String> = job
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:suspend").is_some())
        })
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        !suspend_managers.iter().any(|m| m.contains("carbonshift")) && !suspend_managers.is_empty(),
        "{CAJ}: spec.suspend of its Job is managed by {suspend_managers:?}, want Kueue's alone"
    );
    println!(
        "[{CAJ}] check Ready as planned by the CarbonAwareJob at {}, no CarbonWindow, \
         spec.suspend managed by {suspend_managers:?}",
        ready.at
    );
}

/// From p+2m30s to p+3m45s nothing runs: the ClusterQueue reserves no GPU. Before (p+30s
/// to p+1m30s) it reserves the PauseAndResume job's 2, after (p+4m20s to p+4m30s) all 8.
fn assert_quota_released(h: &History, p: DateTime<Utc>) {
    let at = |from: i64, to: i64| -> Vec<i64> {
        h.reserved_gpus
            .iter()
            .filter(|(t, _)| *t >= p + TimeDelta::seconds(from) && *t < p + TimeDelta::seconds(to))
            .map(|(_, g)| *g)
            .collect()
    };
    for (from, to, gpus) in [(30, 90, 2), (150, 225, 0), (260, 270, 8)] {
        let seen = at(from, to);
        assert!(
            seen.len() >= ((to - from) / 2) as usize && seen.iter().all(|g| *g == gpus),
            "ClusterQueue GPUs reserved from p+{from}s to p+{to}s: {seen:?}, want {gpus}"
        );
        println!(
            "ClusterQueue reserved {gpus} GPUs in all {} samples from p+{from}s to p+{to}s",
            seen.len()
        );
    }
}

/// A finished CarbonWindow's ledger: runtime in `runtime`; energy the power times it;
/// emissions the forecast integrated over the runtime the samples saw accrue (each write's
/// runtime increase at the forecast's mean over its span); the baseline running at once
/// from creation; avoided the difference.
fn assert_window_ledger(
    h: &History,
    job: &str,
    st: &CarbonAwareJobStatus,
    runtime: std::ops::RangeInclusive<i64>,
    f: &Forecast,
) {
    assert!(
        runtime.contains(&st.runtime_seconds),
        "{job}: runtimeSeconds {} not in {runtime:?}",
        st.runtime_seconds
    );
    // runtimeSeconds is whole seconds, rounded at each write, while energy accrues exactly
    // (a pod Ready for part of a second counts its share): the two agree to one second.
    let energy_secs = st.energy_kwh / POWER_KW * 3600.0;
    assert!(
        (energy_secs - st.runtime_seconds as f64).abs() <= 1.0 + 1e-6,
        "{job}: energyKWh {} is {energy_secs:.2} s at {POWER_KW} kW, runtimeSeconds {}",
        st.energy_kwh,
        st.runtime_seconds
    );
    // Each write of the ledger accrued its runtime increase between the previous write's
    // lastAccountedTime (or the run's start, when later) and its own.
    let mut sampled = 0.0;
    let mut last: Option<(DateTime<Utc>, i64)> = None;
    for w in samples(h, job).iter().filter_map(|s| s.window.as_ref()) {
        let Some(at) = w.last_accounted_time.as_ref().map(time::from_time) else {
            continue;
        };
        if let Some((t0, r0)) = last {
            let from = w
                .running_since
                .as_ref()
                .map(time::from_time)
                .map_or(t0, |r| r.max(t0));
            let dr = (w.runtime_seconds - r0).max(0) as f64;
            // The forecast's mean over the write's span (the pods ran throughout it).
            let hours = (at - from).num_milliseconds() as f64 / 3.6e6;
            let mean = if hours > 0.0 {
                f.integral(from, at) / hours
            } else {
                f.at(at)
            };
            sampled += POWER_KW * mean * dr / 3600.0;
        }
        last = Some((at, w.runtime_seconds));
    }
    assert!(
        rel_close(st.emissions_grams, sampled, 0.05),
        "{job}: emissionsGrams {} but its runtime accrual as sampled, at the forecast, gives {sampled}",
        st.emissions_grams
    );
    let created = samples(h, job)
        .iter()
        .find_map(|s| s.created)
        .unwrap_or_else(|| panic!("{job}: no CarbonWindow sampled"));
    let net = st.runtime_seconds - st.restore_seconds.unwrap_or(0);
    let baseline = POWER_KW * f.integral(created, created + TimeDelta::seconds(net));
    assert!(
        rel_close(st.baseline_grams, baseline, 0.05),
        "{job}: baselineGrams {} but {net} s at once from creation ({created}) gives {baseline}",
        st.baseline_grams
    );
    assert!(
        (st.avoided_grams - (st.baseline_grams - st.emissions_grams)).abs() < 1e-6,
        "{job}: avoidedGrams {} != baselineGrams {} - emissionsGrams {}",
        st.avoided_grams,
        st.baseline_grams,
        st.emissions_grams
    );
    println!(
        "[{job}] ledger: runtime {} s, energy {:.5} kWh, emissions {:.3} g (sampled {sampled:.3}), \
         baseline {:.3} g (forecast {baseline:.3}), avoided {:.3} g",
        st.runtime_seconds, st.energy_kwh, st.emissions_grams, st.baseline_grams, st.avoided_grams
    );
}

async fn workload_events(client: &Client, ns: &str, workload: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={workload}"));
    must("list Events", api.list(&lp).await)
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Workload"))
        .filter_map(|e| e.reason)
        .collect()
}

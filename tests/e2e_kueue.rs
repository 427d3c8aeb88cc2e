//! End-to-end test of the Kueue manager that `hack/cluster.sh up --kueue` runs beside the
//! local control plane: Kueue's real webhooks, scheduler and Job integration, with the real
//! Job controller and kube-scheduler, and kwok playing the GPU nodes' kubelets. It is the
//! ground the operator's Kueue AdmissionCheck controller (`carbonshift.io/carbon-window`)
//! stands on, and then that controller: `carbonshift run --kueue`.
//!
//! Runs only with `CARBONSHIFT_E2E=1` and Kueue running in the cluster (else it is skipped,
//! or fails when `CARBONSHIFT_E2E_KUEUE=1` requires it):
//! ```text
//! hack/cluster.sh up --kueue && eval "$(hack/cluster.sh env)"
//! CARBONSHIFT_E2E=1 CARBONSHIFT_E2E_KUEUE=1 cargo test --test e2e_kueue -- --nocapture
//! ```
//!
//! What it shows, in a namespace of its own and with cluster-scoped objects of unique names,
//! all deleted at the end (also when an assertion fails):
//! 1. quota: a ClusterQueue of 8 `nvidia.com/gpu`; a 4-pod, 1-GPU-a-pod Job created with
//!    `suspend` unset is suspended by Kueue's webhook, gets a Workload that is admitted, is
//!    unsuspended and runs 4 pods on the kwok nodes; the ClusterQueue then counts 4 GPUs in
//!    use and 1 admitted Workload. An 8-GPU Job in the same queue stays suspended (the
//!    ClusterQueue counts 1 pending Workload) until the first Job completes (its pods run
//!    for [`FIRST_RUN_FOR`], by kwok's `run-for` stage), and is admitted then, with 8 GPUs in
//!    use;
//! 2. JobSet: a 2-replica JobSet of 1-GPU pods in the same queue is suspended by Kueue's
//!    webhook, admitted as one Workload of 2 pods, and run by the JobSet controller as two
//!    child Jobs; the ClusterQueue counts 2 GPUs;
//! 3. admission check: a second ClusterQueue with an AdmissionCheck of controller
//!    `carbonshift.io/carbon-window`. Kueue keeps the queue inactive until the check's
//!    controller marks the AdmissionCheck Active; the test plays that one step of the
//!    controller. A Job there then gets a Workload with quota reserved (QuotaReserved True,
//!    Admitted not True) whose `status.admissionChecks` holds the check in state Pending, and
//!    the Job stays suspended with no pod: the state the controller acts on;
//! 4. `carbonshift run --kueue` serving a check of its own: Flexible Start and Pause and
//!    Resume of Jobs and a JobSet through the check's `Ready` and holds (deactivation), the
//!    quota released while they wait, an operator restart, and each CarbonWindow's ledger against the
//!    forecast (see `e2e_kueue/served.rs`).

mod common;
#[path = "e2e_kueue/served.rs"]
mod served;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::cluster::{self, job_has_condition, job_pods_selector, must, wait_until};
use common::cluster::{TestNamespace, GPU};
use common::kueue::{
    self, cluster_api, condition, condition_field, create_cluster_queue, create_flavor, create_job,
    create_local_queue, flavor_total, gpu_job, json_of, namespaced_api, object, owned_by,
    status_count, KWOK_LABEL, QUEUE_NAME,
};
use futures::FutureExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use serde_json::{json, Value};

/// How long the first Job's pods run (kwok's `run-for`), and so how long the second waits.
const FIRST_RUN_FOR: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(60);
const CONTROLLER_NAME: &str = "carbonshift.io/carbon-window";

/// Names of what the test creates outside its namespace.
struct Names {
    flavor: String,
    gpu_queue: String,
    carbon_queue: String,
    check: String,
    /// Step 4's: the AdmissionCheck carbonshift serves, its ClusterQueue and parameters.
    served_check: String,
    served_queue: String,
    params: String,
}

#[tokio::test]
async fn kueue_quota_and_admission_check() {
    if !cluster::enabled() {
        return;
    }
    let _logs = cluster::LogsOnFailure;
    let client = cluster::client().await;
    if !kueue::enabled(&client).await {
        return;
    }
    let started = Instant::now();
    let ns = TestNamespace::create(&client, "e2e-kueue").await;
    let names = Names {
        flavor: cluster::unique_name("e2e-kueue-gpu"),
        gpu_queue: cluster::unique_name("e2e-kueue-gpus"),
        carbon_queue: cluster::unique_name("e2e-kueue-carbon"),
        check: cluster::unique_name("e2e-kueue-carbon-window"),
        served_check: cluster::unique_name("e2e-kueue-served"),
        served_queue: cluster::unique_name("e2e-kueue-served"),
        params: cluster::unique_name("e2e-kueue-params"),
    };
    let outcome = AssertUnwindSafe(scenario(&client, &ns.name, &names))
        .catch_unwind()
        .await;
    cleanup(&client, ns, &names).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    println!(
        "e2e_kueue passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn scenario(client: &Client, ns: &str, names: &Names) {
    create_flavor(client, &names.flavor).await;
    create_cluster_queue(client, ns, &names.gpu_queue, &names.flavor, None, "8").await;
    create_local_queue(client, ns, "gpus", &names.gpu_queue).await;
    wait_queue_active(client, &names.gpu_queue, "True").await;
    quota_admits_then_queues(client, ns, names).await;
    jobset_runs_under_kueue(client, ns, names).await;
    admission_check_holds_workload(client, ns, names).await;
    served::carbonshift_serves_the_check(client, ns, names).await;
}

// ------------------------------------------------------------------------------------------
// 1. Quota: admission, usage, a pending Workload admitted when the first finishes

async fn quota_admits_then_queues(client: &Client, ns: &str, names: &Names) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let run_for = format!("{}s", FIRST_RUN_FOR.as_secs());

    // The first Job: 4 pods of 1 GPU each, created without `suspend`.
    let first = create_job(&jobs, gpu_job("first", "gpus", 4, &run_for)).await;
    assert_eq!(
        first.spec.as_ref().and_then(|s| s.suspend),
        Some(true),
        "Kueue's mutating webhook suspends a queued Job on creation (the request had no suspend)"
    );
    let first_uid = first.metadata.uid.clone().unwrap_or_default();
    let t0 = Instant::now();
    let wl = wait_workload(client, ns, &first_uid, "Admitted", "True").await;
    let admitted_after = t0.elapsed().as_secs_f64();
    let assignment = &wl["status"]["admission"]["podSetAssignments"][0];
    assert_eq!(
        wl["status"]["admission"]["clusterQueue"], names.gpu_queue,
        "admitted to {}; {wl}",
        names.gpu_queue
    );
    assert_eq!(assignment["count"], 4, "4 pods admitted; {assignment}");
    assert_eq!(
        assignment["flavors"][GPU], names.flavor,
        "GPUs from flavor {}; {assignment}",
        names.flavor
    );
    assert_eq!(
        assignment["resourceUsage"][GPU], "4",
        "4 GPUs admitted; {assignment}"
    );

    // Kueue unsuspends it; the Job controller creates 4 pods, scheduled on kwok nodes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let running = wait_running(&pods, "first", 4).await;
    let job = must("get Job first", jobs.get("first").await);
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(false));
    for pod in &running {
        let selector = pod.spec.as_ref().and_then(|s| s.node_selector.clone());
        assert_eq!(
            selector
                .as_ref()
                .and_then(|s| s.get(KWOK_LABEL.0))
                .map(String::as_str),
            Some(KWOK_LABEL.1),
            "pod {:?} selects the kwok nodes",
            pod.metadata.name
        );
    }

    // The ClusterQueue counts 4 GPUs (and 4 CPUs, 4 GiB) in use by 1 admitted Workload.
    let cq = wait_queue(client, &names.gpu_queue, "4 GPUs in use", |cq| {
        flavor_total(cq, "flavorsUsage", &names.flavor, GPU).as_deref() == Some("4")
    })
    .await;
    assert_eq!(status_count(&cq, "admittedWorkloads"), Some(1), "{cq}");
    assert_eq!(status_count(&cq, "pendingWorkloads"), Some(0), "{cq}");
    let usage = |r: &str| flavor_total(&cq, "flavorsUsage", &names.flavor, r);
    assert_eq!(usage("cpu").as_deref(), Some("4"), "{cq}");
    assert_eq!(usage("memory").as_deref(), Some("4Gi"), "{cq}");
    println!(
        "[{ns}] first Job: admitted {admitted_after:.1} s after creation, 4 pods running, \
         ClusterQueue usage {GPU}=4 cpu=4 memory=4Gi"
    );

    // The second Job asks for 8 GPUs while 4 of the 8 are in use: it must wait.
    let second = create_job(&jobs, gpu_job("second", "gpus", 8, "5s")).await;
    let second_uid = second.metadata.uid.clone().unwrap_or_default();
    let second_created = Instant::now();
    let wl = wait_workload(client, ns, &second_uid, "QuotaReserved", "False").await;
    let cq = wait_queue(client, &names.gpu_queue, "1 pending Workload", |cq| {
        status_count(cq, "pendingWorkloads") == Some(1)
    })
    .await;
    assert_eq!(status_count(&cq, "admittedWorkloads"), Some(1), "{cq}");
    let why = condition_field(&wl, "QuotaReserved", "message").unwrap_or_default();
    // 8 asked for, 8 - 4 free: 4 more needed.
    assert!(
        why.contains(GPU) && why.contains("4 more needed"),
        "the pending Workload says it needs 4 more GPUs: {why:?}"
    );
    println!("[{ns}] second Job pending: {why}");

    // Until the first Job completes, the second stays suspended with no pod.
    let first_done = loop {
        let first = must("get Job first", jobs.get("first").await);
        if job_has_condition(&first, "Complete") {
            break first;
        }
        let second = must("get Job second", jobs.get("second").await);
        assert_eq!(
            second.spec.as_ref().and_then(|s| s.suspend),
            Some(true),
            "second Job unsuspended while the first still holds 4 of the 8 GPUs"
        );
        let n = job_pods(&pods, "second").await.len();
        assert_eq!(n, 0, "second Job has {n} pods while it waits");
        assert!(
            second_created.elapsed() < FIRST_RUN_FOR + STEP,
            "the first Job did not complete within {:?}",
            FIRST_RUN_FOR + STEP
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let wl = wait_workload(client, ns, &second_uid, "Admitted", "True").await;
    let waited = second_created.elapsed().as_secs_f64();
    let completed = must("Job as JSON", serde_json::to_value(&first_done));
    let completed = parse_time(
        &completed["status"]["completionTime"],
        "Job first completionTime",
    );
    let admitted = condition_time(&wl, "Admitted");
    let lag = (admitted - completed).num_milliseconds() as f64 / 1000.0;
    assert!(
        lag >= -1.0,
        "second Workload admitted at {admitted}, before the first Job completed at {completed}"
    );
    assert!(
        lag <= 30.0,
        "second Workload admitted {lag} s after the first Job completed"
    );
    // It waited out the first Job's run (less the seconds that Job had already run).
    let min_wait = FIRST_RUN_FOR.as_secs_f64() - admitted_after - 10.0;
    assert!(
        waited >= min_wait,
        "second Job waited {waited:.1} s, less than the {min_wait:.1} s the first had left"
    );
    assert_eq!(
        wl["status"]["admission"]["podSetAssignments"][0]["count"], 8,
        "8 pods admitted; {wl}"
    );
    let cq = wait_queue(client, &names.gpu_queue, "8 GPUs in use", |cq| {
        flavor_total(cq, "flavorsUsage", &names.flavor, GPU).as_deref() == Some("8")
    })
    .await;
    assert_eq!(status_count(&cq, "pendingWorkloads"), Some(0), "{cq}");
    assert_eq!(status_count(&cq, "admittedWorkloads"), Some(1), "{cq}");
    let running = wait_running(&pods, "second", 8).await;
    println!(
        "[{ns}] second Job: waited {waited:.1} s, admitted {lag:.1} s after the first Job \
         completed, {} pods running, ClusterQueue usage {GPU}=8",
        running.len()
    );
}

// ------------------------------------------------------------------------------------------
// 2. A JobSet, queued by Kueue and run by the JobSet controller

async fn jobset_runs_under_kueue(client: &Client, ns: &str, names: &Names) {
    let jobsets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &jobset_resource());
    let spec = json!({"replicatedJobs": [{
        "name": "workers",
        "replicas": 2,
        "template": {"spec": gpu_job("unused", "gpus", 1, "1h").spec},
    }]});
    let mut js = DynamicObject::new("trainers", &jobset_resource()).data(json!({"spec": spec}));
    js.metadata.labels = Some([(QUEUE_NAME.to_owned(), "gpus".to_owned())].into());
    let created = must(
        "create JobSet",
        jobsets.create(&PostParams::default(), &js).await,
    );
    let created = json_of(&created);
    assert_eq!(
        created["spec"]["suspend"],
        json!(true),
        "Kueue's JobSet webhook suspends a queued JobSet on creation; {created}"
    );
    let uid = created["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let t0 = Instant::now();
    let wl = wait_workload(client, ns, &uid, "Admitted", "True").await;
    let admitted_after = t0.elapsed().as_secs_f64();
    let assignment = &wl["status"]["admission"]["podSetAssignments"][0];
    assert_eq!(assignment["count"], 2, "2 replicas of 1 pod; {assignment}");
    assert_eq!(assignment["resourceUsage"][GPU], "2", "{assignment}");

    // The JobSet controller creates its two child Jobs; their pods run on the kwok nodes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = "jobset.sigs.k8s.io/jobset-name=trainers";
    let running = wait_until("2 pods of JobSet trainers Running", STEP, || async {
        let running: Vec<Pod> = pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .into_iter()
            .filter(cluster::pod_running_ready)
            .collect();
        Ok::<_, kube::Error>((running.len() == 2).then_some(running))
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let children = must(
        "list the JobSet's Jobs",
        jobs.list(&ListParams::default().labels(selector)).await,
    );
    assert_eq!(children.items.len(), 2, "one child Job per replica");
    let cq = wait_queue(client, &names.gpu_queue, "2 GPUs in use", |cq| {
        flavor_total(cq, "flavorsUsage", &names.flavor, GPU).as_deref() == Some("2")
    })
    .await;
    assert_eq!(status_count(&cq, "admittedWorkloads"), Some(1), "{cq}");
    println!(
        "[{ns}] JobSet: suspended on creation, admitted {admitted_after:.1} s later, {} child \
         Jobs, {} pods running, ClusterQueue usage {GPU}=2",
        children.items.len(),
        running.len()
    );
    must(
        "delete JobSet",
        jobsets
            .delete("trainers", &DeleteParams::background())
            .await,
    );
}

fn jobset_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("jobset.x-k8s.io", "v1alpha2", "JobSet"),
        "jobsets",
    )
}

// ------------------------------------------------------------------------------------------
// 3. An AdmissionCheck of carbonshift.io/carbon-window holds a Workload with quota reserved

async fn admission_check_holds_workload(client: &Client, ns: &str, names: &Names) {
    let checks = cluster_api(client, "AdmissionCheck");
    must(
        "create AdmissionCheck",
        checks
            .create(
                &PostParams::default(),
                &object(
                    "AdmissionCheck",
                    &names.check,
                    json!({"controllerName": CONTROLLER_NAME}),
                ),
            )
            .await,
    );
    create_cluster_queue(
        client,
        ns,
        &names.carbon_queue,
        &names.flavor,
        Some(&names.check),
        "8",
    )
    .await;
    create_local_queue(client, ns, "carbon", &names.carbon_queue).await;

    // No controller has marked the check Active: Kueue keeps the ClusterQueue inactive.
    let cq = wait_queue_active(client, &names.carbon_queue, "False").await;
    let reason = condition_field(&cq, "Active", "reason").unwrap_or_default();
    assert_eq!(reason, "AdmissionCheckInactive", "{cq}");

    // The one step of the controller played here (step 4 runs the real one): the check Active.
    let status = json!({"status": {"conditions": [{
        "type": "Active", "status": "True", "reason": "Active",
        "message": "e2e_kueue plays the carbon-window controller",
        "lastTransitionTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }]}});
    must(
        "mark the AdmissionCheck Active",
        checks
            .patch_status(
                &names.check,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await,
    );
    wait_queue_active(client, &names.carbon_queue, "True").await;

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = create_job(&jobs, gpu_job("held", "carbon", 2, "5s")).await;
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let wl = wait_workload(client, ns, &uid, "QuotaReserved", "True").await;
    let check_state = |wl: &Value| {
        wl["status"]["admissionChecks"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or("").to_owned(),
                            c["state"].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        check_state(&wl),
        vec![(names.check.clone(), json!("Pending"))],
        "the Workload carries the one check, Pending; {wl}"
    );
    let cq = wait_queue(client, &names.carbon_queue, "2 GPUs reserved", |cq| {
        flavor_total(cq, "flavorsReservation", &names.flavor, GPU).as_deref() == Some("2")
    })
    .await;
    assert_eq!(status_count(&cq, "reservingWorkloads"), Some(1), "{cq}");
    assert_eq!(status_count(&cq, "admittedWorkloads"), Some(0), "{cq}");

    // Held: for 10 s the Workload stays reserved and not admitted, the Job suspended with no
    // pod, the check Pending.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let held = Instant::now();
    let mut samples = 0;
    while held.elapsed() < Duration::from_secs(10) {
        let wl = workload_of(client, ns, &uid)
            .await
            .expect("the Workload stays");
        assert_eq!(condition(&wl, "QuotaReserved"), Some("True"), "{wl}");
        assert_ne!(condition(&wl, "Admitted"), Some("True"), "{wl}");
        assert_eq!(check_state(&wl)[0].1, json!("Pending"), "{wl}");
        let job = must("get Job held", jobs.get("held").await);
        assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
        assert_eq!(job_pods(&pods, "held").await.len(), 0);
        samples += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "[{ns}] Job held by {CONTROLLER_NAME}: QuotaReserved True, Admitted {:?}, check \
         Pending, suspended with 0 pods in {samples} samples over {:.1} s; ClusterQueue \
         reserving 1, admitted 0, {GPU} reserved 2",
        condition(&wl, "Admitted"),
        held.elapsed().as_secs_f64()
    );
    // Step 4's operator serves every check of this controller name, this one too: the held
    // Job goes, so that it has nothing of this step's to act on.
    must(
        "delete Job held",
        jobs.delete("held", &DeleteParams::background()).await,
    );
}

// ------------------------------------------------------------------------------------------
// Objects

// ------------------------------------------------------------------------------------------
// Waits and reads

async fn workload_of(client: &Client, ns: &str, owner_uid: &str) -> Option<Value> {
    let workloads = namespaced_api(client, ns, "Workload")
        .list(&ListParams::default())
        .await
        .ok()?;
    owned_by(&workloads.items, owner_uid).map(json_of)
}

/// Waits until the Workload of the Job with `owner_uid` reports condition `type_` as
/// `status` ("False" also matches a condition not yet written) and returns it.
async fn wait_workload(
    client: &Client,
    ns: &str,
    owner_uid: &str,
    type_: &str,
    status: &str,
) -> Value {
    wait_until(
        format!("the Workload of Job {owner_uid} with {type_}={status}"),
        STEP,
        || async {
            let wl = workload_of(client, ns, owner_uid).await;
            Ok::<_, kube::Error>(wl.filter(|wl| {
                condition(wl, type_) == Some(status)
                    || (status == "False"
                        && wl["status"].is_object()
                        && condition(wl, type_).is_none())
            }))
        },
    )
    .await
}

async fn wait_queue(client: &Client, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let api = cluster_api(client, "ClusterQueue");
    let ok = &ok;
    wait_until(format!("ClusterQueue {name}: {what}"), STEP, || {
        let api = api.clone();
        async move {
            let cq: DynamicObject = api.get(name).await?;
            let cq = json_of(&cq);
            Ok::<_, kube::Error>(ok(&cq).then_some(cq))
        }
    })
    .await
}

async fn wait_queue_active(client: &Client, name: &str, status: &str) -> Value {
    wait_queue(client, name, &format!("Active={status}"), |cq| {
        condition(cq, "Active") == Some(status)
    })
    .await
}

fn condition_time(obj: &Value, type_: &str) -> DateTime<Utc> {
    let t = condition_field(obj, type_, "lastTransitionTime").unwrap_or_default();
    parse_time(
        &json!(t),
        &format!("lastTransitionTime of condition {type_} in {obj}"),
    )
}

fn parse_time(t: &Value, what: &str) -> DateTime<Utc> {
    let text = t.as_str().unwrap_or_default();
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(err) => panic!("{what}: not an RFC 3339 time ({t}: {err})"),
    }
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    must(
        "list pods",
        pods.list(&ListParams::default().labels(&job_pods_selector(job)))
            .await,
    )
    .items
}

/// Waits until Job `job` has `n` Running and Ready pods, and returns them.
async fn wait_running(pods: &Api<Pod>, job: &str, n: usize) -> Vec<Pod> {
    wait_until(format!("{n} pods of Job {job} Running"), STEP, || async {
        let running: Vec<Pod> = job_pods(pods, job)
            .await
            .into_iter()
            .filter(cluster::pod_running_ready)
            .collect();
        Ok::<_, kube::Error>((running.len() == n).then_some(running))
    })
    .await
}

// ------------------------------------------------------------------------------------------
// Cleanup

/// Deletes the namespace (its Jobs, pods, Workloads and LocalQueues), then the ClusterQueues,
/// the AdmissionCheck and the ResourceFlavor, and waits until all are gone (Kueue holds a
/// ClusterQueue and a ResourceFlavor with a finalizer while a Workload uses them).
async fn cleanup(client: &Client, ns: TestNamespace, names: &Names) {
    ns.delete_and_wait().await;
    let gone = [
        ("ClusterQueue", names.gpu_queue.as_str()),
        ("ClusterQueue", names.carbon_queue.as_str()),
        ("ClusterQueue", names.served_queue.as_str()),
        ("AdmissionCheck", names.check.as_str()),
        ("AdmissionCheck", names.served_check.as_str()),
        ("ResourceFlavor", names.flavor.as_str()),
    ];
    for (kind, name) in gone {
        let api = cluster_api(client, kind);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => panic!("delete {kind} {name}: {err}"),
        }
    }
    served::delete_params(client, &names.params).await;
    for (kind, name) in gone {
        let api = cluster_api(client, kind);
        wait_until(format!("{kind} {name} gone"), STEP, || async {
            Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(()))
        })
        .await;
    }
}

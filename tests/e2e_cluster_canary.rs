//! Canary for the local control plane (`hack/cluster.sh`): checks that the real Kubernetes
//! controllers and kwok's simulated GPU nodes do what the operator's end-to-end tests rely on,
//! so that a broken cluster fails here, plainly, rather than as a puzzling operator failure.
//!
//! Runs only with `CARBONSHIFT_E2E=1` and `KUBECONFIG` set:
//! ```text
//! hack/cluster.sh up && eval "$(hack/cluster.sh env)"
//! CARBONSHIFT_E2E=1 cargo test --test e2e_cluster_canary
//! ```

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::{
    self, job_has_condition, job_pods_selector, must, pod_phase, pod_running_ready, wait_until,
    TestNamespace, GPU, KWOK_NODE_SELECTOR, RUN_FOR,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, Node, Pod, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const STEP: Duration = Duration::from_secs(90);

/// A plain batch/v1 Job whose pods each ask for one GPU.
fn gpu_job(name: &str, parallelism: i32, pod_annotations: &[(&str, &str)]) -> Job {
    let gpu = [(GPU.to_owned(), Quantity("1".to_owned()))];
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            parallelism: Some(parallelism),
            completions: Some(parallelism),
            backoff_limit: Some(6),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: Some(
                        pod_annotations
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    containers: vec![Container {
                        name: "train".to_owned(),
                        image: Some("registry.example/train:1".to_owned()),
                        resources: Some(ResourceRequirements {
                            requests: Some(gpu.clone().into()),
                            limits: Some(gpu.into()),
                            ..ResourceRequirements::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Result<Vec<Pod>, kube::Error> {
    Ok(pods
        .list(&ListParams::default().labels(&job_pods_selector(job)))
        .await?
        .items)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Waits until the Job has `n` pods that are Running and Ready on kwok nodes, none of them in
/// `exclude`, and returns them.
async fn wait_running_on_kwok(
    client: &Client,
    pods: &Api<Pod>,
    job: &str,
    n: usize,
    exclude: &BTreeSet<String>,
) -> Vec<Pod> {
    let nodes: Api<Node> = Api::all(client.clone());
    let kwok_nodes: BTreeSet<String> = must(
        "list kwok nodes",
        nodes
            .list(&ListParams::default().labels(KWOK_NODE_SELECTOR))
            .await,
    )
    .items
    .into_iter()
    .filter_map(|n| n.metadata.name)
    .collect();
    wait_until(
        format!("{n} pod(s) of Job {job} Running and Ready on kwok nodes"),
        STEP,
        || async {
            let running: Vec<Pod> = job_pods(pods, job)
                .await?
                .into_iter()
                .filter(|p| !exclude.contains(&uid(p)) && p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    pod_running_ready(p)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_ref())
                            .is_some_and(|n| kwok_nodes.contains(n))
                })
                .collect();
            Ok::<_, kube::Error>((running.len() >= n).then_some(running))
        },
    )
    .await
}

#[tokio::test]
async fn e2e_cluster_canary() {
    if !cluster::enabled() {
        return;
    }
    let _logs = cluster::LogsOnFailure;
    let client = cluster::client().await;

    // 1. kubectl lists the kwok GPU nodes as Ready.
    let table = cluster::kubectl(&["get", "nodes", "-l", KWOK_NODE_SELECTOR, "--no-headers"]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        !rows.is_empty(),
        "kubectl get nodes lists no kwok nodes:\n{table}"
    );
    for row in &rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.get(1), Some(&"Ready"), "kwok node not Ready: {row}");
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = must(
        "list nodes",
        nodes
            .list(&ListParams::default().labels(KWOK_NODE_SELECTOR))
            .await,
    );
    assert_eq!(listed.items.len(), rows.len());
    for node in &listed.items {
        let name = node.metadata.name.as_deref().unwrap_or("?");
        let gpus = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(GPU));
        assert!(
            gpus.is_some_and(|q| q.0.parse::<u32>().is_ok_and(|n| n > 0)),
            "node {name} advertises no allocatable {GPU}: {gpus:?}"
        );
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert!(
            labels.contains_key("topology.kubernetes.io/region"),
            "node {name} has no region label"
        );
        assert!(
            labels.contains_key("topology.kubernetes.io/zone"),
            "node {name} has no zone label"
        );
    }

    let ns = TestNamespace::create(&client, "canary").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // 2. A GPU Job is scheduled onto a kwok node, runs, and completes (after run-for).
    must(
        "create Job once",
        jobs.create(
            &PostParams::default(),
            &gpu_job("once", 1, &[(RUN_FOR, "6s")]),
        )
        .await,
    );
    let running = wait_running_on_kwok(&client, &pods, "once", 1, &BTreeSet::new()).await;
    assert_eq!(running.len(), 1);
    wait_until("Job once Complete", STEP, || async {
        Ok::<_, kube::Error>(
            jobs.get_opt("once")
                .await?
                .filter(|j| job_has_condition(j, "Complete")),
        )
    })
    .await;
    let finished = must("list pods of once", job_pods(&pods, "once").await);
    assert!(
        finished.iter().any(|p| pod_phase(p) == "Succeeded"),
        "Job once is Complete but no pod Succeeded: {:?}",
        finished.iter().map(pod_phase).collect::<Vec<_>>()
    );

    // 3. Suspending a running Job removes its pods and reports Suspended.
    must(
        "create Job pausable",
        jobs.create(&PostParams::default(), &gpu_job("pausable", 2, &[]))
            .await,
    );
    let first = wait_running_on_kwok(&client, &pods, "pausable", 2, &BTreeSet::new()).await;
    let first_uids: BTreeSet<String> = first.iter().map(uid).collect();
    must(
        "suspend Job pausable",
        jobs.patch(
            "pausable",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await,
    );
    wait_until("pods of suspended Job pausable gone", STEP, || async {
        Ok::<_, kube::Error>(job_pods(&pods, "pausable").await?.is_empty().then_some(()))
    })
    .await;
    wait_until("Job pausable Suspended", STEP, || async {
        Ok::<_, kube::Error>(
            jobs.get_opt("pausable")
                .await?
                .filter(|j| job_has_condition(j, "Suspended")),
        )
    })
    .await;

    // 4. Resuming it brings new pods.
    must(
        "resume Job pausable",
        jobs.patch(
            "pausable",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await,
    );
    wait_running_on_kwok(&client, &pods, "pausable", 2, &first_uids).await;

    // 5. Deleting the Job (propagation Background) garbage-collects its pods.
    must(
        "delete Job pausable",
        jobs.delete("pausable", &DeleteParams::background()).await,
    );
    wait_until(
        "Job pausable deleted and its pods garbage-collected",
        STEP,
        || async {
            let job_gone = jobs.get_opt("pausable").await?.is_none();
            Ok::<_, kube::Error>(
                (job_gone && job_pods(&pods, "pausable").await?.is_empty()).then_some(()),
            )
        },
    )
    .await;

    ns.delete().await;
}

//! Helpers for end-to-end tests against the Kueue manager that `hack/cluster.sh up --kueue`
//! runs beside the local control plane (docs/local-cluster.md, "Kueue"). Kueue's objects are
//! handled as [`DynamicObject`]s of `kueue.x-k8s.io/v1beta2` and read as JSON.
//!
//! ```ignore
//! if !cluster::enabled() || !kueue::enabled(&client).await { return; }
//! ```

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};

use super::cluster::{must, GPU, RUN_FOR};
use serde_json::{json, Value};

/// Set to `1` (with `CARBONSHIFT_E2E=1`) to require Kueue: its tests then fail, instead of
/// being skipped, when the cluster has no running Kueue.
pub const E2E_KUEUE_ENV: &str = "CARBONSHIFT_E2E_KUEUE";
/// The label that puts a Job into a LocalQueue.
pub const QUEUE_NAME: &str = "kueue.x-k8s.io/queue-name";
pub const GROUP: &str = "kueue.x-k8s.io";
pub const VERSION: &str = "v1beta2";

/// The v1beta2 resource of `kind` (ResourceFlavor, ClusterQueue, LocalQueue, Workload,
/// AdmissionCheck, ...): its plural is the lower-case kind plus "s".
pub fn resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), &plural)
}

/// carbonshift's CarbonWindowParameters (cluster-scoped), as a dynamic resource.
pub fn params_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("carbonshift.io", "v1alpha1", "CarbonWindowParameters"),
        "carbonwindowparameters",
    )
}

/// An API for cluster-scoped Kueue objects of `kind`.
pub fn cluster_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource(kind))
}

/// An API for namespaced Kueue objects of `kind` in `ns`.
pub fn namespaced_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// A Kueue object of `kind` named `name` with the given `spec`, ready to create.
pub fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    DynamicObject::new(name, &resource(kind)).data(json!({ "spec": spec }))
}

/// Whether Kueue runs in the cluster: its CRDs are installed and its webhook server answers
/// a server-side dry run of a ResourceFlavor (which the API server sends through Kueue's
/// mutating and validating webhooks). Says why when it does not; panics instead when
/// `CARBONSHIFT_E2E_KUEUE=1` requires it.
pub async fn enabled(client: &Client) -> bool {
    let Err(reason) = probe(client).await else {
        return true;
    };
    assert!(
        std::env::var(E2E_KUEUE_ENV).as_deref() != Ok("1"),
        "{E2E_KUEUE_ENV}=1 but Kueue does not run in this cluster: {reason} \
         (start it with `hack/cluster.sh up --kueue`)"
    );
    println!("skipping: Kueue does not run in this cluster ({reason}); hack/cluster.sh up --kueue starts it");
    false
}

async fn probe(client: &Client) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = "clusterqueues.kueue.x-k8s.io";
    match crds.get_opt(crd).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(format!("no CRD {crd}")),
        Err(err) => return Err(format!("cannot read CRD {crd}: {err}")),
    }
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let flavor = object("ResourceFlavor", "e2e-kueue-probe", json!({}));
    cluster_api(client, "ResourceFlavor")
        .create(&dry_run, &flavor)
        .await
        .map(|_| ())
        .map_err(|err| match err {
            kube::Error::Api(status) => {
                format!("Kueue's webhooks do not answer: {}", status.message)
            }
            err => format!("Kueue's webhooks do not answer: {err}"),
        })
}

/// The object as JSON (metadata, spec, status).
pub fn json_of(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// The status ("True", "False", ...) of condition `type_` in `status.conditions`.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    condition_field(obj, type_, "status")
}

/// Field `field` (reason, message, lastTransitionTime, ...) of condition `type_`.
pub fn condition_field<'a>(obj: &'a Value, type_: &str, field: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?[field]
        .as_str()
}

/// `status.<list>[name=flavor].resources[name=resource].total` of a ClusterQueue or
/// LocalQueue (`list` is `flavorsUsage` or `flavorsReservation`), as the API server prints
/// the quantity ("4", "4Gi"); None when the flavor or resource is not listed.
pub fn flavor_total(queue: &Value, list: &str, flavor: &str, resource: &str) -> Option<String> {
    let flavor = queue["status"][list]
        .as_array()?
        .iter()
        .find(|f| f["name"] == flavor)?;
    let usage = flavor["resources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == resource)?;
    usage["total"].as_str().map(str::to_owned)
}

/// An integer count of `status.<field>` (pendingWorkloads, admittedWorkloads, ...).
pub fn status_count(obj: &Value, field: &str) -> Option<i64> {
    obj["status"][field].as_i64()
}

/// The Workload in `workloads` that Kueue made for the object with `uid` (its owner).
pub fn owned_by<'a>(workloads: &'a [DynamicObject], uid: &str) -> Option<&'a DynamicObject> {
    workloads.iter().find(|w| {
        w.metadata
            .owner_references
            .as_ref()
            .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
    })
}

// ------------------------------------------------------------------------------------------
// Queues and jobs

/// Label of the kwok GPU nodes (`hack/cluster.sh`): the ResourceFlavor's node label, which
/// Kueue adds to the pods' nodeSelector on admission, and the Jobs' own nodeSelector.
pub const KWOK_LABEL: (&str, &str) = ("type", "kwok");

pub async fn create_flavor(client: &Client, name: &str) {
    let spec = json!({"nodeLabels": {KWOK_LABEL.0: KWOK_LABEL.1}});
    must(
        "create ResourceFlavor",
        cluster_api(client, "ResourceFlavor")
            .create(
                &PostParams::default(),
                &object("ResourceFlavor", name, spec),
            )
            .await,
    );
}

/// A ClusterQueue for namespace `ns` only: 64 CPUs, 256 GiB and `gpus` GPUs of `flavor`,
/// with `check` as its one AdmissionCheck if given.
pub async fn create_cluster_queue(
    client: &Client,
    ns: &str,
    name: &str,
    flavor: &str,
    check: Option<&str>,
    gpus: &str,
) {
    let mut spec = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "resourceGroups": [{
            "coveredResources": ["cpu", "memory", GPU],
            "flavors": [{"name": flavor, "resources": [
                {"name": "cpu", "nominalQuota": "64"},
                {"name": "memory", "nominalQuota": "256Gi"},
                {"name": GPU, "nominalQuota": gpus},
            ]}],
        }],
    });
    if let Some(check) = check {
        spec["admissionChecksStrategy"] = json!({"admissionChecks": [{"name": check}]});
    }
    must(
        "create ClusterQueue",
        cluster_api(client, "ClusterQueue")
            .create(&PostParams::default(), &object("ClusterQueue", name, spec))
            .await,
    );
}

pub async fn create_local_queue(client: &Client, ns: &str, name: &str, cluster_queue: &str) {
    must(
        "create LocalQueue",
        namespaced_api(client, ns, "LocalQueue")
            .create(
                &PostParams::default(),
                &object("LocalQueue", name, json!({"clusterQueue": cluster_queue})),
            )
            .await,
    );
}

/// A batch/v1 Job in LocalQueue `queue`: `pods` pods of 1 GPU, 1 CPU and 1 GiB each on the
/// kwok nodes, each succeeding after `run_for`; `suspend` unset.
pub fn gpu_job(name: &str, queue: &str, pods: i32, run_for: &str) -> Job {
    let requests = json!({"cpu": "1", "memory": "1Gi", GPU: "1"});
    must(
        "build Job",
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {QUEUE_NAME: queue}},
            "spec": {
                "parallelism": pods,
                "completions": pods,
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {RUN_FOR: run_for}},
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": {KWOK_LABEL.0: KWOK_LABEL.1},
                        "containers": [{
                            "name": "train",
                            "image": "registry.example/train:1",
                            "resources": {"requests": requests, "limits": {GPU: "1"}},
                        }],
                    },
                },
            },
        })),
    )
}

pub async fn create_job(jobs: &Api<Job>, job: Job) -> Job {
    let name = job.metadata.name.clone().unwrap_or_default();
    must(
        &format!("create Job {name}"),
        jobs.create(&PostParams::default(), &job).await,
    )
}

//! What the controller keeps in memory per object, and how little: the watch caches hold
//! trimmed copies ([`Cached`] CarbonAwareJobs, [`CachedChild`] Jobs), and [`OwnWrites`] remembers
//! which cached versions are older than this process's own last status write, so that a
//! reconcile on such a copy writes nothing.
//!
//! Both only save work and memory; no decision depends on them. A restarted operator has
//! empty [`OwnWrites`] (at worst one status write is refused with 409 and retried), and
//! what the trims drop is never read: the reconcile reads the child Job's suspend flag,
//! status, labels, finalizers and owner, never its pod template (the child is created from
//! the CarbonAwareJob's template, and a template edit is detected by the hash recorded in
//! the status).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::NamespaceResourceScope;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};

use crate::api::{CarbonAwareJob, CarbonAwareJobStatus};

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no reconcile reads and what costs the most per object: `managedFields` (a
/// field-by-field record of every writer) and `kubectl apply`'s copy of the manifest.
fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// A CarbonAwareJob as the controller's cache holds it: its metadata (without
/// `managedFields` and the last-applied annotation, see [`trim_caj`]), its status, and its
/// spec as compact JSON text. Parsed, the spec's free-form Job template is a tree of maps
/// of a few hundred bytes per node (the cached CarbonAwareJobs took 5.6 KiB each in a heap
/// profile at 2,000 jobs); as text it is its length. A reconcile parses it back
/// ([`Cached::full`]).
#[derive(Clone, Debug, Deserialize)]
pub struct Cached {
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "json_text")]
    pub spec: Box<str>,
    #[serde(default)]
    pub status: Option<CarbonAwareJobStatus>,
}

/// Any JSON value, kept as its compact text.
fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Box<str>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    serde_json::to_string(&v)
        .map(String::into_boxed_str)
        .map_err(serde::de::Error::custom)
}

impl Cached {
    /// The CarbonAwareJob, spec parsed. An error means a spec the CRD's schema let through
    /// that this operator cannot read (a GET of the object would fail the same way).
    pub fn full(&self) -> Result<CarbonAwareJob, serde_json::Error> {
        Ok(CarbonAwareJob {
            metadata: self.metadata.clone(),
            spec: serde_json::from_str(&self.spec)?,
            status: self.status.clone(),
        })
    }
}

impl Resource for Cached {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        CarbonAwareJob::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        CarbonAwareJob::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        CarbonAwareJob::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        CarbonAwareJob::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Trims a cached CarbonAwareJob of `managedFields` and `kubectl apply`'s copy.
pub fn trim_caj(caj: &mut Cached) {
    trim_meta(&mut caj.metadata);
}

/// A child Job as the controller's cache holds it: its metadata (labels, finalizers,
/// owner, deletion; without `managedFields` and the last-applied annotation), the two
/// fields of its spec a reconcile reads (`suspend`, `parallelism`), and its status
/// without the uncounted-pods bookkeeping. A whole `Job` is 2,616 bytes before any of its
/// contents (its spec holds a pod template inline); this is about a fifth of that. The
/// reconcile sees it as a [`Job`] ([`CachedChild::job`]).
#[derive(Clone, Debug, Deserialize)]
pub struct CachedChild {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ChildSpec,
    #[serde(default)]
    pub status: Option<JobStatus>,
}

/// What a reconcile reads of a child Job's spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildSpec {
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default)]
    pub parallelism: Option<i32>,
}

impl CachedChild {
    /// The child as a Job with only what the cache keeps.
    pub fn job(&self) -> Job {
        Job {
            metadata: self.metadata.clone(),
            spec: Some(JobSpec {
                suspend: self.spec.suspend,
                parallelism: self.spec.parallelism,
                ..JobSpec::default()
            }),
            status: self.status.clone(),
        }
    }
}

impl Resource for CachedChild {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Job::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Job::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Job::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Job::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Trims a cached child Job of `managedFields`, `kubectl apply`'s copy and the
/// uncounted-pods bookkeeping.
pub fn trim_job(job: &mut CachedChild) {
    trim_meta(&mut job.metadata);
    if let Some(status) = job.status.as_mut() {
        status.uncounted_terminated_pods = None;
    }
}

/// How long a recorded write is trusted to be still on its way to the cache. Past it the
/// entry is ignored (a watch that lost events relists, and the relist shows the latest).
pub const OWN_WRITE_TTL: Duration = Duration::from_secs(60);

/// The resourceVersions of each CarbonAwareJob (by uid) that precede this process's last
/// status write to it: the version the write was conditioned on, and the version the
/// reconcile found in the cache (older when it read the object afresh). A reconcile that
/// finds one of them in the cache decides on a status it has already replaced; it waits
/// for the watch to deliver the write instead of sending a write the API server would
/// refuse with 409 (or, unconditioned, a copy of the last one).
#[derive(Default)]
pub struct OwnWrites {
    by_uid: Mutex<HashMap<String, Recorded>>,
}

struct Recorded {
    before: [Option<String>; 2],
    at: Instant,
}

impl OwnWrites {
    /// Records a status write that took the object from `read` (the version the write was
    /// conditioned on; `cached` the one the cache showed) to `written`. A write that changed
    /// nothing (`written == read`) is not recorded: no cache can be behind it.
    pub fn record(
        &self,
        uid: &str,
        cached: Option<&str>,
        read: Option<&str>,
        written: Option<&str>,
    ) {
        if written.is_none() || written == read {
            return;
        }
        let before = [cached.map(str::to_string), read.map(str::to_string)];
        self.lock().insert(
            uid.to_string(),
            Recorded {
                before,
                at: Instant::now(),
            },
        );
    }

    /// Whether the cached `caj` is older than this process's last status write to it. A
    /// copy that is not (the watch caught up, or another writer moved it on) ends the
    /// record.
    pub fn behind(&self, caj: &impl Resource) -> bool {
        self.behind_at(caj, Instant::now())
    }

    fn behind_at(&self, caj: &impl Resource, now: Instant) -> bool {
        let (Some(uid), Some(rv)) = (caj.uid(), caj.resource_version()) else {
            return false;
        };
        let mut map = self.lock();
        let Some(r) = map.get(&uid) else {
            return false;
        };
        let stale =
            now.duration_since(r.at) < OWN_WRITE_TTL && r.before.iter().flatten().any(|b| *b == rv);
        if !stale {
            map.remove(&uid);
        }
        stale
    }

    /// Forgets records older than [`OWN_WRITE_TTL`] (objects deleted before the cache
    /// caught up). Returns how many are kept.
    pub fn purge(&self) -> usize {
        let mut map = self.lock();
        map.retain(|_, r| r.at.elapsed() < OWN_WRITE_TTL);
        map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Recorded>> {
        // A panic while holding the lock leaves a usable map (entries are independent).
        self.by_uid.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caj(rv: &str) -> CarbonAwareJob {
        let mut c: CarbonAwareJob = serde_json::from_value(json!({
            "apiVersion": "carbonshift.io/v1alpha1", "kind": "CarbonAwareJob",
            "metadata": {
                "name": "a", "namespace": "n", "uid": "u1",
                "annotations": {LAST_APPLIED: "{\"huge\": true}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"schedule": {"expectedDuration": "1h", "maxDelay": "1h"},
                "template": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}},
        }))
        .unwrap();
        c.metadata.resource_version = Some(rv.into());
        c
    }

    #[test]
    fn a_cached_copy_from_before_the_write_is_behind_until_the_watch_delivers_it() {
        let w = OwnWrites::default();
        // Read afresh at 12 (the cache showed 10), written: 13.
        w.record("u1", Some("10"), Some("12"), Some("13"));
        assert!(w.behind(&caj("10")));
        assert!(w.behind(&caj("12")));
        assert_eq!(w.purge(), 1);
        // The write arrives: not behind, and the record is gone.
        assert!(!w.behind(&caj("13")));
        assert_eq!(w.purge(), 0);
        assert!(!w.behind(&caj("12")));
    }

    #[test]
    fn a_write_that_changed_nothing_or_another_writer_ends_nothing_twice() {
        let w = OwnWrites::default();
        w.record("u1", Some("12"), Some("12"), Some("12"));
        assert_eq!(w.purge(), 0);
        assert!(!w.behind(&caj("12")));
        w.record("u1", Some("12"), Some("12"), None);
        assert_eq!(w.purge(), 0);
        // Another writer moved the object past the write: decide on it.
        w.record("u1", Some("12"), Some("12"), Some("13"));
        assert!(!w.behind(&caj("14")));
        assert!(!w.behind(&caj("12")));
    }

    #[test]
    fn an_old_record_is_not_trusted() {
        let w = OwnWrites::default();
        w.record("u1", None, Some("12"), Some("13"));
        let later = Instant::now() + OWN_WRITE_TTL + Duration::from_secs(1);
        assert!(!w.behind_at(&caj("12"), later));
        assert_eq!(w.purge(), 0);
    }

    #[test]
    fn the_trims_drop_what_no_reconcile_reads() {
        let full = caj("1");
        // Through a list's flattened items, as the watcher reads them.
        let list = json!({"kind": "List", "apiVersion": "v1", "metadata": {},
            "items": [serde_json::to_value(&full).unwrap()]});
        let text = serde_json::to_string(&list).unwrap();
        let list: kube::core::ObjectList<Cached> = serde_json::from_str(&text).unwrap();
        let mut c = list.items.into_iter().next().unwrap();
        trim_caj(&mut c);
        assert!(c.metadata.managed_fields.is_none());
        let a = c.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a["keep"], "me");
        let back = c.full().unwrap();
        assert_eq!(back.spec, full.spec);
        assert_eq!(back.metadata.resource_version.as_deref(), Some("1"));
        assert!(!c.spec.contains(' '), "{}", c.spec);

        let mut job: CachedChild = serde_json::from_value(json!({
            "metadata": {"name": "a", "finalizers": ["carbonshift.io/cleanup"],
                "labels": {"carbonshift.io/job": "a"},
                "managedFields": [{"manager": "carbonshift"}]},
            "spec": {"suspend": true, "parallelism": 2,
                "selector": {"matchLabels": {"x": "y"}},
                "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "i", "args": ["a"]}]}}},
            "status": {"ready": 1, "active": 2,
                "uncountedTerminatedPods": {"succeeded": ["p"]},
                "conditions": [{"type": "Complete", "status": "True"}]},
        }))
        .unwrap();
        trim_job(&mut job);
        let job = job.job();
        let before = serde_json::to_string(&job).unwrap();
        assert!(job.metadata.managed_fields.is_none());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(spec.parallelism, Some(2));
        assert!(spec.template.spec.is_none());
        let st = job.status.as_ref().unwrap();
        assert_eq!((st.ready, st.active), (Some(1), Some(2)));
        assert_eq!(st.conditions.as_ref().unwrap().len(), 1);
        assert!(st.uncounted_terminated_pods.is_none());
        assert_eq!(job.finalizers(), ["carbonshift.io/cleanup"]);
        assert!(!before.contains("containers"), "{before}");
    }
}

//! Test fixtures: a mocked API server (the ApiServerVerifier pattern: the test plays the
//! API server, asserting each request the reconciler makes, in order, and answering it),
//! a static intensity feed and CarbonAwareJob/Job builders.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use http::{Method, Request, Response};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{json, Value};

use super::intensity::{Feed, Intensities};
use super::Context;
use crate::api::{time, CarbonAwareJob, CarbonAwareJobStatus};
use crate::forecast::ForecastError;
use crate::metrics::Metrics;
use crate::series::Series;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// The instant every test runs at.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
}

pub fn at(mins: i64) -> DateTime<Utc> {
    now() + TimeDelta::minutes(mins)
}

/// Hourly intensities starting 24 h before [`now`]: `past` for the past day, then
/// `future[i]` for hour `i` from now, then 300 for the rest of three days.
pub fn series(past: f64, future: &[f64]) -> Series {
    let mut v = vec![past; 24];
    v.extend_from_slice(future);
    v.resize(24 + 72, 300.0);
    Series::new(now() - TimeDelta::hours(24), 3600, v).unwrap()
}

/// A feed that always answers with one series.
pub struct StaticFeed(pub Series);

#[async_trait]
impl Feed for StaticFeed {
    async fn get(
        &self,
        _region: &str,
        _now: DateTime<Utc>,
        _since: DateTime<Utc>,
    ) -> Result<Arc<Intensities>, ForecastError> {
        Ok(Arc::new(Intensities::live(self.0.clone(), "static".into())))
    }
}

/// A context on a mocked API server, pinned to [`now`] (+ `offset_mins`).
pub fn context(series: Series, offset_mins: i64) -> (Arc<Context>, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let mut ctx = Context::new(
        client,
        Arc::new(StaticFeed(series)),
        Metrics::new().unwrap(),
        None,
    );
    ctx.clock = Arc::new(move || at(offset_mins));
    ctx.resolve_region = Arc::new(|r: Option<&str>| Ok(r.unwrap_or("DE").to_string()));
    (Arc::new(ctx), ApiServer(handle))
}

/// A CarbonAwareJob `ml/train` created 10 minutes before [`now`], with its deadline 24 h
/// after creation: `maxDelay` is 24h less `expected` (the deadline is creation +
/// expectedDuration + maxDelay), or 24h for work of a day or more.
pub fn caj(strategy: &str, expected: &str, schedule_extra: Value) -> CarbonAwareJob {
    let day = 24 * 3600;
    let max_delay = match crate::duration::parse_secs(expected) {
        Ok(e) if e < day => crate::controller::validate::crd_duration(day - e),
        _ => "24h".to_string(),
    };
    let mut schedule =
        json!({"strategy": strategy, "maxDelay": max_delay, "expectedDuration": expected});
    if let (Some(s), Some(extra)) = (schedule.as_object_mut(), schedule_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "carbonshift.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {
            "name": "train", "namespace": "ml", "uid": "caj-uid", "generation": 1,
            "resourceVersion": "7",
            "creationTimestamp": time::to_time(at(-10)),
        },
        "spec": {
            "schedule": schedule,
            "power": {"watts": 1000.0, "pue": 1.0},
            "template": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "train", "image": "trainer:1"}]
            }}}}
        }
    }))
    .unwrap()
}

pub fn with_status(mut c: CarbonAwareJob, status: CarbonAwareJobStatus) -> CarbonAwareJob {
    c.status = Some(status);
    c
}

/// The child Job as the API server would return it.
pub fn child(c: &CarbonAwareJob, suspend: bool, condition: Option<&str>) -> Job {
    let v = super::validate::validate(c, now()).unwrap();
    let mut job = super::build::child_job(c, &v, suspend);
    job.metadata.uid = Some("job-uid".into());
    if let Some(t) = condition {
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: t.into(),
                status: "True".into(),
                reason: Some(
                    if t == "Failed" {
                        "BackoffLimitExceeded"
                    } else {
                        "Completed"
                    }
                    .into(),
                ),
                message: Some("done".into()),
                last_transition_time: Some(time::to_time(at(-1))),
                ..JobCondition::default()
            }]),
            completion_time: (t == "Complete").then(|| time::to_time(at(-1))),
            ..JobStatus::default()
        });
    }
    job
}

fn respond(tx: Responder, code: u16, body: &Value) {
    tx.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// One request the reconciler made.
pub struct Call {
    pub method: Method,
    pub uri: String,
    pub body: Value,
    tx: Responder,
}

impl Call {
    pub fn reply(self, code: u16, body: &Value) {
        respond(self.tx, code, body)
    }

    pub fn not_found(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"});
        self.reply(404, &status)
    }

    /// Answers with the request body (what an apply/create returns).
    pub fn echo(self) {
        let body = self.body.clone();
        self.reply(200, &body)
    }
}

/// The test's side of the mocked API server.
pub struct ApiServer(pub Handle);

impl ApiServer {
    pub async fn next(&mut self) -> Call {
        let (req, tx) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("the reconciler made no further request")
            .expect("service dropped");
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Call {
            method,
            uri,
            body,
            tx,
        }
    }

    /// The next request, which must be a `method` of a path starting with `path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(call.method, method, "{}", call.uri);
        assert!(call.uri.starts_with(path), "{}", call.uri);
        call
    }

    /// [`Self::expect`] of a PATCH made as the operator's field manager.
    async fn expect_patch(&mut self, path: &str) -> Call {
        let call = self.expect(Method::PATCH, path).await;
        assert!(
            call.uri.contains("fieldManager=carbonshift"),
            "{}",
            call.uri
        );
        call
    }

    /// Expects `GET .../jobs/train` and answers with `job` or 404.
    pub async fn get_child(&mut self, job: Option<&Job>) {
        let call = self.next().await;
        assert_eq!(call.method, Method::GET, "{}", call.uri);
        assert_eq!(call.uri, "/apis/batch/v1/namespaces/ml/jobs/train");
        match job {
            Some(j) => {
                let v = serde_json::to_value(j).unwrap();
                call.reply(200, &v)
            }
            None => call.not_found(),
        }
    }

    /// Expects `GET .../carbonawarejobs/train` (the quorum read before a child is
    /// created) and answers with `c`.
    pub async fn get_caj(&mut self, c: &CarbonAwareJob) {
        let call = self.next().await;
        assert_eq!(call.method, Method::GET, "{}", call.uri);
        assert_eq!(
            call.uri,
            "/apis/carbonshift.io/v1alpha1/namespaces/ml/carbonawarejobs/train"
        );
        let v = serde_json::to_value(c).unwrap();
        call.reply(200, &v)
    }

    /// Expects the JSON patch that removes the child Job's finalizer; answers 200.
    pub async fn release_finalizer(&mut self) {
        let call = self
            .expect(Method::PATCH, "/apis/batch/v1/namespaces/ml/jobs/train")
            .await;
        assert_eq!(
            call.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "carbonshift.io/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
        call.reply(200, &json!({}))
    }

    /// Expects the finalizer release and fails it with `code`.
    pub async fn refuse_finalizer_release(&mut self, code: u16) {
        let call = self
            .expect(Method::PATCH, "/apis/batch/v1/namespaces/ml/jobs/train")
            .await;
        call.reply(
            code,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "refused by the test", "reason": "InternalError", "code": code}),
        )
    }

    /// Expects the merge patch of the live child's `spec.suspend` (and of nothing else);
    /// returns its body.
    pub async fn patch_suspend(&mut self) -> Value {
        let call = self
            .expect_patch("/apis/batch/v1/namespaces/ml/jobs/train?")
            .await;
        let body = call.body.clone();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["spec"], "{body}");
        assert_eq!(body["spec"].as_object().unwrap().len(), 1, "{body}");
        call.echo();
        body
    }

    /// Expects a server-side apply of the child Job; returns its body.
    pub async fn apply_child(&mut self) -> Value {
        let call = self
            .expect_patch("/apis/batch/v1/namespaces/ml/jobs/train?")
            .await;
        assert!(call.uri.contains("force=true"), "{}", call.uri);
        let body = call.body.clone();
        call.echo();
        body
    }

    /// Expects a server-side apply of the status; returns the status written.
    pub async fn apply_status(&mut self, c: &CarbonAwareJob) -> CarbonAwareJobStatus {
        let rv = c.metadata.resource_version.clone().unwrap_or_default();
        self.apply_status_to(c, &rv).await
    }

    /// [`ApiServer::apply_status`], answering with the object at `resourceVersion` `rv`.
    pub async fn apply_status_to(&mut self, c: &CarbonAwareJob, rv: &str) -> CarbonAwareJobStatus {
        let call = self
            .expect_patch(
                "/apis/carbonshift.io/v1alpha1/namespaces/ml/carbonawarejobs/train/status?",
            )
            .await;
        assert_eq!(call.body["kind"], "CarbonAwareJob");
        // Written on condition that the object is still the one read.
        assert_eq!(
            call.body["metadata"]["resourceVersion"],
            json!(c.metadata.resource_version)
        );
        let status: CarbonAwareJobStatus =
            serde_json::from_value(call.body["status"].clone()).unwrap();
        let mut obj = serde_json::to_value(c).unwrap();
        obj["status"] = call.body["status"].clone();
        obj["metadata"]["resourceVersion"] = json!(rv);
        call.reply(200, &obj);
        status
    }

    /// Expects the reconcile that suspends (`suspend`) or resumes the child Job: a read of
    /// the child in the other state, the patch of `spec.suspend`, then the status apply,
    /// which it returns.
    pub async fn flip(&mut self, c: &CarbonAwareJob, suspend: bool) -> CarbonAwareJobStatus {
        self.get_child(Some(&child(c, !suspend, None))).await;
        let job = self.patch_suspend().await;
        assert_eq!(job["spec"]["suspend"], suspend);
        self.apply_status(c).await
    }

    /// Expects the reconcile that creates the child Job suspended (`suspend`) or not: the
    /// read that finds none, the quorum read of `c`, the apply of the Job, then the status
    /// apply, which it returns.
    pub async fn create_child(
        &mut self,
        c: &CarbonAwareJob,
        suspend: bool,
    ) -> CarbonAwareJobStatus {
        self.get_child(None).await;
        self.get_caj(c).await;
        let job = self.apply_child().await;
        assert_eq!(job["spec"]["suspend"], suspend);
        self.apply_status(c).await
    }

    /// Expects a status apply and refuses it with 409 (the object changed since read).
    pub async fn conflict_status(&mut self) {
        let call = self.next().await;
        assert_eq!(call.method, Method::PATCH, "{}", call.uri);
        assert!(
            call.uri.contains("/carbonawarejobs/train/status?"),
            "{}",
            call.uri
        );
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "Conflict", "code": 409,
            "message": "the object has been modified; please apply your changes to the latest version and try again"});
        call.reply(409, &status)
    }

    /// Expects an Event of `type_` and `reason`; returns its note.
    pub async fn expect_event(&mut self, type_: &str, reason: &str) -> String {
        let (ty, r, note) = self.event().await;
        assert_eq!((ty.as_str(), r.as_str()), (type_, reason), "{note}");
        note
    }

    /// Expects an Event; returns (type, reason, note).
    pub async fn event(&mut self) -> (String, String, String) {
        let call = self
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ml/events")
            .await;
        let b = call.body.clone();
        assert_eq!(b["regarding"]["name"], "train");
        let out = (
            b["type"].as_str().unwrap_or_default().to_string(),
            b["reason"].as_str().unwrap_or_default().to_string(),
            b["note"].as_str().unwrap_or_default().to_string(),
        );
        call.echo();
        out
    }
}

/// One pure build step of `c` at `now` in region DE, with `ch` as the live child Job and
/// `margin` as the deadline margin.
pub fn build_at(
    c: &CarbonAwareJob,
    ch: Option<&Job>,
    intensities: Result<&Intensities, &str>,
    now: DateTime<Utc>,
    margin: TimeDelta,
) -> super::build::Outcome {
    super::build::build(super::build::Observed {
        caj: c,
        child: ch,
        region: Ok("DE"),
        intensities,
        now,
        persist_every: TimeDelta::minutes(5),
        deadline_margin: margin,
        kueue: false,
    })
}

/// The deadline margin the operator uses unless told otherwise.
pub fn default_margin() -> TimeDelta {
    TimeDelta::seconds(super::DEFAULT_DEADLINE_MARGIN_SECS)
}

/// Asserts that `st` has the condition `type_` with `(status, reason)` and a message that
/// contains each of `words`.
pub fn assert_condition(
    st: &CarbonAwareJobStatus,
    type_: &str,
    (status, reason): (&str, &str),
    words: &[&str],
) {
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_} in {:?}", st.conditions));
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{}",
        c.message
    );
    for w in words {
        assert!(c.message.contains(w), "{w:?} not in {:?}", c.message);
    }
}

/// A job waiting for its start, accounted up to `accounted_min` minutes from now.
pub fn waiting_status(accounted_min: i64) -> CarbonAwareJobStatus {
    CarbonAwareJobStatus {
        phase: Some(crate::api::Phase::Waiting),
        job_name: Some("train".into()),
        last_accounted_time: Some(time::to_time(at(accounted_min))),
        ..CarbonAwareJobStatus::default()
    }
}

/// The owner reference the child Job must carry.
pub fn assert_owned(job: &Value, c: &CarbonAwareJob) {
    let o = &job["metadata"]["ownerReferences"][0];
    assert_eq!(o["uid"], "caj-uid");
    assert_eq!(o["controller"], true);
    assert_eq!(o["kind"], CarbonAwareJob::kind(&()).as_ref());
    assert_eq!(
        job["metadata"]["labels"]["carbonshift.io/job"],
        c.metadata.name.clone().unwrap()
    );
}

/// `job` as the Job controller reports it: `active` pods, `ready` of them Ready.
pub fn with_pods(mut job: Job, active: i32, ready: i32) -> Job {
    let st = job.status.get_or_insert_with(JobStatus::default);
    st.active = Some(active);
    st.ready = Some(ready);
    job
}

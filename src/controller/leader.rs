//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas never both
//! act on CarbonAwareJobs.
//!
//! The algorithm is client-go's: the holder renews `renewTime` every `renew_every`; another
//! replica takes the Lease over only after it has seen the Lease *unchanged* (same
//! `resourceVersion`) for a full `leaseDurationSeconds` by its own monotonic clock, so clock
//! skew between nodes cannot cause two leaders. Every write is an optimistic-concurrency
//! `replace` carrying the `resourceVersion` that was read, so of two contenders exactly one
//! wins. A leader that fails to renew for `lease_duration` steps down (the process exits
//! and Kubernetes restarts it as a standby) before anyone else may take over. On graceful
//! shutdown the leader releases the Lease so a standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Whether this process may still write as the leader. A successful renew sent at `t`
/// extends it to `t + lease_duration - renew_every` (the renew deadline); another replica
/// can take the Lease only a full `lease_duration` after it last saw it change, so a
/// leader that cannot renew (partitioned, stopped by SIGSTOP, starved) stops writing at
/// least one renew period before anyone else may start. Every write of the controller
/// checks it first.
#[derive(Debug)]
pub struct Fence {
    /// `None`: no leader election, always allowed.
    until: Option<std::sync::Mutex<Option<Instant>>>,
}

impl Fence {
    /// No leader election: writes are always allowed.
    pub fn unfenced() -> Self {
        Self { until: None }
    }

    /// Leader election: no write until the Lease is held.
    pub fn leased() -> Self {
        Self {
            until: Some(std::sync::Mutex::new(None)),
        }
    }

    /// Allows writes until `until`.
    pub fn extend(&self, until: Instant) {
        if let Some(m) = &self.until {
            if let Ok(mut u) = m.lock() {
                *u = Some(u.map_or(until, |t| t.max(until)));
            }
        }
    }

    /// Whether a write may be made now.
    pub fn holds(&self) -> bool {
        match &self.until {
            None => true,
            Some(m) => m
                .lock()
                .ok()
                .and_then(|u| *u)
                .is_some_and(|t| Instant::now() < t),
        }
    }
}

/// Election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// A Lease elector for one replica.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    fence: std::sync::Arc<Fence>,
    /// Last `resourceVersion` seen of a Lease held by someone else, and when it was seen.
    observed: Option<(String, Instant)>,
}

/// Outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Leading,
    Standby,
}

impl Elector {
    pub fn new(api: Api<Lease>, cfg: LeaseConfig, fence: std::sync::Arc<Fence>) -> Self {
        Self {
            api,
            cfg,
            fence,
            observed: None,
        }
    }

    /// How long after a renew was sent writes remain allowed: a renew period less than the
    /// lease duration.
    pub fn renew_deadline(&self) -> Duration {
        self.cfg.lease_duration.saturating_sub(self.cfg.renew_every)
    }

    /// `Elector::try_acquire_or_renew_unfenced`, extending the fence on success.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let sent = Instant::now();
        let r = self.try_acquire_or_renew_unfenced().await;
        if let Ok(Attempt::Leading) = r {
            self.fence.extend(sent + self.renew_deadline());
        }
        r
    }

    fn spec(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One acquire-or-renew round.
    async fn try_acquire_or_renew_unfenced(&mut self) -> Result<Attempt, kube::Error> {
        let pp = PostParams::default();
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&pp, &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        let transitions = spec.lease_transitions.unwrap_or(0);
        if mine {
            lease.spec = Some(self.spec(transitions, spec.acquire_time.clone()));
        } else if holder.is_some() {
            let rv = lease.metadata.resource_version.clone().unwrap_or_default();
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            match &self.observed {
                Some((seen, at)) if *seen == rv && at.elapsed() >= duration => {
                    // Unchanged for a whole lease duration: the holder is gone.
                    lease.spec = Some(self.spec(transitions + 1, None));
                }
                Some((seen, _)) if *seen == rv => return Ok(Attempt::Standby),
                _ => {
                    self.observed = Some((rv, Instant::now()));
                    return Ok(Attempt::Standby);
                }
            }
        } else {
            // Released by its last holder.
            lease.spec = Some(self.spec(transitions + 1, None));
        }
        match self.api.replace(&self.cfg.name, &pp, &lease).await {
            Ok(_) => {
                self.observed = None;
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&mut self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
                    return;
                }
                Ok(Attempt::Standby) if !announced => {
                    tracing::info!(lease = %self.cfg.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(Attempt::Standby) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or write the Lease")
                }
            }
            tokio::time::sleep(self.cfg.renew_every).await;
        }
    }

    /// Renews until renewal has failed for a whole lease duration (or someone else holds
    /// the Lease); returns then, and the caller must stop acting.
    pub async fn hold(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => last_ok = Instant::now(),
                // Renewed, but too late (this process was stopped past the deadline): a
                // standby may be acting; step down.
                Ok(Attempt::Standby) | Err(_) if !self.fence.holds() => {
                    tracing::error!(lease = %self.cfg.name, "the renew deadline passed; stepping down");
                    return;
                }
                Ok(Attempt::Standby) => {
                    tracing::error!(lease = %self.cfg.name, "lost the Lease to another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the Lease");
                    // Step down a renew period before the Lease could be taken over (the
                    // fence has stopped writes by then).
                    if !self.fence.holds()
                        || last_ok.elapsed() + self.cfg.renew_every >= self.cfg.lease_duration
                    {
                        tracing::error!("Lease renewal failed for too long; stepping down");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up (best effort) so a standby need not wait for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.cfg.name, "released the Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the Lease"),
        }
    }
}

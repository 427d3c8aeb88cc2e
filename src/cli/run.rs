//! `carbonshift run`: the operator. Wires the Kubernetes client, the shared forecast
//! cache, region resolution, leader election, the HTTP endpoints and the controller, and
//! shuts all of it down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::Client;
use tokio::sync::watch;

use super::{CliResult, Failure};
use crate::controller::{self, leader, server, Context};
use crate::duration;
use crate::forecast::{self, ForecastArgs};
use crate::metrics::Metrics;
use crate::region::NODE_REGION_LABEL;
use crate::telemetry::{self, LogFormat};

/// Run the operator: reconcile CarbonAwareJobs into suspended/running batch Jobs.
///
/// Uses the in-cluster service account, or KUBECONFIG / ~/.kube/config outside a cluster.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    carbonshift run --region DE --leader-election false\n  \
    CARBONSHIFT_FORECAST_PROVIDER=electricitymaps ELECTRICITYMAPS_TOKEN=... carbonshift run\n\n\
    The default forecast source, embedded, replays real historical data onto the current\n\
    calendar (labelled `embedded (historical replay)` in status); use a live provider in production.")]
pub struct Args {
    /// Grid zone or cloud region for jobs without spec.region (default: the nodes'
    /// topology.kubernetes.io/region label, mapped through the region table).
    #[arg(long, env = "CARBONSHIFT_REGION")]
    pub region: Option<String>,

    #[command(flatten)]
    pub forecast: ForecastArgs,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "CARBONSHIFT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CARBONSHIFT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Elect a leader on a Lease so only one replica acts (`--leader-election false` to
    /// disable, e.g. for a single replica run by hand).
    #[arg(long, env = "CARBONSHIFT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "CARBONSHIFT_LEASE_NAME",
        default_value = "carbonshift-leader"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: POD_NAMESPACE, else the client's default namespace).
    #[arg(long, env = "CARBONSHIFT_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How often accrued accounting is written to status while nothing else changes.
    #[arg(long, env = "CARBONSHIFT_STATUS_INTERVAL", default_value = "5m", value_parser = duration::flag(1, duration::DAY_SECS), allow_hyphen_values = true)]
    pub status_interval: i64,

    /// Start-up margin: plan every job to finish this long before its deadline, so the
    /// deadline guard starts it early enough for the operator's and the cluster's latency
    /// (requeue, API calls, scheduling, image pull, pod start-up). Taken out of each job's
    /// slack and never more: a job with less slack than this runs at once, a feasible
    /// deadline never becomes infeasible. `0s` plans against the deadline itself.
    #[arg(long, env = "CARBONSHIFT_DEADLINE_MARGIN", default_value = "2m", value_parser = parse_margin, allow_hyphen_values = true)]
    pub deadline_margin: TimeDelta,

    /// At most this many CarbonAwareJobs are reconciled at once (at least 1). Bounds the
    /// requests and memory in flight when thousands of jobs are replanned together.
    #[arg(long, env = "CARBONSHIFT_MAX_CONCURRENT_RECONCILES", default_value_t = crate::controller::DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Also serve Kueue AdmissionChecks whose controllerName is carbonshift.io/carbon-window:
    /// every Workload of a ClusterQueue that uses one waits for, and pauses around, the
    /// clean windows through the check's state (needs Kueue v0.15 or newer, and the
    /// CarbonWindow and CarbonWindowParameters CRDs; see docs/kueue.md).
    #[arg(long, env = "CARBONSHIFT_KUEUE_ADMISSION_CHECKS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub kueue: bool,

    /// Also act as MultiKueue's external dispatcher on this manager cluster: nominate each
    /// Workload of a MultiKueue AdmissionCheck to the worker cluster whose region (the
    /// carbonshift.io/region label of its MultiKueueCluster) gives the job the least
    /// emissions. Set `multiKueue.dispatcherName: carbonshift.io/multikueue-dispatcher` in
    /// Kueue's configuration (see docs/multicluster.md).
    #[arg(long, env = "CARBONSHIFT_MULTIKUEUE_DISPATCHER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub multikueue_dispatcher: bool,

    /// With --multikueue-dispatcher: a nominated worker cluster that has not admitted the
    /// Workload within this time is passed over for the next best.
    #[arg(long, env = "CARBONSHIFT_DISPATCH_TIMEOUT", default_value = "5m", value_parser = duration::flag(1, duration::DAY_SECS), allow_hyphen_values = true)]
    pub dispatch_timeout: i64,

    /// Log format (filter with RUST_LOG).
    #[arg(
        long,
        env = "CARBONSHIFT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// A `--deadline-margin`: a duration from 0s to 366d (declare the argument with
/// `allow_hyphen_values = true`, see [`duration::flag`]).
pub(crate) fn parse_margin(s: &str) -> Result<TimeDelta, String> {
    duration::parse_flag(s, 0, duration::MAX_FLAG_SECS)
        .map(TimeDelta::seconds)
        .map_err(|e| e.reason)
}

/// Why the operator stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    Signal,
    LostLeadership,
}

async fn stopped(mut rx: watch::Receiver<Stop>) {
    let _ = rx.wait_for(|s| *s != Stop::Running).await;
}

fn spawn_signal_handler(tx: watch::Sender<Stop>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = tx.send(Stop::Signal);
    });
}

/// The distinct region labels of the cluster's nodes, for jobs without `spec.region` when
/// `--region` is unset (the flag wins over node labels, so with it the nodes are not
/// listed: the Helm chart grants `nodes` only with `regionDiscovery.fromNodeLabels`).
/// Best effort: without permission to list nodes every job must set `spec.region`.
async fn node_regions(client: &Client, flag: Option<&str>) -> Vec<String> {
    if let Some(region) = flag.map(str::trim).filter(|r| !r.is_empty()) {
        tracing::debug!(%region, "--region is set: not listing nodes for their {NODE_REGION_LABEL} label");
        return Vec::new();
    }
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes
        .list_metadata(&ListParams::default().labels(NODE_REGION_LABEL))
        .await
    {
        Ok(list) => {
            let mut v: Vec<String> = list
                .items
                .iter()
                .filter_map(|n| n.metadata.labels.as_ref()?.get(NODE_REGION_LABEL).cloned())
                .collect();
            v.sort();
            v.dedup();
            v
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::warn!(
                "not allowed to list nodes, so the cluster's region cannot be read from their \
                 {NODE_REGION_LABEL} label: set --region (Helm value `region`) or grant node access \
                 (Helm value `regionDiscovery.fromNodeLabels=true`); until then every \
                 CarbonAwareJob must set spec.region"
            );
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list nodes to learn the cluster's region from their {NODE_REGION_LABEL} label; set --region or spec.region");
            Vec::new()
        }
    }
}

fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "carbonshift".into());
    format!("{host}_{}", std::process::id())
}

pub async fn run(args: Args) -> CliResult {
    telemetry::init(args.log_format).map_err(Failure::input)?;
    let metrics = Metrics::new().map_err(|e| Failure::runtime(format!("metrics registry: {e}")))?;
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    spawn_signal_handler(stop_tx.clone());

    let listener = server::bind(args.metrics_addr)
        .await
        .map_err(|e| Failure::input(format!("--metrics-addr {}: {e}", args.metrics_addr)))?;
    let health = server::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let http = tokio::spawn(server::serve(listener, health, stopped(stop_rx.clone())));

    let ident = identity();
    let client = kube_client(&ident).await.map_err(|e| {
        Failure::runtime(format!(
            "cannot configure the Kubernetes client (in-cluster service account or KUBECONFIG): {e}"
        ))
    })?;

    let cache = forecast::build_cache(&args.forecast, metrics.clone()).map_err(Failure::input)?;
    let refresher = start_refresher(&cache, args.forecast.provider);
    let resolver = region_resolver(&client, &args).await?;

    let mut ctx = Context::new(
        client.clone(),
        Arc::new(controller::intensity::CacheFeed(cache.clone())),
        metrics.clone(),
        Some(ident.clone()),
    );
    ctx.resolve_region = resolver;
    ctx.persist_every = TimeDelta::seconds(args.status_interval);
    ctx.deadline_margin = args.deadline_margin;
    ctx.max_concurrent_reconciles = args.max_concurrent_reconciles;
    ctx.kueue = args.kueue;
    if args.leader_election {
        ctx.fence = Arc::new(leader::Fence::leased());
    }
    let fence = ctx.fence.clone();
    let ctx = Arc::new(ctx);
    ready.store(true, Ordering::Relaxed);

    let elector = if args.leader_election {
        let mut e = elector(&args, &client, ident, fence);
        tokio::select! {
            _ = e.acquire() => {}
            _ = stopped(stop_rx.clone()) => {
                refresher.abort();
                let _ = http.await;
                return Ok(());
            }
        }
        Some(e)
    } else {
        tracing::info!("leader election disabled: make sure only one replica runs");
        None
    };

    // While leading, renew in the background; losing the Lease stops the controller.
    // The Lease is released only after the controller has drained, so a standby never
    // acts while this replica still finishes a reconcile.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = elector.map(|mut e| {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = e.hold() => { let _ = tx.send(Stop::LostLeadership); }
                _ = done_rx => { e.release().await; }
            }
        })
    });

    let operator = controller::run(
        ctx.clone(),
        args.namespace.clone(),
        Some(cache.subscribe()),
        stopped(stop_rx.clone()),
    );
    let result = if args.kueue || args.multikueue_dispatcher {
        let check = args.kueue.then(|| {
            crate::kueue::controller::run(
                ctx.clone(),
                args.namespace.clone(),
                Some(cache.subscribe()),
                stopped(stop_rx.clone()),
            )
        });
        let dispatcher = args.multikueue_dispatcher.then(|| {
            crate::kueue::dispatcher::run(
                ctx.clone(),
                args.namespace.clone(),
                TimeDelta::seconds(args.dispatch_timeout),
                Some(cache.subscribe()),
                stopped(stop_rx.clone()),
            )
        });
        let kueue = async move {
            let (a, b) = futures::join!(
                async move {
                    match check {
                        Some(f) => f.await,
                        None => Ok(()),
                    }
                },
                async move {
                    match dispatcher {
                        Some(f) => f.await,
                        None => Ok(()),
                    }
                }
            );
            a.and(b)
        };
        // Either ending on its own (a watch failure, a missing CRD) stops the other.
        let then_stop = |tx: watch::Sender<Stop>| {
            move |r: Result<(), controller::Error>| {
                let _ = tx.send_if_modified(|s| {
                    let running = *s == Stop::Running;
                    if running {
                        *s = Stop::Signal;
                    }
                    running
                });
                r
            }
        };
        use futures::FutureExt;
        let (a, b) = tokio::join!(
            operator.map(then_stop(stop_tx.clone())),
            kueue.map(then_stop(stop_tx.clone()))
        );
        a.and(b)
    } else {
        operator.await
    };
    // The controller can also end on its own (watch failure); stop everything else.
    let _ = stop_tx.send_if_modified(|s| {
        if *s == Stop::Running {
            *s = Stop::Signal;
            true
        } else {
            false
        }
    });
    let _ = done_tx.send(());
    if let Some(h) = holder {
        let _ = h.await;
    }
    refresher.abort();
    let _ = http.await;
    result.map_err(|e| Failure::runtime(format!("controller: {e}")))?;
    if *stop_rx.borrow() == Stop::LostLeadership {
        return Err(Failure::runtime(
            "lost leadership; exiting so a restart rejoins as standby",
        ));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the forecast cache's background refresher and says which source it reads.
fn start_refresher(
    cache: &Arc<forecast::Cache>,
    provider: forecast::ProviderKind,
) -> tokio::task::JoinHandle<()> {
    // Look for due refreshes at least every 30 s, and several times per refresh interval.
    let tick =
        (cache.settings().refresh / 3).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let refresher = cache.spawn_refresher(tick);
    if provider == forecast::ProviderKind::Embedded {
        tracing::warn!(
            "forecast source: embedded (historical replay): real historical intensities replayed onto the current calendar, not a forecast of today's grid; set --forecast-provider for live data"
        );
    } else {
        tracing::info!(provider = provider.name(), "forecast source");
    }
    refresher
}

/// How a job's region is found: its `spec.region`, else `--region`, else the nodes'
/// region label, through the region table. The default (no `spec.region`) is logged.
async fn region_resolver(
    client: &Client,
    args: &Args,
) -> Result<controller::RegionResolver, Failure> {
    let provider = args.forecast.provider;
    let table = args
        .forecast
        .region_table()
        .map_err(|e| Failure::input(e.to_string()))?;
    let flag = args.region.clone();
    let nodes = node_regions(client, flag.as_deref()).await;
    match crate::region::resolve(None, flag.as_deref(), &nodes, &table, provider) {
        Ok(r) => tracing::info!(region = %r.provider_region, origin = ?r.origin, "default region"),
        Err(e) => tracing::warn!("no default region ({e}); jobs must set spec.region"),
    }
    Ok(Arc::new(move |spec: Option<&str>| {
        crate::region::resolve(spec, flag.as_deref(), &nodes, &table, provider)
            .map(|r| r.provider_region)
            .map_err(|e| e.to_string())
    }))
}

/// The leader elector of this replica: the Lease `--lease-name` in `--lease-namespace`
/// (else the pod's namespace, else the client's default).
fn elector(
    args: &Args,
    client: &Client,
    ident: String,
    fence: Arc<leader::Fence>,
) -> leader::Elector {
    let ns = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| client.default_namespace().to_string());
    leader::Elector::new(
        Api::<Lease>::namespaced(client.clone(), &ns),
        leader::LeaseConfig {
            name: args.lease_name.clone(),
            namespace: ns,
            identity: ident,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        },
        fence,
    )
}

/// The Kubernetes client, identifying this replica in its User-Agent
/// (`carbonshift/VERSION (IDENTITY)`), so the API server's audit log tells replicas apart.
async fn kube_client(identity: &str) -> Result<Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    let agent = format!("carbonshift/{} ({identity})", env!("CARGO_PKG_VERSION"));
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&agent) {
        config.headers.push((reqwest::header::USER_AGENT, v));
    }
    Client::try_from(config)
}

//! A proxy between the operator and the API server that holds back the events of chosen
//! watches: the operator then reconciles from a cache that does not yet show its own writes,
//! as a real controller does when its watch lags (a busy API server, a slow network).
//!
//! `kubectl proxy` (the real client, with the cluster's credentials) serves the API on
//! plain HTTP on 127.0.0.1; this proxy sits in front of it and forwards every request.
//! Responses to watch requests (`watch=true` or `watch=1`) whose path contains one of the
//! given fragments are streamed with each chunk released `delay` after it arrived; all other
//! requests pass at once. A kubeconfig for the proxy is written for the operator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::cluster::{self, must, wait_until};

struct Shared {
    upstream: String,
    http: reqwest::Client,
    delay: Duration,
    paths: Vec<String>,
    delayed_watches: AtomicU64,
    delayed_chunks: AtomicU64,
}

/// The running proxy pair; both stop on drop.
pub struct WatchDelay {
    kubectl: Option<Child>,
    server: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    pub kubeconfig: PathBuf,
}

impl WatchDelay {
    /// Starts `kubectl proxy` and the delaying proxy; writes `dir/kubeconfig-delayed`.
    pub async fn start(dir: &Path, delay: Duration, paths: &[&str]) -> Self {
        let kport = cluster::free_port();
        let kubectl = must(
            "spawn kubectl proxy",
            Command::new(cluster::tool("kubectl"))
                .args([
                    "proxy",
                    "--address",
                    "127.0.0.1",
                    "--port",
                    &kport.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        );
        let upstream = format!("http://127.0.0.1:{kport}");
        let http = must(
            "HTTP client",
            reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .build(),
        );
        wait_until("kubectl proxy answers", Duration::from_secs(30), || {
            let http = http.clone();
            let url = format!("{upstream}/readyz");
            async move {
                let ok = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok::<_, String>(ok.then_some(()))
            }
        })
        .await;
        let shared = Arc::new(Shared {
            upstream,
            http,
            delay,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            delayed_watches: AtomicU64::new(0),
            delayed_chunks: AtomicU64::new(0),
        });
        let listener = must(
            "bind the delaying proxy",
            tokio::net::TcpListener::bind("127.0.0.1:0").await,
        );
        let port = must("proxy address", listener.local_addr()).port();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let kubeconfig = dir.join("kubeconfig-delayed");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: delayed\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: delayed\n  context:\n    cluster: delayed\n    user: none\n\
             current-context: delayed\nusers:\n- name: none\n  user: {{}}\n"
        );
        must("write kubeconfig", std::fs::write(&kubeconfig, text));
        Self {
            kubectl: Some(kubectl),
            server,
            shared,
            kubeconfig,
        }
    }

    /// Watch requests held back so far.
    pub fn delayed_watches(&self) -> u64 {
        self.shared.delayed_watches.load(Ordering::Relaxed)
    }

    /// Chunks of watch responses held back so far (about one per event).
    pub fn delayed_chunks(&self) -> u64 {
        self.shared.delayed_chunks.load(Ordering::Relaxed)
    }
}

impl Drop for WatchDelay {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(mut k) = self.kubectl.take() {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

fn bad_gateway(e: impl std::fmt::Display) -> Response {
    let mut r = Response::new(Body::from(format!("proxy: {e}")));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// Copies the headers that describe the content (not hop-by-hop ones, not the length of a
/// body that may be streamed).
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        let name = k.as_str();
        if matches!(
            name,
            "host" | "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

async fn forward(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let watch = pq.contains("watch=true") || pq.contains("watch=1");
    let delayed = watch && st.paths.iter().any(|p| pq.contains(p.as_str()));
    let method = req.method().clone();
    let mut headers = HeaderMap::new();
    copy_headers(req.headers(), &mut headers);
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(e),
    };
    let upstream = st
        .http
        .request(method, format!("{}{pq}", st.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let mut resp = match upstream {
        Ok(r) => r,
        Err(e) => return bad_gateway(e),
    };
    let mut out = Response::new(Body::empty());
    *out.status_mut() = resp.status();
    copy_headers(resp.headers(), out.headers_mut());
    if !watch {
        match resp.bytes().await {
            Ok(b) => *out.body_mut() = Body::from(b),
            Err(e) => return bad_gateway(e),
        }
        return out;
    }
    if delayed {
        st.delayed_watches.fetch_add(1, Ordering::Relaxed);
    }
    let delay = if delayed { st.delay } else { Duration::ZERO };
    // Reader: chunks as they arrive, stamped. Writer: each released `delay` later.
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Bytes)>();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = resp.chunk().await {
            if arrived_tx.send((Instant::now(), chunk)).is_err() {
                break;
            }
        }
    });
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let shared = st.clone();
    tokio::spawn(async move {
        while let Some((at, chunk)) = arrived_rx.recv().await {
            tokio::time::sleep_until((at + delay).into()).await;
            if delayed {
                shared.delayed_chunks.fetch_add(1, Ordering::Relaxed);
            }
            if out_tx.send(Ok(chunk)).await.is_err() {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    *out.body_mut() = Body::from_stream(stream);
    out
}

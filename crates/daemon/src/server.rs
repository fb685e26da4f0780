//! The accept loop: at most `--max-connections` connections at once (the next waits in the
//! listen backlog, costing the daemon no fd), each given `--header-timeout` to send its
//! request head, so idle or half-sent requests cannot hold the daemon for long. A client
//! other than root holds at most `--max-client-connections` of them, and all such clients
//! together leave an eighth to root, so that no user can lock the operator out. Every
//! request carries its peer's credentials (`SO_PEERCRED`), for the log and for [`Caller`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::errors::ApiError;
use crate::quota::{PerClient, Place};

/// Who sent a request, as the kernel saw the connecting process.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

/// Who is asking, for what they may do. Root, the operator, may do anything. Another user,
/// let in by `--socket-group`, runs jobs only as itself, on dirs it owns, and sees and stops
/// only its own; sealing, removing and building (which reads the host as root) are root's.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub fn is_operator(&self) -> bool {
        self.uid == 0
    }

    /// Refuses `what` unless the caller is root.
    pub fn require_operator(&self, what: &str) -> Result<(), ApiError> {
        if self.is_operator() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only root may {what} (this client is uid {})", self.uid),
        ))
    }

    /// Whether the caller may see and stop a task `owner` started.
    pub fn owns(&self, owner: u32) -> bool {
        self.is_operator() || self.uid == owner
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        // Every connection carries its peer; one the kernel could not name may do nothing.
        match parts.extensions.get::<Option<Peer>>().copied().flatten() {
            Some(peer) => Ok(Caller {
                uid: peer.uid,
                gid: peer.gid,
            }),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the client's credentials are unknown",
            )),
        }
    }
}

pub struct Limits {
    pub max_connections: usize,
    pub max_client_connections: usize,
    pub header_timeout: Duration,
}

/// The connections each client other than root holds, and all of them together.
struct Held {
    per_client: Arc<PerClient>,
    others: Arc<Semaphore>,
}

/// One connection of a client other than root, counted while it lives.
struct Slot {
    _place: Place,
    _other: tokio::sync::OwnedSemaphorePermit,
}

impl Held {
    /// A slot for a connection of `peer`; an error when its client (or the unknown peers
    /// together, as uid `u32::MAX`) holds all it may. Root needs none.
    fn admit(&self, peer: Option<Peer>) -> Result<Option<Slot>, &'static str> {
        let uid = peer.map_or(u32::MAX, |p| p.uid);
        if uid == 0 {
            return Ok(None);
        }
        let place = self
            .per_client
            .take(uid)
            .ok_or("this client holds --max-client-connections connections already")?;
        let other = Arc::clone(&self.others)
            .try_acquire_owned()
            .map_err(|_| "clients other than root hold every connection they may")?;
        Ok(Some(Slot {
            _place: place,
            _other: other,
        }))
    }
}

/// Answers a connection refused at accept with 429 and closes it, reading nothing: waiting
/// for its request head would hold the slot it was refused.
fn refuse(stream: &tokio::net::UnixStream, why: &str) {
    let body =
        serde_json::json!({"error": {"code": "too_many_requests", "message": why}}).to_string();
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A fresh socket's buffer takes it whole; a peer that cannot read it loses nothing.
    let _ = stream.try_write(answer.as_bytes());
}

/// Serves `router` on `listener` until `stop` completes; then accepts no more.
pub async fn serve(listener: UnixListener, router: Router, limits: Limits, stop: impl Future) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let reserved = (limits.max_connections / 8)
        .max(1)
        .min(limits.max_connections - 1);
    let held = Held {
        per_client: PerClient::new(limits.max_client_connections),
        others: Arc::new(Semaphore::new(limits.max_connections - reserved)),
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit,
            _ = &mut stop => return,
        };
        let Ok(permit) = permit else { return };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => return,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of fds, most likely: wait for some to be freed rather than spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = stream.peer_cred().ok().map(|cred| Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        });
        let slot = match held.admit(peer) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(
                    peer_uid = peer.map(|p| p.uid),
                    peer_pid = peer.and_then(|p| p.pid),
                    "connection refused: {why}"
                );
                refuse(&stream, why);
                continue;
            }
        };
        let router = router.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<_>| {
                request.extensions_mut().insert(peer);
                router.clone().oneshot(request)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("connection: {e}");
            }
            drop(slot);
            drop(permit);
        });
    }
}

/// Logs each request with its peer, status and duration.
pub async fn log_request(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<Option<Peer>>()
        .copied()
        .flatten();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        peer_uid = peer.map(|p| p.uid),
        peer_gid = peer.map(|p| p.gid),
        peer_pid = peer.and_then(|p| p.pid),
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

//! The HTTP API (axum): raftexample's own routes, so its curl commands work unchanged, plus
//! `/status` and `/metrics`.
//!
//! | route | does | answers |
//! |---|---|---|
//! | `PUT /{key}` (body: value) | sets the key once committed | 204; 413 over the inline limit |
//! | `GET /{key}[?serializable=true]` | linearizable read (ReadIndex), or local | 200 value; 404 |
//! | `POST /{id}` (body: peer URL) | adds member `id` | 204 |
//! | `DELETE /{id}` | removes member `id` | 204 |
//! | `PUT /blob/{key}` (body: any size) | streams the body to the replicas through the data stream, then commits a reference | 204 with `x-sha256`; 503 when a majority is unreachable |
//! | `GET /blob/{key}[?serializable=true]` | streams the blob (fetched from a replica first if this node lacks it), or an inline value | 200 with `content-length` and `x-sha256`; 404 |
//! | `GET /status` | this node's view and its peers (JSON) | 200 |
//! | `GET /health` | a leader is known and a linearizable read-index round trip succeeds within 1 s (etcd's `/health`) | 200 `{"health":"true"}`; 503 `{"health":"false","reason":…}` |
//! | `GET /metrics` | Prometheus text | 200 |
//!
//! Errors answer with the status of [`KvError::http_status`] and the error as text: 400 bad key
//! or member, 404 not found, 410 removed node, 413 value too large (naming `/blob/`), 503 no
//! leader (with the reason), 504 timeout, with the error's kind in the `x-kv-error` header
//! ([`ERROR_HEADER`]). The names `status`, `health` and `metrics` are taken,
//! so keys of those names are not reachable over HTTP (the native client reaches them).

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::cluster::parse_peer_url;
use crate::error::KvError;
use crate::metrics::timed;
use crate::node::{BlobValue, KvHandle};
use crate::state::Value;

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves the API of `handle`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is served until it returns.
    pub async fn start(handle: KvHandle, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = router(handle);
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the HTTP server stopped");
            }
        });
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for open requests.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the server stops either way.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The `api` label of the HTTP API's request metrics.
const API: &str = "http";

/// The API's routes.
pub fn router(handle: KvHandle) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/blob/{key}", get(get_blob).put(put_blob))
        .route(
            "/{key}",
            get(get_key)
                .put(put_key)
                .post(add_member)
                .delete(remove_member),
        )
        .layer(axum::middleware::from_fn_with_state(
            handle.clone(),
            with_context,
        ))
        .with_state(handle)
}

/// Runs a request inside the context its headers carry (`traceparent`, `tracestate`,
/// [`crate::audit::CALLER_HEADER`]): a write forwarded to the leader carries it, its raft entry
/// carries it to every member, and each node's audit log names it. Headers over the context's
/// limits are refused with 400 and `x-kv-error: bad_context`.
async fn with_context(
    State(h): State<KvHandle>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let context = match crate::audit::from_headers(request.headers()) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                [(ERROR_HEADER, "bad_context")],
                format!("{e}\n"),
            )
                .into_response();
        }
    };
    if context.is_empty() {
        return next.run(request).await;
    }
    let method = format!("http.{}", request.method().as_str().to_ascii_lowercase());
    let key = request.uri().path().trim_start_matches('/').to_owned();
    crate::audit::request(h.id(), &method, &key, &context);
    peerwire::context::scope(context, next.run(request)).await
}

/// The header naming an error's kind ([`KvError::code`]), so an HTTP client can tell a request
/// that was certainly not applied (`not_leader`, `no_leader`, `dropped`, `stopping`,
/// `unavailable`) from one whose outcome is unknown (`timeout`, `indeterminate`, `forward`)
/// without parsing the text.
pub const ERROR_HEADER: &str = "x-kv-error";

fn error(e: KvError) -> Response {
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(ERROR_HEADER, e.code())], format!("{e}\n")).into_response()
}

async fn status(State(h): State<KvHandle>) -> Response {
    axum::Json(h.status()).into_response()
}

/// How long `/health` waits for a read-index round trip.
const HEALTH_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn health(State(h): State<KvHandle>) -> Response {
    match h.health(HEALTH_WITHIN).await {
        Ok(_) => axum::Json(serde_json::json!({"health": "true"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"health": "false", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ReadOptions {
    #[serde(default)]
    serializable: bool,
}

async fn get_key(
    State(h): State<KvHandle>,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Response {
    match timed(API, "get", h.get(&key, opts.serializable)).await {
        Ok(Value::Inline(v)) => (StatusCode::OK, v).into_response(),
        Ok(Value::Blob(b)) => (
            StatusCode::CONFLICT,
            format!(
                "`{key}` holds a blob of {} bytes; GET /blob/{key} streams it\n",
                b.size
            ),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

/// The header naming a blob's SHA-256.
const SHA256_HEADER: &str = "x-sha256";

async fn put_blob(
    State(h): State<KvHandle>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(len) = declared_length(&headers)
        && len > h.blob_max()
    {
        return error(KvError::BlobTooLarge {
            len,
            max: h.blob_max(),
        });
    }
    match h.put_blob(key, body.into_data_stream()).await {
        Ok(blob) => (StatusCode::NO_CONTENT, [(SHA256_HEADER, blob.sha256)]).into_response(),
        Err(e) => error(e),
    }
}

async fn get_blob(
    State(h): State<KvHandle>,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Response {
    match h.get_blob(&key, opts.serializable).await {
        Ok(BlobValue::Inline(v)) => (StatusCode::OK, v).into_response(),
        Ok(BlobValue::File { path, blob }) => match tokio::fs::File::open(&path).await {
            Ok(file) => (
                StatusCode::OK,
                [
                    (header::CONTENT_LENGTH, blob.size.to_string()),
                    (header::CONTENT_TYPE, "application/octet-stream".into()),
                    (header::HeaderName::from_static(SHA256_HEADER), blob.sha256),
                ],
                Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                    file,
                    256 * 1024,
                )),
            )
                .into_response(),
            // Released between the read and the open: the key holds something else now.
            Err(e) => error(KvError::Blob(format!("the blob went away: {e}"))),
        },
        Err(e) => error(e),
    }
}

/// The body length the request declares, if it does.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a body of at most `max` bytes, or says how large it was.
async fn read_limited(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, KvError> {
    let declared = declared_length(headers).map(|len| usize::try_from(len).unwrap_or(usize::MAX));
    if let Some(len) = declared
        && len > max
    {
        return Err(KvError::ValueTooLarge { len, max });
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| KvError::ValueTooLarge {
            len: declared.unwrap_or(max + 1),
            max,
        })
}

async fn put_key(
    State(h): State<KvHandle>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let value = match read_limited(&headers, body, h.inline_max()).await {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    match timed(API, "put", h.put(key, value.to_vec())).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

fn member_id(raw: &str) -> Result<u64, KvError> {
    match raw.parse::<u64>() {
        Ok(0) | Err(_) => Err(KvError::BadMember(format!(
            "`{raw}` is not a member id (a number from 1)"
        ))),
        Ok(id) => Ok(id),
    }
}

async fn add_member(
    State(h): State<KvHandle>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = match member_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    let url = match read_limited(&headers, body, 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => return error(KvError::BadMember("the peer URL is too long".into())),
    };
    let addr = match parse_peer_url(&url) {
        Ok(a) => a,
        Err(e) => return error(KvError::BadMember(e.to_string())),
    };
    match h.add_member(id, addr).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn remove_member(State(h): State<KvHandle>, Path(id): Path<String>) -> Response {
    let id = match member_id(&id) {
        Ok(id) => id,
        Err(e) => return error(e),
    };
    match h.remove_member(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

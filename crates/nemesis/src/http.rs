//! A small HTTP client for the nodes' HTTP API (hyper), telling apart a request that was never
//! sent from one whose answer did not come.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The node answered.
    Status {
        /// The HTTP status.
        code: u16,
        /// The error kind the node named (`x-kv-error`), if any.
        error: Option<String>,
        /// The body.
        body: Bytes,
    },
    /// The connection could not be made: the request was never sent.
    NotSent(String),
    /// The request may have been sent, but no answer came (a reset, a timeout).
    Broken(String),
}

/// A pooled HTTP/1 client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client that gives up connecting after 1 s.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(connector);
        Self { inner }
    }

    /// Sends `method` to `http://addr/path`, waiting at most `within` for the whole answer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the request; a write it carried may still be applied.
    pub async fn request(
        &self,
        method: Method,
        addr: SocketAddr,
        path: &str,
        body: Option<Bytes>,
        within: Duration,
    ) -> Answer {
        let req = match hyper::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(body.unwrap_or_default()))
        {
            Ok(r) => r,
            Err(e) => return Answer::NotSent(e.to_string()),
        };
        let call = async {
            let resp = match self.inner.request(req).await {
                Ok(r) => r,
                Err(e) if e.is_connect() => return Answer::NotSent(e.to_string()),
                Err(e) => return Answer::Broken(e.to_string()),
            };
            let code = resp.status().as_u16();
            let error = resp
                .headers()
                .get(peerwire_kv::http::ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match resp.into_body().collect().await {
                Ok(b) => Answer::Status {
                    code,
                    error,
                    body: b.to_bytes(),
                },
                Err(e) => Answer::Broken(e.to_string()),
            }
        };
        match tokio::time::timeout(within, call).await {
            Ok(answer) => answer,
            Err(_) => Answer::Broken(format!("no answer within {within:?}")),
        }
    }

    /// `GET /status` of the node at `addr`, as JSON.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn status(&self, addr: SocketAddr) -> Option<serde_json::Value> {
        match self
            .request(Method::GET, addr, "/status", None, Duration::from_secs(1))
            .await
        {
            Answer::Status {
                code: 200, body, ..
            } => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }
}

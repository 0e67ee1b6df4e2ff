//! The HTTP side: the tower layers, and the one handler that turns a hyper request into a
//! [`mimi_ds::transport::HttpRequest`] for the [`Router`](mimi_ds::transport::Router).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use mimi_ds::transport::{HttpResponse, OCTET_STREAM};
use mimi_ds::wire::{
    encode, DsError, DsErrorDetails, DsResponse, DsResponseBody, ErrorCode,
    PROTOCOL_VERSION_MIMI_DS10,
};
use tower::{Service, ServiceBuilder};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::store::{Backend, OwnedRequest};
use crate::Shared;

/// The provider the connection's client certificate authenticated, put into every request of
/// the connection by the accept loop (`None`: no certificate, or one naming no known provider).
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer(pub(crate) Option<String>);

/// A `DSResponse` carrying a `DSError`, the body of every error this server answers itself,
/// so that clients read every error the same way as the router's.
pub(crate) fn error_response(
    status: StatusCode,
    code: ErrorCode,
    description: &str,
) -> Response<Full<Bytes>> {
    let body = encode(&DsResponse {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsResponseBody::Error(DsError {
            code,
            description: description.as_bytes().to_vec().into(),
            details: DsErrorDetails::None,
        }),
    })
    .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(OCTET_STREAM));
    response
}

/// Gives the layers' own answers (413 from the body limit, 408 from the timeout, whose bodies
/// are plain text or empty) the `DSResponse` error body.
fn with_error_body<B>(response: Response<B>) -> Response<Either<Full<Bytes>, B>> {
    let is_ours = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == OCTET_STREAM.as_bytes());
    let status = response.status();
    let replacement = match status {
        StatusCode::PAYLOAD_TOO_LARGE if !is_ours => Some(error_response(
            status,
            ErrorCode::RequestTooLarge,
            "body exceeds the size limit",
        )),
        StatusCode::REQUEST_TIMEOUT if !is_ours => Some(error_response(
            status,
            ErrorCode::MalformedRequest,
            "the request was not complete within the deadline",
        )),
        _ => None,
    };
    match replacement {
        Some(replacement) => replacement.map(Either::Left),
        None => response.map(Either::Right),
    }
}

/// Counts every answer by endpoint and HTTP status, with its latency from the request's head
/// to its answer. It sits outside the layers that answer by themselves (413 body limit, 408
/// timeout), so that their answers are counted like the handler's.
pub(crate) struct Counted<S, B> {
    inner: S,
    shared: Arc<Shared<B>>,
}

impl<S: Clone, B> Clone for Counted<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for Counted<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Backend,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let operation = crate::metrics::operation(request.uri().path());
        let started = Instant::now();
        let shared = Arc::clone(&self.shared);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Ok(response) = answer.await;
            shared.request_metrics.observe(
                operation,
                response.status().as_u16(),
                started.elapsed(),
            );
            Ok(response)
        })
    }
}

/// The service every connection clones (the concurrency limit's semaphore is shared by the
/// clones), in order from the outside: tracing, counting, error bodies, body limit, timeout,
/// concurrency limit, handler.
pub(crate) fn make_service<B: Backend>(
    shared: Arc<Shared<B>>,
) -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<
        impl hyper::body::Body<
                Data = Bytes,
                Error = impl Into<Box<dyn std::error::Error + Send + Sync>>,
            > + Send
            + 'static,
    >,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let limits = shared.limits.clone();
    let counted = Arc::clone(&shared);
    ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer_fn(move |inner| Counted {
            inner,
            shared: Arc::clone(&counted),
        })
        .map_response(with_error_body)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .concurrency_limit(limits.max_concurrent_requests)
        .service_fn(move |request| handle(Arc::clone(&shared), request))
}

/// One request: read the body (within the limit), route it through the storage backend (on a
/// blocking thread for SQLite, on the executor for PostgreSQL), wake the relay if the DS
/// stored fanout.
async fn handle<B: Backend, Body>(
    shared: Arc<Shared<B>>,
    request: Request<Body>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    Body: hyper::body::Body + Send,
    Body::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = request
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error: Box<dyn std::error::Error + Send + Sync> = error.into();
            let too_large = error.is::<http_body_util::LengthLimitError>()
                || std::error::Error::source(&*error)
                    .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            return Ok(if too_large {
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::RequestTooLarge,
                    "body exceeds the size limit",
                )
            } else {
                error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedRequest,
                    "the request body could not be read",
                )
            });
        }
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    // HTTP/2 names the authority in `:authority`, which hyper puts in the URI, not in `Host`
    // (RFC 9113 §8.3.1); the router checks it the same way.
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            headers.push(("host".to_owned(), authority.as_str().to_owned()));
        }
    }
    let started = Instant::now();
    let request = OwnedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers,
        body,
        authenticated_peer: peer.0,
    };
    let response = match B::route(&shared, request).await {
        Ok(routed) => {
            if !routed.fanout.is_empty() {
                // Stored in the outbox by the same write; the relay delivers it.
                shared.relay_wake.notify_one();
            }
            if let Some(call) = &routed.call {
                shared.request_metrics.observe_call(call, started.elapsed());
            }
            routed.response
        }
        Err(internal) => internal,
    };
    Ok(to_http(response))
}

fn to_http(response: HttpResponse) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(response.status)
        .header(CONTENT_TYPE, response.content_type);
    for (name, value) in response.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|_| internal_error())
}

/// A 500 that says nothing about its cause (that is for the logs), like the router's.
fn internal_error() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"internal error")));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(mimi_ds::transport::TEXT_PLAIN),
    );
    response
}

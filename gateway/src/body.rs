//! Bodies that stream through the gateway, counted on the way, and the one log line
//! each request leaves when its response ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use session_core::session::SessionId;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body passed through as it arrives, its data bytes counted.
pub struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        Self { inner, bytes }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What one request's log line says. It names the service and the session, never a
/// token, a cookie or the user id: the user appears as `user_key`, a hash prefix.
pub struct RequestLog {
    pub method: String,
    pub started: Instant,
    pub status: u16,
    pub service: Option<String>,
    pub session_id: Option<SessionId>,
    pub user_key: Option<String>,
    /// Why the gateway answered itself, if it did.
    pub refused: Option<&'static str>,
    pub bytes_in: Arc<AtomicU64>,
}

impl RequestLog {
    pub fn new(method: &str) -> Self {
        Self {
            method: method.to_owned(),
            started: Instant::now(),
            status: 0,
            service: None,
            session_id: None,
            user_key: None,
            refused: None,
            bytes_in: Arc::default(),
        }
    }

    fn emit(&self, bytes_out: u64) {
        tracing::info!(
            method = %self.method,
            status = self.status,
            service = self.service.as_deref(),
            session_id = self.session_id.as_ref().map(SessionId::as_str),
            user_key = self.user_key.as_deref(),
            refused = self.refused,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            "request"
        );
    }
}

/// A response body, the gateway's own or the session's; when it ends, or the client
/// goes away, the request's log line is written.
pub struct ResponseBody {
    inner: Either<Full<Bytes>, Incoming>,
    log: Option<RequestLog>,
    bytes_out: u64,
}

impl ResponseBody {
    pub fn own(text: &'static str, log: RequestLog) -> Self {
        Self {
            inner: Either::Left(Full::new(Bytes::from_static(text.as_bytes()))),
            log: Some(log),
            bytes_out: 0,
        }
    }

    /// A whole body the gateway holds: a page it made on the login host, or the API's
    /// answer to the console, read before it is passed on.
    pub fn page(body: impl Into<Bytes>, log: RequestLog) -> Self {
        Self {
            inner: Either::Left(Full::new(body.into())),
            log: Some(log),
            bytes_out: 0,
        }
    }

    pub fn upstream(body: Incoming, log: RequestLog) -> Self {
        Self {
            inner: Either::Right(body),
            log: Some(log),
            bytes_out: 0,
        }
    }

    /// A body that leaves no log line (the health check).
    pub fn unlogged(text: &'static str) -> Self {
        Self {
            inner: Either::Left(Full::new(Bytes::from_static(text.as_bytes()))),
            log: None,
            bytes_out: 0,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes_out += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.emit(self.bytes_out);
        }
    }
}

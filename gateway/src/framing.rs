//! A second, independent read of how each request on a connection is framed.
//!
//! hyper (1.12) refuses a head with two different Content-Length values or a
//! Transfer-Encoding that does not end in `chunked`, but it settles a head carrying
//! both Content-Length and Transfer-Encoding the way RFC 9112 §6.3 allows: it drops
//! Content-Length, reads the body as chunked and closes the connection afterwards. It
//! also folds repeated equal Content-Length lines into one. Neither leaves a trace in
//! the request it hands over, so the gateway could not refuse such a request from the
//! request alone. Request smuggling lives in exactly these disagreements, and the
//! gateway's rule is to refuse them, never to forward a guess.
//!
//! [`Framing`] watches the bytes hyper reads, finds each request head with httparse
//! (hyper's own parser), records a [`Verdict`] on its framing, and follows the body
//! (Content-Length bytes, or chunks with httparse's chunk-size parser) to the next
//! head. The handler takes the verdicts in order, one per request, and checks that
//! each names the request's method and target. Whenever this reader is unsure (a head
//! it cannot parse, a chunk line it does not accept, the bytes after an upgrade
//! request), it stops: every later request on the connection is refused, and refusals
//! close the connection. So it can refuse too much, never let through too much.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Headers a head may have before this reader gives up on it (hyper refuses more than
/// 100 itself).
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;
/// Request heads read ahead of the handler at most (the ALB does not pipeline).
const MAX_PIPELINED: usize = 16;

/// What this reader found in one request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// One unambiguous framing; the head's method and request target, as sent.
    Clean { method: String, target: String },
    /// A framing the gateway refuses, and why.
    Refuse(&'static str),
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    /// Stopped following the stream: after an upgrade request, or when unsure.
    Stopped,
}

/// The framing of a connection's requests, as its bytes arrive.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    /// The head or line being read.
    buf: Vec<u8>,
    max_head: usize,
    verdicts: VecDeque<Verdict>,
}

impl Tracker {
    pub fn new(max_head: usize) -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
            max_head,
            verdicts: VecDeque::new(),
        }
    }

    /// The verdict on the next request hyper hands over, if this reader saw its head
    /// and still follows the stream.
    pub fn next_verdict(&mut self) -> Option<Verdict> {
        self.verdicts.pop_front()
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Stopped => return,
                State::Head => self.head(bytes),
                State::Fixed(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Fixed(left - n)
                    };
                    &bytes[n as usize..]
                }
                State::ChunkSize => match self.line(bytes) {
                    (None, rest) => rest,
                    (Some(line), rest) => {
                        self.state = match chunk_size(&line) {
                            Some(0) => State::Trailers,
                            Some(size) => State::ChunkData(size),
                            None => State::Stopped,
                        };
                        rest
                    }
                },
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(left - n)
                    };
                    &bytes[n as usize..]
                }
                State::ChunkDataEnd => match self.line(bytes) {
                    (None, rest) => rest,
                    (Some(line), rest) => {
                        self.state = if line == b"\r\n" {
                            State::ChunkSize
                        } else {
                            State::Stopped
                        };
                        rest
                    }
                },
                State::Trailers => match self.line(bytes) {
                    (None, rest) => rest,
                    (Some(line), rest) => {
                        if line == b"\r\n" {
                            self.state = State::Head;
                        } else if !line.ends_with(b"\r\n") {
                            self.state = State::Stopped;
                        }
                        rest
                    }
                },
            };
        }
    }

    /// Reads a line ending in `\n` into `buf`; the line once complete, and the bytes
    /// after it.
    fn line<'a>(&mut self, bytes: &'a [u8]) -> (Option<Vec<u8>>, &'a [u8]) {
        let end = bytes.iter().position(|&b| b == b'\n');
        let take = end.map_or(bytes.len(), |i| i + 1);
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() > MAX_LINE {
            self.state = State::Stopped;
            return (None, &[]);
        }
        match end {
            Some(_) => (Some(std::mem::take(&mut self.buf)), &bytes[take..]),
            None => (None, &[]),
        }
    }

    fn head<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let before = self.buf.len();
        let take = bytes
            .len()
            .min(self.max_head + 1 - before.min(self.max_head));
        self.buf.extend_from_slice(&bytes[..take]);
        // Parse only once the head may have ended, as hyper does: a head sent a byte at
        // a time must not be parsed again for every byte.
        let window = &self.buf[before.saturating_sub(2)..];
        let may_end =
            window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n");
        if !may_end && self.buf.len() <= self.max_head {
            return &[];
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => {
                let (verdict, next) = judge(&request);
                self.verdicts.push_back(verdict);
                // Requests sent ahead of their answers are followed this far only;
                // any beyond are refused.
                self.state = if self.verdicts.len() < MAX_PIPELINED {
                    next
                } else {
                    State::Stopped
                };
                self.buf.clear();
                // The head ends within the new bytes: it was incomplete without them.
                &bytes[len - before..]
            }
            Ok(httparse::Status::Partial) if self.buf.len() <= self.max_head => &[],
            // Too large (hyper answers 431), or not a head hyper would take either.
            _ => {
                self.verdicts
                    .push_back(Verdict::Refuse("unreadable request head"));
                self.state = State::Stopped;
                &[]
            }
        }
    }
}

/// The verdict on a head, and what follows it.
fn judge(request: &httparse::Request<'_, '_>) -> (Verdict, State) {
    let mut lengths = Vec::new();
    let mut encodings = Vec::new();
    let mut upgrade = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            lengths.push(header.value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.push(header.value);
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let method = request.method.unwrap_or_default();
    let refuse = |why| (Verdict::Refuse(why), State::Stopped);
    if !lengths.is_empty() && !encodings.is_empty() {
        return refuse("both Content-Length and Transfer-Encoding");
    }
    if lengths.len() > 1 {
        return refuse("more than one Content-Length");
    }
    if encodings.len() > 1 {
        return refuse("more than one Transfer-Encoding");
    }
    let next = if let Some(encoding) = encodings.first() {
        if !encoding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return refuse("a Transfer-Encoding other than chunked");
        }
        State::ChunkSize
    } else if let Some(length) = lengths.first() {
        let digits = length.trim_ascii();
        let parsed = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.len() <= 19 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        match parsed {
            Some(0) => State::Head,
            Some(n) => State::Fixed(n),
            None => return refuse("an invalid Content-Length"),
        }
    } else {
        State::Head
    };
    // What follows an upgrade request is the tunnel's, or, if the upgrade is refused,
    // more requests: this reader cannot know which and stops; the gateway closes the
    // connection after a refused upgrade.
    let next = if upgrade || method.eq_ignore_ascii_case("CONNECT") {
        State::Stopped
    } else {
        next
    };
    let verdict = Verdict::Clean {
        method: method.to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
    };
    (verdict, next)
}

/// A chunk-size line: hex digits, optionally `;` extensions, then CRLF.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // httparse must read the same size, or the two readers could disagree.
    match httparse::parse_chunk_size(&[line, b"\r\n"].concat()) {
        Ok(httparse::Status::Complete((_, size))) => {
            let ours = u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
            (ours == size).then_some(size)
        }
        _ => None,
    }
}

/// A connection whose reads are followed by a [`Tracker`].
pub struct Framing<IO> {
    io: IO,
    tracker: Arc<Mutex<Tracker>>,
}

impl<IO> Framing<IO> {
    pub fn new(io: IO, tracker: Arc<Mutex<Tracker>>) -> Self {
        Self { io, tracker }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Framing<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.tracker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .feed(read);
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Framing<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clean(method: &str, target: &str) -> Verdict {
        Verdict::Clean {
            method: method.into(),
            target: target.into(),
        }
    }

    fn verdicts(stream: &[u8]) -> Vec<Verdict> {
        let mut tracker = Tracker::new(64 * 1024);
        tracker.feed(stream);
        std::iter::from_fn(|| tracker.next_verdict()).collect()
    }

    const KEEP_ALIVE: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        6;ext=1\r\nGET /x\r\n0\r\nX-Trailer: t\r\n\r\n\
        DELETE /d?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn requests_on_a_keep_alive_connection_are_followed_through_their_bodies() {
        assert_eq!(
            verdicts(KEEP_ALIVE),
            [
                clean("GET", "/a"),
                clean("POST", "/b"),
                clean("POST", "/c"),
                clean("DELETE", "/d?q=1"),
            ]
        );
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_reads_the_same(cuts in proptest::collection::vec(0..KEEP_ALIVE.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut tracker = Tracker::new(64 * 1024);
            let mut from = 0;
            for cut in cuts.into_iter().chain([KEEP_ALIVE.len()]) {
                tracker.feed(&KEEP_ALIVE[from..cut]);
                from = cut;
            }
            let got: Vec<_> = std::iter::from_fn(|| tracker.next_verdict()).collect();
            prop_assert_eq!(got, verdicts(KEEP_ALIVE));
        }

        #[test]
        fn any_bytes_are_followed_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut tracker = Tracker::new(1024);
            tracker.feed(&bytes);
        }
    }

    #[test]
    fn ambiguous_framing_is_refused_and_stops_the_reader() {
        for (head, why) in [
            (
                &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "more than one Transfer-Encoding",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "a Transfer-Encoding other than chunked",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n",
                "an invalid Content-Length",
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", "an invalid Content-Length"),
            (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "unreadable request head"),
        ] {
            let mut stream = head.to_vec();
            stream.extend_from_slice(b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(verdicts(&stream), [Verdict::Refuse(why)], "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn chunked_bodies_are_followed_only_as_hyper_reads_them() {
        for bad_chunks in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            let mut stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(bad_chunks);
            stream.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
            assert_eq!(
                verdicts(&stream),
                [clean("POST", "/")],
                "{}",
                String::from_utf8_lossy(bad_chunks)
            );
        }
    }

    #[test]
    fn the_reader_stops_after_an_upgrade_request() {
        let stream =
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
            \x81\x85GET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdicts(stream), [clean("GET", "/ws")]);
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_read_once_complete() {
        let head = b"GET /slow HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\r\n";
        let mut tracker = Tracker::new(1024);
        for byte in head {
            assert_eq!(tracker.next_verdict(), None);
            tracker.feed(std::slice::from_ref(byte));
        }
        assert_eq!(tracker.next_verdict(), Some(clean("GET", "/slow")));
    }

    #[test]
    fn only_so_many_pipelined_requests_are_followed() {
        let stream = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n".repeat(MAX_PIPELINED + 5);
        assert_eq!(verdicts(&stream).len(), MAX_PIPELINED);
    }

    #[test]
    fn a_head_larger_than_the_limit_is_refused() {
        let mut tracker = Tracker::new(1024);
        tracker.feed(b"GET / HTTP/1.1\r\nX: ");
        tracker.feed(&[b'a'; 2048]);
        assert_eq!(
            tracker.next_verdict(),
            Some(Verdict::Refuse("unreadable request head"))
        );
    }
}

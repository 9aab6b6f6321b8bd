//! Response bodies that keep their request's admission slot until they are sent.
//!
//! A request's slot ([`crate::observe::pressure::Slot`]) bounds how much memory requests
//! hold at once. A handler returning is not the end of that memory: a 3 MiB list answer
//! stays resident until a slow client has read it. Without this wrapper the slot went
//! back when the handler returned, and hundreds of slow readers held gigabytes of
//! finished bodies that no limit counted (the overload test saw a 1 GiB peak under a
//! 384 MiB cap).
//!
//! [`hold`] wraps a body that is resident in memory and larger than [`CHUNK`]: the body is
//! handed to the connection in `CHUNK`-sized copies, and the slot (and the original
//! buffer) is released when the last chunk has been taken. The connection buffers a
//! bounded amount ahead of the socket (hyper stops polling a body when its write buffer
//! is full), so what outlives the slot is at most that buffer, not the whole body.
//! Content-Length is kept: the wrapper reports the same exact size.
//!
//! Streamed bodies (file downloads read from disk as they are sent) hold only their read
//! buffer; they are passed through untouched and their slot is released when the
//! handler returns, so a long download does not occupy a slot for minutes.

use std::io::Error as IoError;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use poem::Body;

use crate::observe::pressure::Slot;

/// Bodies up to this size are left alone (their memory is negligible), larger ones are
/// sent in chunks of this size.
pub const CHUNK: usize = 64 * 1024;

/// `body` with `slot` kept until it has been handed over, if the body is resident and
/// large; otherwise `body` as it is (and `slot` dropped, releasing it).
pub fn hold(body: Body, slot: Slot) -> Body {
    let inner: BoxBody<Bytes, IoError> = body.into();
    match inner.size_hint().exact() {
        Some(len) if len > CHUNK as u64 => {
            Body::from(BoxBody::new(Held { inner, pending: Bytes::new(), remaining: len, slot: Some(slot) }))
        }
        _ => Body::from(inner),
    }
}

/// A body that releases its slot once its last byte has been taken.
struct Held {
    inner: BoxBody<Bytes, IoError>,
    /// Data taken from `inner` and not yet handed over.
    pending: Bytes,
    /// Bytes still to hand over (the exact size the body reports).
    remaining: u64,
    slot: Option<Slot>,
}

impl Held {
    /// The next chunk of `pending`, as its own allocation, so that what the connection
    /// still buffers after the slot is released does not pin the whole original body.
    fn next_chunk(&mut self) -> Frame<Bytes> {
        let n = self.pending.len().min(CHUNK);
        let chunk = Bytes::copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        if self.pending.is_empty() {
            // Free the original buffer now, not when the body is dropped.
            self.pending = Bytes::new();
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        if self.remaining == 0 {
            self.slot = None;
        }
        Frame::data(chunk)
    }
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = IoError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, IoError>>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                return Poll::Ready(Some(Ok(this.next_chunk())));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    // Trailers pass through as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(other) => {
                    this.slot = None;
                    return Poll::Ready(other);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::observe::pressure::Pressure;
    use std::sync::Arc;

    fn pressure() -> Arc<Pressure> {
        Arc::new(Pressure::new(&Limits { max_in_flight: 4, ..Limits::default() }))
    }

    #[tokio::test]
    async fn a_large_body_keeps_its_slot_until_the_last_chunk_is_taken() {
        let p = pressure();
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let body = hold(Body::from(data.clone()), p.admit().expect("slot"));
        let mut inner: BoxBody<Bytes, IoError> = body.into();
        assert_eq!(inner.size_hint().exact(), Some(data.len() as u64), "Content-Length is kept");
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut inner).poll_frame(cx)).await {
            let chunk = frame.expect("frame").into_data().expect("data");
            assert!(chunk.len() <= CHUNK);
            got.extend_from_slice(&chunk);
            chunks += 1;
            let done = got.len() == data.len();
            assert_eq!(
                p.in_flight(),
                usize::from(!done),
                "slot held until the last byte, after {} bytes",
                got.len()
            );
        }
        assert_eq!(got, data);
        assert_eq!(chunks, 4);
        assert_eq!(p.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_small_body_releases_its_slot_at_once_and_a_dropped_body_releases_it_too() {
        let p = pressure();
        let small = hold(Body::from(vec![1u8; 100]), p.admit().expect("slot"));
        assert_eq!(p.in_flight(), 0);
        assert_eq!(small.into_bytes().await.expect("bytes").len(), 100);
        let large = hold(Body::from(vec![1u8; CHUNK * 2]), p.admit().expect("slot"));
        assert_eq!(p.in_flight(), 1);
        drop(large);
        assert_eq!(p.in_flight(), 0, "a connection closed mid-body gives the slot back");
    }

    #[tokio::test]
    async fn a_streamed_body_is_passed_through() {
        let p = pressure();
        let stream = futures_util::stream::iter(vec![Ok::<_, IoError>(Bytes::from(vec![7u8; CHUNK * 2]))]);
        let body = hold(Body::from_bytes_stream(stream), p.admit().expect("slot"));
        assert_eq!(p.in_flight(), 0);
        assert_eq!(body.into_bytes().await.expect("bytes").len(), CHUNK * 2);
    }
}

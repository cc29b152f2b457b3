//! A request body that must arrive whole before a deadline; hyper has no such limit.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a body stopped: it was still arriving at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Set once a [`DeadlineBody`] ran out of time, so the answer can say so (the handler
/// only sees a body that failed to read).
#[derive(Clone, Default)]
pub struct Expired(Arc<AtomicBool>);

impl Expired {
    /// Whether the body ran out of time.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `inner`, failing with [`BodyTimedOut`] once `deadline` passes before its end.
pub struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Expired,
    done: bool,
}

impl DeadlineBody {
    /// Wraps `inner`; `expired` is set if the deadline passes first.
    pub fn new(inner: Body, deadline: Instant, expired: Expired) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            expired,
            done: false,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_none() {
                    this.done = true;
                }
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    this.expired.0.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_body_still_arriving_at_its_deadline_fails_and_says_so() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let slow = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let expired = Expired::default();
        let body = DeadlineBody::new(
            slow,
            Instant::now() + Duration::from_millis(50),
            expired.clone(),
        );
        tx.send(Ok(Bytes::from_static(b"{"))).await.unwrap();
        let read = axum::body::to_bytes(Body::new(body), 1024).await;
        assert!(read.is_err());
        assert!(expired.is_set());
        drop(tx);

        let expired = Expired::default();
        let whole = DeadlineBody::new(
            Body::from("{}"),
            Instant::now() + Duration::from_millis(50),
            expired.clone(),
        );
        assert_eq!(
            axum::body::to_bytes(Body::new(whole), 1024).await.unwrap(),
            "{}"
        );
        assert!(!expired.is_set());
    }
}

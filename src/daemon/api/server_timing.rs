//! `Server-Timing: wechat;dur=<ms>` on the answer to every request that waited on WeChat
//! (login, prepay, refunds, queries): the time spent waiting on WeChat's answers, summed
//! over the request's calls, so a client (the load bench above all) can tell the daemon's
//! own time from WeChat's. A duration only: no URL, id or personal data.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};

use crate::wechat::call;

/// The header's name (RFC: W3C Server Timing).
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Runs the request and adds the header when it called WeChat.
pub(super) async fn wechat_wait(req: Request, next: Next) -> Response {
    let (mut response, waited) = call::waits_of(next.run(req)).await;
    if let Some(waited) = waited {
        let value = format!("wechat;dur={:.3}", waited.as_secs_f64() * 1000.0);
        let value = HeaderValue::from_str(&value).expect("a metric name and a number");
        response.headers_mut().append(SERVER_TIMING, value);
    }
    response
}

/// The `wechat` metric's duration in a `Server-Timing` header value, in milliseconds
/// (`None` when the value names no `wechat;dur=`).
pub fn wechat_millis(value: &str) -> Option<f64> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        (parts.next()? == "wechat").then_some(())?;
        parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::wechat_millis;

    #[test]
    fn the_wechat_duration_is_read_among_other_metrics() {
        assert_eq!(wechat_millis("wechat;dur=12.500"), Some(12.5));
        assert_eq!(
            wechat_millis("db;dur=3, wechat;desc=\"x\";dur=4"),
            Some(4.0)
        );
        assert_eq!(wechat_millis("db;dur=3"), None);
    }
}

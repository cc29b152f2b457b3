//! An error rendered with its causes on one line, for logs and error messages: "error
//! sending request" alone says nothing; "... : tcp connect error: Connection refused"
//! says what to fix.

use std::error::Error;

/// `e` and each of its sources, joined by `": "`, each text said once (many errors
/// already repeat their cause in their own message).
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// An outbound HTTP failure with its causes ("connection refused", "operation timed
/// out", a TLS failure), without the URL: WeChat's URLs carry the app secret and codes
/// in their query. The causes below reqwest (hyper, the connector, I/O) do not name it.
pub fn http(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let mut text = chain(&e.without_url());
    if timed_out && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::http;

    const SECRET: &str = "s3cr3t-app-secret";

    async fn failure(client: &reqwest::Client, port: u16) -> String {
        let url = format!("http://127.0.0.1:{port}/sns/jscode2session?secret={SECRET}");
        http(client.get(url).send().await.expect_err("nothing answers"))
    }

    #[tokio::test]
    async fn outbound_failures_say_why_without_the_url() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        // A port nobody listens on: the connection is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = failure(&client, port).await;
        assert!(
            refused.to_lowercase().contains("connection refused"),
            "{refused}"
        );
        // A server that accepts and never answers: the request times out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let slow = failure(&client, port).await;
        held.abort();
        assert!(slow.contains("timed out"), "{slow}");
        for text in [&refused, &slow] {
            assert!(
                !text.contains(SECRET) && !text.contains("127.0.0.1"),
                "{text}"
            );
        }
    }
}

//! API latency as a mini program user sees it: `users` users each log in, top up their
//! wallet once (a recharge paid in the simulator, whose notify the simulator delivers), then
//! `rounds` times log in, place an order, pay it from the wallet and read `/v1/me`. Each call
//! is timed by the client; the daemon's `Server-Timing: wechat;dur=` says how much of it
//! was spent waiting on WeChat (here the simulator), and the rest is what the daemon
//! added (with loopback HTTP).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::report::{ApiCall, Percentiles};
use crate::daemon::api::server_timing::{wechat_millis, SERVER_TIMING};

/// The calls measured, in the table's order.
pub const CALLS: [&str; 4] = ["login", "place order", "wallet pay", "me"];

/// One timed call: send to answer, and WeChat's share (ms).
#[derive(Default)]
struct Timings {
    ok: Vec<(f64, f64)>,
    failed: usize,
}

struct User<'a> {
    http: &'a reqwest::Client,
    api: &'a str,
    sim: &'a str,
    openid: String,
    token: String,
    timings: [Timings; 4],
}

impl User<'_> {
    /// A call to the API, timed under `CALLS[call]`; answers its status and body.
    async fn call(
        &mut self,
        call: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let started = Instant::now();
        let answer = req.send().await;
        let Ok(answer) = answer else {
            self.timings[call].failed += 1;
            bail!("{path}: no answer");
        };
        let status = answer.status().as_u16();
        let wechat = answer
            .headers()
            .get(SERVER_TIMING)
            .and_then(|v| v.to_str().ok())
            .and_then(wechat_millis)
            .unwrap_or(0.0);
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let total = started.elapsed().as_secs_f64() * 1000.0;
        if status / 100 == 2 {
            self.timings[call].ok.push((total, wechat));
        } else {
            self.timings[call].failed += 1;
        }
        Ok((status, body))
    }

    async fn sim(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let answer = self
            .http
            .post(format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await?;
        Ok(answer.error_for_status()?.json().await?)
    }

    async fn login(&mut self) -> anyhow::Result<()> {
        let code = self
            .sim("/sim/mini/login-codes", json!({"openid": self.openid}))
            .await?;
        self.token.clear();
        let (status, body) = self
            .call(
                0,
                Method::POST,
                "/v1/auth/login",
                Some(json!({"code": code["code"]})),
            )
            .await?;
        self.token = body["token"]
            .as_str()
            .with_context(|| format!("login: {status} {body}"))?
            .to_owned();
        Ok(())
    }

    /// A recharge of `amount` fen paid in the simulator, waited for until it is booked.
    async fn top_up(&mut self, amount: i64) -> anyhow::Result<()> {
        let mut req = self
            .http
            .post(format!("{}/v1/recharges", self.api))
            .bearer_auth(&self.token);
        req = req.json(&json!({"amount": amount}));
        let recharge: Value = req.send().await?.error_for_status()?.json().await?;
        let no = recharge["order"]["out_trade_no"]
            .as_str()
            .with_context(|| format!("no out_trade_no in {recharge}"))?;
        self.sim("/sim/pay/pay", json!({"out_trade_no": no}))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let me: Value = self
                .http
                .get(format!("{}/v1/me", self.api))
                .bearer_auth(&self.token)
                .send()
                .await?
                .json()
                .await?;
            if me["balance"].as_i64() >= Some(amount) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the recharge was not booked within 30 s: {me}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One round: login, place order, wallet pay, me.
    async fn round(&mut self) -> anyhow::Result<()> {
        self.login().await?;
        let order = json!({"amount": 100, "description": "bench"});
        let (status, placed) = self
            .call(1, Method::POST, "/v1/orders", Some(order))
            .await?;
        let no = placed["out_trade_no"]
            .as_str()
            .with_context(|| format!("place order: {status} {placed}"))?
            .to_owned();
        let path = format!("/v1/orders/{no}/balance-pay");
        self.call(2, Method::POST, &path, None).await?;
        self.call(3, Method::GET, "/v1/me", None).await?;
        Ok(())
    }
}

/// Runs the users against the daemon at `api` and the simulator at `sim`.
pub async fn measure(
    http: &reqwest::Client,
    api: &str,
    sim: &str,
    users: usize,
    rounds: usize,
) -> anyhow::Result<Vec<ApiCall>> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let runs = (0..users.max(1)).map(|u| async move {
        let mut user = User {
            http,
            api,
            sim,
            openid: format!("o-bench-api-{tag}-{u}"),
            token: String::new(),
            timings: Default::default(),
        };
        user.login().await?;
        user.top_up(100 * rounds as i64).await?;
        for _ in 0..rounds {
            user.round().await?;
        }
        anyhow::Ok(user.timings)
    });
    let mut all: [Timings; 4] = Default::default();
    for timings in futures::future::join_all(runs).await {
        for (sum, one) in all.iter_mut().zip(timings?) {
            sum.ok.extend(one.ok);
            sum.failed += one.failed;
        }
    }
    Ok(CALLS
        .iter()
        .zip(all)
        .map(|(name, t)| ApiCall {
            name,
            ok: t.ok.len(),
            failed: t.failed,
            total_ms: Percentiles::of(t.ok.iter().map(|(total, _)| *total).collect()),
            wechat_ms: Percentiles::of(t.ok.iter().map(|(_, wechat)| *wechat).collect()),
            daemon_ms: Percentiles::of(
                t.ok.iter().map(|(total, w)| (total - w).max(0.0)).collect(),
            ),
        })
        .collect())
}

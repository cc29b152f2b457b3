//! The scripted walk of the Quick start: a mini program user against a running daemon
//! and simulator, printed step by step. CLI glue, so errors are `anyhow`.

use anyhow::{bail, Context};
use rand::Rng;
use serde_json::{json, Value};

struct Walk {
    http: reqwest::Client,
    api: String,
    sim: String,
}

impl Walk {
    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, &url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn sim(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, value) = self
            .call(
                reqwest::Method::POST,
                format!("{}{path}", self.sim),
                None,
                Some(body),
            )
            .await?;
        if status != 200 {
            bail!("simulator {path} answered {status}: {value}");
        }
        Ok(value)
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, value) = self
            .call(method.clone(), format!("{}{path}", self.api), token, body)
            .await?;
        println!("    {method} {path} -> {status}");
        if status != want {
            bail!("expected {want}, got {status}: {value}");
        }
        Ok(value)
    }
}

impl Walk {
    /// Waits until the daemon says it is ready and the simulator answers.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        for url in [
            format!("{}/readyz", self.api),
            format!("{}/sim/mini/stats", self.sim),
        ] {
            loop {
                match self.http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => break,
                    _ if tokio::time::Instant::now() > deadline => {
                        bail!("{url} did not become ready within 90 s")
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        }
        Ok(())
    }
}

/// Runs the walk; fails on the first unexpected answer.
pub async fn run(api: &str, sim: &str, admin_token: &str) -> anyhow::Result<()> {
    use reqwest::Method;
    let walk = Walk {
        http: reqwest::Client::new(),
        api: api.trim_end_matches('/').to_owned(),
        sim: sim.trim_end_matches('/').to_owned(),
    };
    walk.wait_ready().await?;
    let mut rng = rand::thread_rng();
    let openid = format!("o-demo-{:08x}", rng.gen::<u32>());
    let phone = format!("139{:08}", rng.gen_range(0..100_000_000u32));

    println!("1. wx.login in the mini program gives a one-time code (simulator)");
    let code = walk
        .sim("/sim/mini/login-codes", json!({"openid": openid}))
        .await?;
    println!("2. the mini program sends the code to wxledger");
    let login = walk.login(&code, 200).await?;
    let token = login["token"].as_str().context("login returned no token")?;
    println!(
        "   registered user {} (has_phone: {}); the session key stayed on the server",
        login["user_id"], login["has_phone"]
    );

    println!("3. reusing the same code is refused");
    let reused = walk.login(&code, 401).await?;
    println!("   error code: {}", reused["error"]["code"]);

    println!("4. getPhoneNumber gives a phone code; wxledger asks WeChat for the number");
    let phone_code = walk
        .sim("/sim/mini/phone-codes", json!({"phone_number": phone}))
        .await?;
    let bound = walk
        .api(
            Method::POST,
            "/v1/me/phone",
            Some(token),
            Some(json!({"code": phone_code["code"]})),
            200,
        )
        .await?;
    println!("   bound phone {}", bound["phone"]["masked"]);

    println!("5. the user sets a profile");
    walk.api(
        Method::PUT,
        "/v1/me/profile",
        Some(token),
        Some(json!({"nickname": "小明", "avatar_url": "https://example.invalid/a.png"})),
        200,
    )
    .await?;

    println!("6. the user logs in again and reads their account");
    let code = walk
        .sim("/sim/mini/login-codes", json!({"openid": openid}))
        .await?;
    let again = walk.login(&code, 200).await?;
    let token = again["token"].as_str().context("login returned no token")?;
    let me = walk
        .api(Method::GET, "/v1/me", Some(token), None, 200)
        .await?;
    println!("{}", serde_json::to_string_pretty(&me)?);
    if me["user_id"] != login["user_id"] || me["login_count"] != 2 || me["has_phone"] != true {
        bail!("GET /v1/me does not show the walk's result: {me}");
    }

    println!("7. the user recharges 50.00 yuan (5000 fen): an order of kind recharge + wx.requestPayment params");
    let recharge = walk
        .api(
            Method::POST,
            "/v1/recharges",
            Some(token),
            Some(json!({"amount": 5000})),
            201,
        )
        .await?;
    let recharge_no = recharge["order"]["out_trade_no"]
        .as_str()
        .context("recharge returned no out_trade_no")?
        .to_owned();
    println!("   wx.requestPayment({})", recharge["payment"]);
    println!(
        "8. the user pays in WeChat (simulator); WeChat Pay sends the signed, encrypted notify"
    );
    walk.sim("/sim/pay/pay", json!({"out_trade_no": recharge_no}))
        .await?;
    let order = walk.wait_state(token, &recharge_no, "paid").await?;
    println!(
        "   recharge {} is {} (transaction {})",
        recharge_no, order["state"], order["transaction_id"]
    );
    walk.expect_balance(token, 5000, "credit").await?;

    println!("9. the user orders a coffee for 18.00 yuan and pays with WeChat Pay");
    let order_no = walk.place_order(token, 1800, "拿铁 latte").await?;
    let params = walk
        .api(
            Method::POST,
            &format!("/v1/orders/{order_no}/wechat-pay"),
            Some(token),
            None,
            200,
        )
        .await?;
    println!("   wx.requestPayment({params})");
    walk.sim("/sim/pay/pay", json!({"out_trade_no": order_no}))
        .await?;
    let order = walk.wait_state(token, &order_no, "paid").await?;
    println!("   order {} is {}", order_no, order["state"]);

    println!("10. the user orders a sandwich for 12.00 yuan and pays from the wallet");
    let wallet_no = walk.place_order(token, 1200, "三明治 sandwich").await?;
    let paid = walk
        .api(
            Method::POST,
            &format!("/v1/orders/{wallet_no}/balance-pay"),
            Some(token),
            None,
            200,
        )
        .await?;
    println!(
        "   order {wallet_no} is {} (paid with {})",
        paid["state"], paid["paid_with"]
    );
    walk.expect_balance(token, 3800, "payment").await?;

    println!("11. support refunds 6.00 yuan of the latte (a partial refund through WeChat Pay)");
    let refunded = walk
        .api(
            Method::POST,
            &format!("/v1/admin/orders/{order_no}/refunds"),
            Some(admin_token),
            Some(json!({"amount": 600, "reason": "少放了一份奶 missing milk"})),
            201,
        )
        .await?;
    let out_refund_no = refunded["refund"]["out_refund_no"]
        .as_str()
        .context("refund returned no out_refund_no")?
        .to_owned();
    println!(
        "   refund {out_refund_no} is {} (WeChat refund id {})",
        refunded["refund"]["state"], refunded["refund"]["refund_id"]
    );
    println!("12. WeChat pays the refund out and sends REFUND.SUCCESS (simulator)");
    walk.sim(
        "/sim/pay/refund",
        json!({"out_refund_no": out_refund_no, "outcome": "success"}),
    )
    .await?;
    let order = walk
        .wait_state(token, &order_no, "partially_refunded")
        .await?;
    println!(
        "   order {order_no} is {}: {} of {} fen refunded",
        order["state"], order["refunded"], order["amount"]
    );
    let ledger = walk
        .api(Method::GET, "/v1/me/ledger", Some(token), None, 200)
        .await?;
    println!("   wallet ledger: {}", ledger);
    println!(
        "demo walk complete: login -> bind phone -> profile -> recharge -> paid -> balance -> order -> paid -> wallet payment -> partial refund"
    );
    Ok(())
}

impl Walk {
    /// Sends the `wx.login` code the simulator gave (`{"code": ...}`) to wxledger and
    /// expects `want`.
    async fn login(&self, code: &Value, want: u16) -> anyhow::Result<Value> {
        self.api(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"code": code["code"]})),
            want,
        )
        .await
    }

    /// Places an order of `amount` fen as the user of `token`; its number.
    async fn place_order(
        &self,
        token: &str,
        amount: i64,
        description: &str,
    ) -> anyhow::Result<String> {
        let placed = self
            .api(
                reqwest::Method::POST,
                "/v1/orders",
                Some(token),
                Some(json!({"amount": amount, "description": description})),
                201,
            )
            .await?;
        Ok(placed["out_trade_no"]
            .as_str()
            .context("order returned no out_trade_no")?
            .to_owned())
    }

    /// Shows the wallet's balance and fails unless it is `fen` (`what` names the
    /// posting that should have brought it there).
    async fn expect_balance(&self, token: &str, fen: i64, what: &str) -> anyhow::Result<()> {
        let me = self
            .api(reqwest::Method::GET, "/v1/me", Some(token), None, 200)
            .await?;
        println!("   balance: {} fen", me["balance"]);
        if me["balance"].as_i64() != Some(fen) {
            bail!("the wallet does not show the {what}: {me}");
        }
        Ok(())
    }

    /// Polls the order until it reaches `state` (the notify is asynchronous).
    async fn wait_state(&self, token: &str, no: &str, state: &str) -> anyhow::Result<Value> {
        let mut last = Value::Null;
        for _ in 0..100 {
            let (_, order) = self
                .call(
                    reqwest::Method::GET,
                    format!("{}/v1/orders/{no}", self.api),
                    Some(token),
                    None,
                )
                .await?;
            if order["state"] == state {
                return Ok(order);
            }
            last = order;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bail!("order {no} did not become {state} within 10 s: {last}")
    }
}

//! `[limits]`: how long a client may take, how many connections are served at once, and
//! how often each costly action may be asked for, per client address and per user.

use std::{net::IpAddr, str::FromStr, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use crate::settings::{
    duration::millis,
    error::{invalid, SettingsError},
};

/// WeChat gives up on a notify after 5 s and counts it as failed; a webhook must answer
/// before that, even when it answers that it timed out.
const WECHAT_NOTIFY_DEADLINE: Duration = Duration::from_secs(5);

/// The least of each timeout: a client needs some time to send anything.
const SHORTEST_TIMEOUT: Duration = Duration::from_millis(100);

/// Timeouts, the connection limit and the rate limits of the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// How long a client may take to send a request's headers; `header_read_timeout_ms`,
    /// in milliseconds. An idle keep-alive connection waits for its next request's
    /// headers just as long, so this is also the keep-alive idle limit.
    #[serde(rename = "header_read_timeout_ms", deserialize_with = "millis")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once its headers arrived
    /// (`body_read_timeout_ms`, in milliseconds); a slower client gets 408 `timeout` and
    /// its connection is closed.
    #[serde(rename = "body_read_timeout_ms", deserialize_with = "millis")]
    pub body_read_timeout: Duration,
    /// Longest an API request may take from its headers to its answer
    /// (`request_timeout_ms`, in milliseconds); then it is answered 503 `timeout` (what it
    /// appended stays appended: retrying with the same `Idempotency-Key` is safe).
    #[serde(rename = "request_timeout_ms", deserialize_with = "millis")]
    pub request_timeout: Duration,
    /// The same for WeChat Pay's notifies (`webhook_timeout_ms`, in milliseconds); below
    /// WeChat's 5 s, so that WeChat reads our 503 and retries rather than counting a
    /// dropped call.
    #[serde(rename = "webhook_timeout_ms", deserialize_with = "millis")]
    pub webhook_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one
    /// closes. Keep it below the process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// Whether a connection is kept open for further requests (HTTP/1.1 keep-alive).
    pub keep_alive: bool,
    /// Reverse proxies (addresses or CIDRs, e.g. `"10.0.0.0/8"`) whose `X-Forwarded-For`
    /// is believed: the client is its right-most hop that is not one of them. Empty (the
    /// default): the TCP peer is the client and `X-Forwarded-For` is ignored. In the
    /// environment, a comma-separated list (`WXLEDGER__LIMITS__TRUSTED_PROXIES=10.0.0.0/8,192.168.1.10`).
    #[serde(deserialize_with = "proxy_list")]
    pub trusted_proxies: Vec<ProxyNet>,
    /// Most clients one rate limit tracks at once; past it (after dropping the idle
    /// ones) every request of that limit shares one bucket, so memory stays bounded.
    pub max_tracked_keys: usize,
    /// `POST /v1/auth/login` (one WeChat `jscode2session` each), per client address.
    pub login_per_ip: Rate,
    /// `POST /v1/me/phone` (one WeChat call each), per client address.
    pub phone_per_ip: Rate,
    /// `POST /v1/me/phone`, per user.
    pub phone_per_user: Rate,
    /// `POST /v1/orders/{no}/wechat-pay` (one WeChat Pay prepay each), per client address.
    pub prepay_per_ip: Rate,
    /// `POST /v1/orders/{no}/wechat-pay`, per user.
    pub prepay_per_user: Rate,
    /// `POST /v1/recharges` (an event and a prepay each), per client address.
    pub recharge_per_ip: Rate,
    /// `POST /v1/recharges`, per user.
    pub recharge_per_user: Rate,
    /// `POST /v1/orders/{no}/balance-pay`, per client address.
    pub balance_pay_per_ip: Rate,
    /// `POST /v1/orders/{no}/balance-pay`, per user.
    pub balance_pay_per_user: Rate,
    /// `POST /v1/admin/orders/{no}/refunds` (a WeChat Pay refund each), per client address.
    pub refund_per_ip: Rate,
    /// `POST /v1/admin/orders/{no}/refunds`, for the admin credential as a whole.
    pub refund_per_admin: Rate,
    /// WeChat Pay notifies (v3 and v2), per client address: generous, since WeChat sends
    /// every merchant's notifies from a few addresses; a refused notify is retried by
    /// WeChat 15 s later.
    pub webhook_per_ip: Rate,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            webhook_timeout: Duration::from_millis(4_500),
            max_connections: 1_024,
            keep_alive: true,
            trusted_proxies: Vec::new(),
            max_tracked_keys: 100_000,
            // Many phones share one carrier NAT address: per address, allow a crowd.
            login_per_ip: Rate::new(60, 120),
            phone_per_ip: Rate::new(60, 120),
            phone_per_user: Rate::new(10, 20),
            prepay_per_ip: Rate::new(120, 240),
            prepay_per_user: Rate::new(20, 40),
            recharge_per_ip: Rate::new(120, 240),
            recharge_per_user: Rate::new(20, 40),
            balance_pay_per_ip: Rate::new(120, 240),
            balance_pay_per_user: Rate::new(30, 60),
            refund_per_ip: Rate::new(120, 240),
            refund_per_admin: Rate::new(120, 240),
            webhook_per_ip: Rate::new(12_000, 2_000),
        }
    }
}

/// A rate: `per_minute` requests a minute on average, up to `burst` at once.
/// `per_minute = 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests a minute (0: unlimited).
    pub per_minute: u32,
    /// Requests allowed at once after a quiet spell (at least 1 when limited).
    pub burst: u32,
}

impl Rate {
    /// `per_minute` a minute, up to `burst` at once.
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }

    /// No limit.
    pub const UNLIMITED: Rate = Rate::new(0, 0);
}

/// `trusted_proxies` as a list, or as one comma-separated string (the environment's form).
fn proxy_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ProxyNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        One(String),
    }
    let entries = match List::deserialize(d)? {
        List::Many(entries) => entries,
        List::One(joined) => joined
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    };
    entries
        .iter()
        .map(|p| p.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// One entry of `limits.trusted_proxies`: an address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyNet(IpNet);

impl ProxyNet {
    /// Whether `ip` is in this block.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(|net| ProxyNet(net.trunc()))
            .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR block"))
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl LimitSettings {
    /// Checks what the types cannot; the error names the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (field, timeout) in [
            ("limits.header_read_timeout_ms", self.header_read_timeout),
            ("limits.body_read_timeout_ms", self.body_read_timeout),
            ("limits.request_timeout_ms", self.request_timeout),
            ("limits.webhook_timeout_ms", self.webhook_timeout),
        ] {
            if timeout < SHORTEST_TIMEOUT {
                return Err(invalid(field, "must be at least 100 ms"));
            }
        }
        if self.webhook_timeout >= WECHAT_NOTIFY_DEADLINE {
            return Err(invalid(
                "limits.webhook_timeout_ms",
                "must be below 5000: WeChat drops a notify call after 5 s",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if self.max_tracked_keys == 0 {
            return Err(invalid("limits.max_tracked_keys", "must be at least 1"));
        }
        for (field, rate) in self.rates() {
            if rate.per_minute > 0 && rate.burst == 0 {
                return Err(invalid(field, "burst must be at least 1 when limited"));
            }
        }
        Ok(())
    }

    /// Every rate with its field name.
    pub(crate) fn rates(&self) -> [(&'static str, Rate); 12] {
        [
            ("limits.login_per_ip", self.login_per_ip),
            ("limits.phone_per_ip", self.phone_per_ip),
            ("limits.phone_per_user", self.phone_per_user),
            ("limits.prepay_per_ip", self.prepay_per_ip),
            ("limits.prepay_per_user", self.prepay_per_user),
            ("limits.recharge_per_ip", self.recharge_per_ip),
            ("limits.recharge_per_user", self.recharge_per_user),
            ("limits.balance_pay_per_ip", self.balance_pay_per_ip),
            ("limits.balance_pay_per_user", self.balance_pay_per_user),
            ("limits.refund_per_ip", self.refund_per_ip),
            ("limits.refund_per_admin", self.refund_per_admin),
            ("limits.webhook_per_ip", self.webhook_per_ip),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_webhook_answers_before_wechat_gives_up() {
        let d = LimitSettings::default();
        d.validate().unwrap();
        assert!(d.webhook_timeout < WECHAT_NOTIFY_DEADLINE);
        assert!(
            d.trusted_proxies.is_empty(),
            "X-Forwarded-For is ignored by default"
        );
        let late = LimitSettings {
            webhook_timeout: Duration::from_secs(5),
            ..LimitSettings::default()
        };
        assert!(late.validate().is_err());
        let burstless = LimitSettings {
            login_per_ip: Rate::new(10, 0),
            ..LimitSettings::default()
        };
        let err = burstless.validate().unwrap_err().to_string();
        assert!(err.contains("limits.login_per_ip"), "{err}");
        let off = LimitSettings {
            login_per_ip: Rate::UNLIMITED,
            ..LimitSettings::default()
        };
        off.validate().unwrap();
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        use figment::providers::Format;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/wxledger.example.toml");
        let example: LimitSettings = figment::Figment::new()
            .merge(figment::providers::Toml::file_exact(path))
            .extract_inner("limits")
            .expect("[limits] parses");
        assert_eq!(example, LimitSettings::default());
        let proxies: LimitSettings = figment::Figment::new()
            .merge(figment::providers::Toml::string(
                "[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.10\"]",
            ))
            .extract_inner("limits")
            .unwrap();
        assert_eq!(proxies.trusted_proxies.len(), 2);
        let bad = figment::Figment::new()
            .merge(figment::providers::Toml::string(
                "[limits]\ntrusted_proxies = [\"proxy.local\"]",
            ))
            .extract_inner::<LimitSettings>("limits");
        assert!(bad.is_err());
    }

    #[test]
    fn proxies_parse_as_addresses_or_blocks() {
        let one: ProxyNet = "10.1.2.3".parse().unwrap();
        assert!(one.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!one.contains(&"10.1.2.4".parse().unwrap()));
        let block: ProxyNet = "10.1.2.99/24".parse().unwrap();
        assert!(block.contains(&"10.1.2.4".parse().unwrap()));
        let v6: ProxyNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(&"fd12::1".parse().unwrap()));
        assert!("example.com".parse::<ProxyNet>().is_err());
        assert!("10.0.0.0/33".parse::<ProxyNet>().is_err());
    }
}

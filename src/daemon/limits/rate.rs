//! Rate limits per client address and per user (GCRA, via `governor`), with memory
//! bounded by dropping idle clients and, past a cap, sharing one bucket.

use std::{
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota,
};
use uuid::Uuid;

use super::{
    peer::{client_ip, ip_key},
    settings::{LimitSettings, ProxyNet, Rate},
};

/// How often a limit drops the clients whose bucket has refilled (idle ones).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// An action that costs a WeChat call or an append, limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /v1/auth/login`.
    Login,
    /// `POST /v1/me/phone`.
    Phone,
    /// `POST /v1/orders/{no}/wechat-pay`.
    Prepay,
    /// `POST /v1/recharges`.
    Recharge,
    /// `POST /v1/orders/{no}/balance-pay`.
    BalancePay,
    /// `POST /v1/admin/orders/{no}/refunds`.
    Refund,
    /// WeChat Pay notifies.
    Webhook,
}

impl Action {
    const ALL: [Action; 7] = [
        Action::Login,
        Action::Phone,
        Action::Prepay,
        Action::Recharge,
        Action::BalancePay,
        Action::Refund,
        Action::Webhook,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Its per-address and per-principal rates.
    fn rates(self, s: &LimitSettings) -> (Rate, Rate) {
        match self {
            Action::Login => (s.login_per_ip, Rate::UNLIMITED),
            Action::Phone => (s.phone_per_ip, s.phone_per_user),
            Action::Prepay => (s.prepay_per_ip, s.prepay_per_user),
            Action::Recharge => (s.recharge_per_ip, s.recharge_per_user),
            Action::BalancePay => (s.balance_pay_per_ip, s.balance_pay_per_user),
            Action::Refund => (s.refund_per_ip, s.refund_per_admin),
            Action::Webhook => (s.webhook_per_ip, Rate::UNLIMITED),
        }
    }
}

/// Who a request authenticated as; authentication extractors record it for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A user, by the verified bearer token.
    User(Uuid),
    /// The admin credential.
    Admin,
}

/// A refused request: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// How long until the request would be allowed.
    pub retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The rate limits of every action.
pub struct RateLimits {
    per_ip: Vec<Option<Bucket<IpAddr>>>,
    per_principal: Vec<Option<Bucket<Principal>>>,
    trusted_proxies: Vec<ProxyNet>,
}

impl RateLimits {
    /// The limits `settings` describe.
    pub fn new(settings: &LimitSettings) -> Self {
        let cap = settings.max_tracked_keys;
        let (mut per_ip, mut per_principal) = (Vec::new(), Vec::new());
        for action in Action::ALL {
            debug_assert_eq!(per_ip.len(), action.index());
            let (ip, principal) = action.rates(settings);
            per_ip.push(Bucket::new(ip, cap));
            per_principal.push(Bucket::new(principal, cap));
        }
        Self {
            per_ip,
            per_principal,
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// The client behind a request from `peer` with these headers (see
    /// [`LimitSettings::trusted_proxies`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        client_ip(&self.trusted_proxies, peer, headers)
    }

    /// Counts one `action` by `client` (when known) and `principal` (when the action is
    /// limited per principal); refused when either is over its rate.
    pub fn check(
        &self,
        action: Action,
        client: Option<IpAddr>,
        principal: Option<Principal>,
    ) -> Result<(), RateLimited> {
        if let (Some(bucket), Some(ip)) = (&self.per_ip[action.index()], client) {
            bucket.check(&ip_key(ip))?;
        }
        if let (Some(bucket), Some(who)) = (&self.per_principal[action.index()], principal) {
            bucket.check(&who)?;
        }
        Ok(())
    }

    /// Whether `action` is limited per principal (so its extractor must know who asks).
    pub fn is_per_principal(&self, action: Action) -> bool {
        self.per_principal[action.index()].is_some()
    }

    /// Clients tracked by `action`'s per-address limit.
    pub fn tracked_ips(&self, action: Action) -> usize {
        self.per_ip[action.index()]
            .as_ref()
            .map_or(0, |b| b.keyed.len())
    }
}

/// One limit: a bucket per key, and the shared one used while the table is full.
struct Bucket<K: Hash + Eq + Clone> {
    keyed: DefaultKeyedRateLimiter<K>,
    shared: DefaultDirectRateLimiter,
    cap: usize,
    clock: DefaultClock,
    started: Instant,
    /// Milliseconds since `started` of the last sweep.
    swept_at: AtomicU64,
    /// Held while a sweep runs, so two requests never sweep at once.
    sweeping: Mutex<()>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(rate: Rate, cap: usize) -> Option<Self> {
        let per_minute = NonZeroU32::new(rate.per_minute)?;
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Some(Self {
            keyed: DefaultKeyedRateLimiter::keyed(quota),
            shared: DefaultDirectRateLimiter::direct(quota),
            cap,
            clock: DefaultClock::default(),
            started: Instant::now(),
            swept_at: AtomicU64::new(0),
            sweeping: Mutex::new(()),
        })
    }

    fn check(&self, key: &K) -> Result<(), RateLimited> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = now_ms.saturating_sub(self.swept_at.load(Ordering::Relaxed))
            >= SWEEP_EVERY.as_millis() as u64;
        // A full table is swept at once, but at most once a second: a sweep walks it all.
        let full = self.keyed.len() >= self.cap
            && now_ms.saturating_sub(self.swept_at.load(Ordering::Relaxed)) >= 1_000;
        if due || full {
            self.sweep(now_ms);
        }
        let outcome = if self.keyed.len() >= self.cap {
            self.shared.check()
        } else {
            self.keyed.check_key(key)
        };
        outcome.map_err(|not_until| RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    fn sweep(&self, now_ms: u64) {
        let Ok(_guard) = self.sweeping.try_lock() else {
            return;
        };
        self.swept_at.store(now_ms, Ordering::Relaxed);
        self.keyed.retain_recent();
        self.keyed.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            login_per_ip: Rate::new(60, 3),
            recharge_per_user: Rate::new(60, 2),
            max_tracked_keys: 50,
            ..LimitSettings::default()
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limits = RateLimits::new(&settings());
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            limits.check(Action::Login, Some(ip), None).unwrap();
        }
        let refused = limits.check(Action::Login, Some(ip), None).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another address has its own bucket.
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        limits.check(Action::Login, Some(other), None).unwrap();
    }

    #[test]
    fn users_are_limited_apart_from_addresses() {
        let limits = RateLimits::new(&settings());
        assert!(limits.is_per_principal(Action::Recharge));
        assert!(!limits.is_per_principal(Action::Login));
        let (a, b) = (
            Principal::User(Uuid::new_v4()),
            Principal::User(Uuid::new_v4()),
        );
        for i in 0..2u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            limits.check(Action::Recharge, Some(ip), Some(a)).unwrap();
        }
        let ip = IpAddr::from([198, 51, 100, 9]);
        assert!(limits.check(Action::Recharge, Some(ip), Some(a)).is_err());
        limits.check(Action::Recharge, Some(ip), Some(b)).unwrap();
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_block() {
        let limits = RateLimits::new(&settings());
        for i in 0..3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
            limits.check(Action::Login, Some(ip), None).unwrap();
        }
        let same_block = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3]);
        assert!(limits.check(Action::Login, Some(same_block), None).is_err());
    }

    #[test]
    fn the_table_never_grows_past_its_cap() {
        let limits = RateLimits::new(&settings());
        for i in 0..2_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = limits.check(Action::Login, Some(ip), None);
            assert!(limits.tracked_ips(Action::Login) <= 50);
        }
        // Past the cap, new clients share one bucket: the flood is refused, not tracked.
        let refused = (0..100u32)
            .filter(|i| {
                let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
                limits.check(Action::Login, Some(ip), None).is_err()
            })
            .count();
        assert!(refused > 90, "{refused}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let l = |ms| RateLimited {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(l(0).retry_after_secs(), 1);
        assert_eq!(l(1).retry_after_secs(), 1);
        assert_eq!(l(1_000).retry_after_secs(), 1);
        assert_eq!(l(1_001).retry_after_secs(), 2);
        assert_eq!(l(59_500).retry_after_secs(), 60);
    }
}

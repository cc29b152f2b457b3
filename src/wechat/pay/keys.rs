//! The keys WeChat Pay signs with: the WeChat Pay public key (by its `PUB_KEY_ID_...`)
//! and platform certificates (by serial), each certificate only within its validity.
//! Either, or both during a switch-over.
//!
//! Certificates are downloaded at start, on a timer, and when a message names a serial we
//! do not hold. That last one is anyone's to trigger (a made-up `Wechatpay-Serial` with a
//! fresh timestamp), so: one download at a time, shared by every caller that needs it;
//! at most one unknown-serial download per [`ON_DEMAND_GAP`]; and a caller waits for a
//! download at most [`DOWNLOAD_WAIT`], so a notify is answered (503, WeChat retries) well
//! within WeChat's 5 s while a slow download goes on in the background.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};

use super::{
    certificate::{OutsideValidity, PlatformCertificate},
    crypto::{normalize_serial, VerifyingKey},
};
use crate::core::clock::Clock;

/// Least time between two downloads caused by unknown serials. WeChat lists a new
/// certificate well before it signs with it, so the timer usually has it already.
pub const ON_DEMAND_GAP: Duration = Duration::from_secs(60);

/// Longest a verification waits for a download: leaves room in WeChat's 5 s for the
/// append that follows.
pub const DOWNLOAD_WAIT: Duration = Duration::from_secs(2);

/// Fetches the current platform certificates; the client implements it.
pub trait CertificateSource: Send + Sync {
    /// Downloads and verifies `/v3/certificates`.
    fn fetch(&self, known: KeySet) -> BoxFuture<'_, Result<Vec<PlatformCertificate>, String>>;
}

/// Why there is no key to verify a message with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoKey {
    /// Neither the public key id nor a certificate held (after a download, if one was due).
    #[error("no key for serial {0}")]
    Unknown(String),
    /// The certificate exists but is not valid at the time asked.
    #[error("certificate {serial} is {} (valid {not_before} to {not_after})", match .outside {
        OutsideValidity::Expired => "expired",
        OutsideValidity::NotYetValid => "not valid yet",
    })]
    OutsideValidity {
        /// The serial.
        serial: String,
        /// Which side.
        outside: OutsideValidity,
        /// The certificate's `notBefore`.
        not_before: DateTime<Utc>,
        /// The certificate's `notAfter`.
        not_after: DateTime<Utc>,
    },
    /// The download the serial needed failed or is still running: try again later.
    #[error("platform certificates unavailable: {0}")]
    Unavailable(String),
}

/// A snapshot of the keys, for verifying one message.
#[derive(Clone, Default)]
pub struct KeySet {
    public: Option<(String, VerifyingKey)>,
    certificates: HashMap<String, PlatformCertificate>,
}

impl KeySet {
    /// The key a `Wechatpay-Serial` names at time `at`: the public key when it is its id,
    /// else the certificate with that serial (compared as hex numbers) if valid at `at`.
    pub fn get(&self, serial: &str, at: DateTime<Utc>) -> Result<&VerifyingKey, NoKey> {
        if let Some((id, key)) = &self.public {
            if id == serial {
                return Ok(key);
            }
        }
        let cert = self
            .certificates
            .get(&normalize_serial(serial))
            .ok_or_else(|| NoKey::Unknown(serial.to_owned()))?;
        cert.validity_at(at)
            .map_err(|outside| NoKey::OutsideValidity {
                serial: cert.serial.clone(),
                outside,
                not_before: cert.not_before,
                not_after: cert.not_after,
            })
            .map(|()| &cert.key)
    }

    /// Adds downloaded certificates (to verify the download itself).
    pub fn with(mut self, certificates: &[PlatformCertificate]) -> Self {
        for cert in certificates {
            self.certificates
                .insert(normalize_serial(&cert.serial), cert.clone());
        }
        self
    }

    /// Drops the certificates expired at `now`; answers their serials.
    fn evict_expired(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let expired: Vec<String> = self
            .certificates
            .values()
            .filter(|c| c.validity_at(now) == Err(OutsideValidity::Expired))
            .map(|c| c.serial.clone())
            .collect();
        for serial in &expired {
            self.certificates.remove(serial);
        }
        expired
    }
}

type Download = Shared<BoxFuture<'static, Result<usize, String>>>;

#[derive(Default)]
struct Downloads {
    /// The download running now, if any (everyone who needs one joins it).
    running: Option<Download>,
    /// When the last download caused by an unknown serial started.
    last_on_demand: Option<Instant>,
}

/// The live key store; cheap to clone.
#[derive(Clone)]
pub struct KeyStore {
    keys: Arc<RwLock<KeySet>>,
    downloads: Arc<Mutex<Downloads>>,
    certificates_enabled: bool,
    clock: Clock,
}

impl KeyStore {
    /// A store with the public key (if the merchant has one); certificates are added by
    /// downloads when `certificates_enabled`. `clock` decides what has expired.
    pub fn new(
        public: Option<(String, VerifyingKey)>,
        certificates_enabled: bool,
        clock: Clock,
    ) -> Self {
        Self {
            keys: Arc::new(RwLock::new(KeySet {
                public,
                certificates: HashMap::new(),
            })),
            downloads: Arc::new(Mutex::new(Downloads::default())),
            certificates_enabled,
            clock,
        }
    }

    /// The current keys.
    pub fn snapshot(&self) -> KeySet {
        self.keys
            .read()
            .expect("the key store lock is never poisoned: no panics while held")
            .clone()
    }

    /// The platform certificates held, by serial.
    pub fn certificates(&self) -> Vec<PlatformCertificate> {
        let mut certificates: Vec<_> = self.snapshot().certificates.into_values().collect();
        certificates.sort_by(|a, b| a.serial.cmp(&b.serial));
        certificates
    }

    /// Serials of the platform certificates held.
    pub fn certificate_serials(&self) -> Vec<String> {
        self.certificates().into_iter().map(|c| c.serial).collect()
    }

    /// The key for `serial`, valid at `at`. On an unknown serial, joins the running
    /// download or starts one (at most one per [`ON_DEMAND_GAP`]) and looks again,
    /// waiting at most [`DOWNLOAD_WAIT`]. An expired certificate found is evicted.
    pub async fn key_for<S>(
        &self,
        serial: &str,
        at: DateTime<Utc>,
        source: &S,
    ) -> Result<VerifyingKey, NoKey>
    where
        S: CertificateSource + Clone + 'static,
    {
        match self.lookup(serial, at) {
            Err(NoKey::Unknown(_))
                if self.certificates_enabled && !serial.starts_with("PUB_KEY_ID_") => {}
            found => return found,
        }
        let Some(download) = self.download(source, true) else {
            // Rate-limited: the last download (under a minute ago) did not list it.
            return Err(NoKey::Unknown(serial.to_owned()));
        };
        match tokio::time::timeout(DOWNLOAD_WAIT, download).await {
            Ok(Ok(_)) => self.lookup(serial, at),
            Ok(Err(e)) => Err(NoKey::Unavailable(e)),
            Err(_) => Err(NoKey::Unavailable(format!(
                "the certificate download is still running after {} s",
                DOWNLOAD_WAIT.as_secs()
            ))),
        }
    }

    /// Downloads the certificates now (start-up and the timer), or waits for the download
    /// running; evicts the expired ones.
    pub async fn refresh<S>(&self, source: &S) -> Result<usize, String>
    where
        S: CertificateSource + Clone + 'static,
    {
        if !self.certificates_enabled {
            return Ok(0);
        }
        let download = self
            .download(source, false)
            .expect("only on-demand downloads are rate-limited");
        download.await
    }

    fn lookup(&self, serial: &str, at: DateTime<Utc>) -> Result<VerifyingKey, NoKey> {
        let found = self.snapshot().get(serial, at).cloned();
        if let Err(NoKey::OutsideValidity {
            outside: OutsideValidity::Expired,
            ..
        }) = &found
        {
            self.evict_expired();
        }
        found
    }

    fn evict_expired(&self) {
        let now = (self.clock)();
        let evicted = self
            .keys
            .write()
            .expect("the key store lock is never poisoned: no panics while held")
            .evict_expired(now);
        for serial in evicted {
            tracing::warn!(%serial, "platform certificate expired; evicted");
        }
    }

    /// The running download, or a new one started in the background; `None` when an
    /// on-demand download is due but one started under [`ON_DEMAND_GAP`] ago.
    fn download<S>(&self, source: &S, on_demand: bool) -> Option<Download>
    where
        S: CertificateSource + Clone + 'static,
    {
        let mut downloads = self
            .downloads
            .lock()
            .expect("the download lock is never poisoned: no panics while held");
        if let Some(running) = &downloads.running {
            if running.peek().is_none() {
                return Some(running.clone());
            }
        }
        if on_demand {
            if downloads
                .last_on_demand
                .is_some_and(|at| at.elapsed() < ON_DEMAND_GAP)
            {
                return None;
            }
            downloads.last_on_demand = Some(Instant::now());
        }
        let (store, source) = (self.clone(), source.clone());
        let download = async move {
            let fetched = source.fetch(store.snapshot()).await?;
            let count = fetched.len();
            let now = (store.clock)();
            let (usable, expired): (Vec<_>, Vec<_>) = fetched
                .into_iter()
                .partition(|c| c.validity_at(now) != Err(OutsideValidity::Expired));
            for cert in &expired {
                tracing::warn!(serial = %cert.serial, not_after = %cert.not_after, "WeChat Pay listed an expired platform certificate; not kept");
            }
            {
                let mut keys = store
                    .keys
                    .write()
                    .expect("the key store lock is never poisoned: no panics while held");
                // Old certificates stay until they expire: notifies signed before a
                // rotation still arrive for hours.
                *keys = std::mem::take(&mut *keys).with(&usable);
            }
            store.evict_expired();
            tracing::info!(count, "platform certificates downloaded");
            Ok(count)
        }
        .boxed()
        .shared();
        // Driven to the end even when every caller stopped waiting for it.
        tokio::spawn(download.clone());
        downloads.running = Some(download.clone());
        Some(download)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::devkeys;

    fn certificate(serial: &str, from: i64, until: i64) -> PlatformCertificate {
        let (_, key) =
            VerifyingKey::from_certificate_pem(devkeys::PLATFORMS[0].certificate_pem).unwrap();
        PlatformCertificate {
            serial: serial.into(),
            key,
            not_before: DateTime::from_timestamp(from, 0).unwrap(),
            not_after: DateTime::from_timestamp(until, 0).unwrap(),
        }
    }

    #[test]
    fn a_certificate_verifies_only_within_its_validity_and_expired_ones_are_evicted() {
        let keys =
            KeySet::default().with(&[certificate("A1", 100, 200), certificate("B2", 150, 300)]);
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap();
        assert!(
            keys.get("a1", at(100)).is_ok(),
            "serials compare as numbers"
        );
        assert!(keys.get("A1", at(200)).is_ok(), "both ends are inside");
        let outside = |serial, secs| match keys.get(serial, at(secs)) {
            Err(NoKey::OutsideValidity { outside, .. }) => Some(outside),
            _ => None,
        };
        assert_eq!(outside("A1", 99), Some(OutsideValidity::NotYetValid));
        assert_eq!(outside("A1", 201), Some(OutsideValidity::Expired));
        assert_eq!(keys.get("C3", at(150)), Err(NoKey::Unknown("C3".into())));
        let message = keys.get("A1", at(201)).unwrap_err().to_string();
        assert!(message.contains("A1 is expired"), "{message}");

        let mut keys = keys;
        assert_eq!(keys.evict_expired(at(250)), ["A1"]);
        assert!(matches!(keys.get("A1", at(150)), Err(NoKey::Unknown(_))));
        assert!(
            keys.get("B2", at(250)).is_ok(),
            "B2 is still valid and kept"
        );
    }
}

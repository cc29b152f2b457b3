//! The keys WeChat Pay signs with: the WeChat Pay public key (by its `PUB_KEY_ID_...`)
//! and platform certificates (by serial). Either, or both during a switch-over. The
//! certificates are downloaded again on a timer and whenever a message names a serial we
//! do not know, with one download at a time and at most one per second, so a flood of
//! made-up serials cannot turn into a flood of downloads.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use super::crypto::{normalize_serial, VerifyingKey};

/// Fetches the current platform certificates (serial → key); the client implements it.
pub trait CertificateSource: Send + Sync {
    /// Downloads and verifies `/v3/certificates`.
    fn fetch(
        &self,
        known: KeySet,
    ) -> futures::future::BoxFuture<'_, Result<Vec<(String, VerifyingKey)>, String>>;
}

/// A snapshot of the keys, for verifying one message.
#[derive(Clone, Default)]
pub struct KeySet {
    public: Option<(String, VerifyingKey)>,
    certificates: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// The key a `Wechatpay-Serial` names: the public key when it is its id, else the
    /// certificate with that serial (compared as hex numbers).
    pub fn get(&self, serial: &str) -> Option<&VerifyingKey> {
        if let Some((id, key)) = &self.public {
            if id == serial {
                return Some(key);
            }
        }
        self.certificates.get(&normalize_serial(serial))
    }

    /// Adds downloaded certificates (to verify the download itself).
    pub fn with(mut self, certificates: &[(String, VerifyingKey)]) -> Self {
        for (serial, key) in certificates {
            self.certificates
                .insert(normalize_serial(serial), key.clone());
        }
        self
    }
}

struct Refresh {
    last_attempt: Option<Instant>,
}

/// The live key store.
#[derive(Clone)]
pub struct KeyStore {
    keys: Arc<RwLock<KeySet>>,
    refresh: Arc<tokio::sync::Mutex<Refresh>>,
    certificates_enabled: bool,
}

/// Least time between two downloads.
const MIN_GAP: Duration = Duration::from_secs(1);

impl KeyStore {
    /// A store with the public key (if the merchant has one); certificates are added by
    /// [`KeyStore::refresh`] when `certificates_enabled`.
    pub fn new(public: Option<(String, VerifyingKey)>, certificates_enabled: bool) -> Self {
        Self {
            keys: Arc::new(RwLock::new(KeySet {
                public,
                certificates: HashMap::new(),
            })),
            refresh: Arc::new(tokio::sync::Mutex::new(Refresh { last_attempt: None })),
            certificates_enabled,
        }
    }

    /// The current keys.
    pub fn snapshot(&self) -> KeySet {
        self.keys
            .read()
            .expect("the key store lock is never poisoned: no panics while held")
            .clone()
    }

    /// Serials of the platform certificates held.
    pub fn certificate_serials(&self) -> Vec<String> {
        let mut serials: Vec<String> = self.snapshot().certificates.into_keys().collect();
        serials.sort();
        serials
    }

    /// The key for `serial`; on an unknown serial, downloads the certificates once (or
    /// waits for a download in progress) and looks again.
    pub async fn key_for(
        &self,
        serial: &str,
        source: &dyn CertificateSource,
    ) -> Option<VerifyingKey> {
        if let Some(key) = self.snapshot().get(serial) {
            return Some(key.clone());
        }
        if !self.certificates_enabled || serial.starts_with("PUB_KEY_ID_") {
            return None;
        }
        let _ = self
            .refresh_if(source, |keys| keys.get(serial).is_none())
            .await;
        self.snapshot().get(serial).cloned()
    }

    /// Downloads the certificates now (the timer's call), unless one ran under a second ago.
    pub async fn refresh(&self, source: &dyn CertificateSource) -> Result<usize, String> {
        self.refresh_if(source, |_| true).await
    }

    async fn refresh_if(
        &self,
        source: &dyn CertificateSource,
        still_needed: impl Fn(&KeySet) -> bool,
    ) -> Result<usize, String> {
        if !self.certificates_enabled {
            return Ok(0);
        }
        let mut state = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched what we need.
        if !still_needed(&self.snapshot()) {
            return Ok(0);
        }
        if state.last_attempt.is_some_and(|at| at.elapsed() < MIN_GAP) {
            return Err("certificates were downloaded under a second ago".into());
        }
        state.last_attempt = Some(Instant::now());
        let fetched = source.fetch(self.snapshot()).await?;
        let count = fetched.len();
        let mut keys = self
            .keys
            .write()
            .expect("the key store lock is never poisoned: no panics while held");
        // Old certificates stay: notifies signed before a rotation still arrive for hours.
        *keys = std::mem::take(&mut *keys).with(&fetched);
        tracing::info!(count, "platform certificates downloaded");
        Ok(count)
    }
}

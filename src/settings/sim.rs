//! `[sim]`: the WeChat simulator (`wxledger sim`), and the app credentials it accepts.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::check::is_v2_key;
use super::duration::{millis, seconds};
use super::error::{invalid, SettingsError};

/// The app id and secret of the simulator; a daemon that still uses them says so loudly.
pub const SIM_APPID: &str = "wx00000000simulator";
/// See [`SIM_APPID`].
pub const SIM_APP_SECRET: &str = "sim-app-secret-not-for-production";

/// The simulator's own settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSettings {
    /// Address the simulator listens on.
    pub listen: SocketAddr,
    /// The app id the simulator accepts and writes into watermarks.
    pub appid: String,
    /// The app secret the simulator accepts.
    pub app_secret: String,
    /// Lifetime of an access token it issues; `access_token_ttl_secs`, in seconds.
    #[serde(rename = "access_token_ttl_secs", deserialize_with = "seconds")]
    pub access_token_ttl: Duration,
    /// The merchant id the simulated WeChat Pay serves.
    pub mchid: String,
    /// That merchant's APIv3 key (32 characters).
    pub apiv3_key: String,
    /// Serial of the merchant certificate whose key must sign requests.
    pub merchant_serial: String,
    /// Which key signs answers and notifies: `public_key` (with the public key id as
    /// serial) or `certificate` (the current platform certificate).
    pub pay_signing: SimSigning,
    /// Scales WeChat's notify retry schedule (15 s, 15 s, 30 s, 3 min, ...): 1.0 is real
    /// time, 0.001 turns 15 s into 15 ms.
    pub time_factor: f64,
    /// How long the simulator waits for the daemon's answer to a notify;
    /// `notify_timeout_ms`, in milliseconds.
    #[serde(rename = "notify_timeout_ms", deserialize_with = "millis")]
    pub notify_timeout: Duration,
    /// That merchant's API v2 key (32 characters): checks request signs, signs answers
    /// and notifies, and encrypts refund notifies' `req_info`.
    pub v2_api_key: String,
}

/// Which key the simulated WeChat Pay signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimSigning {
    /// The WeChat Pay public key (`Wechatpay-Serial: PUB_KEY_ID_...`).
    PublicKey,
    /// The current platform certificate (`Wechatpay-Serial: <certificate serial>`).
    Certificate,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8090).into(),
            appid: SIM_APPID.into(),
            app_secret: SIM_APP_SECRET.into(),
            access_token_ttl: Duration::from_secs(7200),
            mchid: crate::sim::devkeys::MCHID.into(),
            apiv3_key: crate::sim::devkeys::APIV3_KEY.into(),
            merchant_serial: crate::sim::devkeys::MERCHANT_SERIAL.into(),
            pay_signing: SimSigning::PublicKey,
            time_factor: 1.0,
            notify_timeout: Duration::from_secs(5),
            v2_api_key: crate::sim::devkeys::V2_API_KEY.into(),
        }
    }
}

impl SimSettings {
    /// Checks the values the types cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.time_factor > 0.0 && self.time_factor <= 1000.0) {
            return Err(invalid(
                "sim.time_factor",
                "must be above 0 and at most 1000",
            ));
        }
        if self.apiv3_key.len() != 32 {
            return Err(invalid("sim.apiv3_key", "must be 32 characters"));
        }
        if !is_v2_key(&self.v2_api_key) {
            return Err(invalid(
                "sim.v2_api_key",
                "must be 32 ASCII letters or digits",
            ));
        }
        Ok(())
    }
}

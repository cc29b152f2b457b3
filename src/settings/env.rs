//! Settings from the environment. `WXLEDGER__SECTION__KEY` sets `section.key`; every value
//! is taken as text, so a text setting keeps `1900000109` as it is while number and
//! boolean settings still parse theirs. A `WXLEDGER_...` variable that names no setting is
//! refused with the nearest valid name, so a typo never passes silently.

use figment::{
    value::{Dict, Map, Value},
    Error, Metadata, Profile, Provider,
};

/// The prefix of every setting's variable.
pub(super) const PREFIX: &str = "WXLEDGER__";

/// Variables that start with `WXLEDGER_` but are not settings.
const NOT_SETTINGS: &[&str] = &[
    "WXLEDGER_CONFIG",
    "WXLEDGER_DEMO_API_PORT",
    "WXLEDGER_DEMO_SIM_PORT",
    "WXLEDGER_HARNESS_KEEP_LOGS",
    "WXLEDGER_NATS_SERVER",
    "WXLEDGER_TEST_DATABASE_URL",
    "WXLEDGER_TEST_NATS_URL",
];

/// A `WXLEDGER_...` variable that is not a setting's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// The variable as it was set.
    pub name: String,
    /// The setting's variable it most likely meant.
    pub suggestion: String,
}

/// The `WXLEDGER__...` variables of the process, as text.
pub(super) struct RawEnv {
    /// (dotted lowercase path, value)
    vars: Vec<(Vec<String>, String)>,
}

impl RawEnv {
    /// Reads the process environment.
    pub(super) fn read() -> Result<Self, UnknownVariable> {
        Self::from_vars(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    /// Reads the given variables (the process's, or a test's).
    pub(super) fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, UnknownVariable> {
        let mut out = Vec::new();
        for (name, value) in vars {
            let upper = name.to_ascii_uppercase();
            if !upper.starts_with("WXLEDGER_") || NOT_SETTINGS.contains(&upper.as_str()) {
                continue;
            }
            let well_formed = upper
                .strip_prefix(PREFIX)
                .map(|rest| rest.split("__").collect::<Vec<_>>())
                .filter(|parts| {
                    parts
                        .iter()
                        .all(|p| !p.is_empty() && !p.starts_with('_') && !p.ends_with('_'))
                });
            match well_formed {
                Some(parts) => out.push((
                    parts.iter().map(|p| p.to_ascii_lowercase()).collect(),
                    value.trim().to_owned(),
                )),
                None => {
                    let rest = upper.trim_start_matches("WXLEDGER").trim_start_matches('_');
                    return Err(UnknownVariable {
                        name,
                        suggestion: format!("{PREFIX}{rest}"),
                    });
                }
            }
        }
        Ok(Self { vars: out })
    }
}

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| {
            let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{} ({PREFIX}{})", keys.join("."), upper.join("__"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (path, value) in &self.vars {
            insert(&mut dict, path, Value::from(value.clone()));
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The candidate closest to `name` by edit distance, if any is reasonably close.
pub(super) fn nearest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_single_underscore_prefix_is_refused_with_the_double_one() {
        let err = RawEnv::from_vars(vars(&[("WXLEDGER_NATS__URL", "nats://x:4222")]))
            .err()
            .expect("refused");
        assert_eq!(err.name, "WXLEDGER_NATS__URL");
        assert_eq!(err.suggestion, "WXLEDGER__NATS__URL");
        let err = RawEnv::from_vars(vars(&[("WXLEDGER___PAY___MCHID", "1")]))
            .err()
            .expect("refused");
        assert_eq!(err.suggestion, "WXLEDGER__PAY___MCHID");
        assert!(RawEnv::from_vars(vars(&[
            ("WXLEDGER_CONFIG", "/etc/wxledger.toml"),
            ("PATH", "/bin"),
            ("WXLEDGER__PAY__MCHID", "1900000109"),
        ]))
        .is_ok());
    }

    #[test]
    fn nearest_names_a_close_candidate_only() {
        let names = ["mchid", "merchant_serial", "apiv3_key", "api_base"];
        assert_eq!(nearest("mchdi", &names), Some("mchid"));
        assert_eq!(nearest("apiv3key", &names), Some("apiv3_key"));
        assert_eq!(nearest("completely_unrelated_name", &names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

#[cfg(test)]
mod loading {
    use crate::settings::{Settings, SettingsError};

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn text_settings_take_digits_as_text_and_numbers_still_parse() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WXLEDGER__PAY__MCHID", "1900000109");
            jail.set_env("WXLEDGER__PAY__MERCHANT_SERIAL", "5157");
            jail.set_env("WXLEDGER__WECHAT__APPID", "12345");
            jail.set_env("WXLEDGER__AUTH__JWT_KID", "2026");
            jail.set_env("WXLEDGER__NATS__REPLICAS", "3");
            jail.set_env("WXLEDGER__OUTCOMES__PUBLISH", "false");
            jail.set_env("WXLEDGER__SIM__TIME_FACTOR", "0.5");
            jail.set_env("WXLEDGER__NATS__STREAM", "  SPACED  ");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.pay.mchid, "1900000109");
            assert_eq!(s.pay.merchant_serial, "5157");
            assert_eq!(s.wechat.appid, "12345");
            assert_eq!(s.auth.jwt_kid, "2026");
            assert_eq!(s.nats.replicas, 3);
            assert!(!s.outcomes.publish);
            assert_eq!(s.sim.time_factor, 0.5);
            assert_eq!(s.nats.stream, "SPACED");

            jail.set_env(
                "WXLEDGER__LIMITS__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.1.10",
            );
            jail.set_env("WXLEDGER__LIMITS__LOGIN_PER_IP__PER_MINUTE", "30");
            jail.set_env("WXLEDGER__LIMITS__LOGIN_PER_IP__BURST", "60");
            let s = Settings::load(None).expect("loads");
            assert_eq!(
                s.limits.trusted_proxies.len(),
                2,
                "a list from one variable"
            );
            assert_eq!(s.limits.login_per_ip.per_minute, 30);
            jail.set_env(
                "WXLEDGER__LIMITS__TRUSTED_PROXIES",
                "10.0.0.0/8,proxy.local",
            );
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("limits.trusted_proxies"), "{err}");
            assert!(err.contains("proxy.local"), "{err}");
            jail.set_env("WXLEDGER__LIMITS__TRUSTED_PROXIES", "");

            jail.set_env("WXLEDGER__NATS__REPLICAS", "three");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("nats.replicas"), "{err}");
            assert!(err.contains("WXLEDGER__NATS__REPLICAS"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn a_variable_that_names_no_setting_is_refused_with_the_nearest_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WXLEDGER_NATS__URL", "nats://10.0.0.1:4222");
            let err = Settings::load(None).unwrap_err();
            assert!(matches!(err, SettingsError::UnknownVariable(_)), "{err:?}");
            let err = err.to_string();
            assert!(err.contains("WXLEDGER_NATS__URL"), "{err}");
            assert!(err.contains("did you mean WXLEDGER__NATS__URL"), "{err}");
            jail.clear_env();

            jail.set_env("WXLEDGER__PAY__MCHDI", "1900000109");
            let err = Settings::load(None).unwrap_err();
            let SettingsError::UnknownSetting {
                path, suggestion, ..
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!(path, "pay.mchdi");
            assert_eq!(
                suggestion.as_deref(),
                Some("pay.mchid (WXLEDGER__PAY__MCHID)")
            );
            jail.clear_env();

            jail.set_env("WXLEDGER__NAST__URL", "nats://10.0.0.1:4222");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("nast"), "{err}");
            assert!(err.contains("did you mean nats (WXLEDGER__NATS)"), "{err}");
            jail.clear_env();

            // Variables of the command itself are not settings and pass.
            jail.set_env("WXLEDGER_CONFIG", "/nonexistent.toml");
            Settings::load(None).expect("WXLEDGER_CONFIG is the --config flag's");
            Ok(())
        });
    }
}

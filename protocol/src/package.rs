//! Packages (service plans): the replicated record, the API view, and the RouterOS
//! `rate-limit` string a package becomes on the router.

use crate::decimal::{self, ExtraDigits};
use crate::merge::{FieldValue, lww_record};
use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// A bandwidth in kbit/s. On the wire it is Mbit/s as a JSON number with up to three decimals
/// (`10` is 10 Mbit/s, `0.512` is 512 kbit/s), as the seed's `downloadSpeed: 10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Speed(u32);

/// 100 Gbit/s: no access package is faster; larger inputs are typos.
pub const MAX_SPEED: Speed = Speed(100_000_000);

impl Speed {
    pub const fn from_kbps(kbps: u32) -> Speed {
        Speed(kbps)
    }

    pub const fn from_mbps(mbps: u32) -> Speed {
        Speed(mbps * 1000)
    }

    pub const fn kbps(self) -> u32 {
        self.0
    }

    pub fn parse_mbps(text: &str) -> Result<Speed, String> {
        let kbps = decimal::parse_fixed(text, 3, ExtraDigits::Reject)
            .map_err(|e| format!("speed {e} (Mbit/s, at most 3 decimals)"))?;
        if kbps < 0 {
            return Err("speed must not be negative".into());
        }
        if kbps > i64::from(MAX_SPEED.0) {
            return Err(format!(
                "speed must be at most {} Mbit/s",
                MAX_SPEED.0 / 1000
            ));
        }
        Ok(Speed(kbps as u32))
    }

    /// The RouterOS rate token: `10M`, `512k`, `0` (unlimited). `k` is 1,000 and `M` 1,000,000
    /// bits per second in RouterOS, the same decimal units as ours.
    pub fn routeros_rate(self) -> String {
        match self.0 {
            0 => "0".to_string(),
            kbps if kbps % 1000 == 0 => format!("{}M", kbps / 1000),
            kbps => format!("{kbps}k"),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal::format_fixed(i64::from(self.0), 3, 0))
    }
}

impl Serialize for Speed {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        decimal::json::serialize_number(&self.to_string(), ser)
    }
}

impl<'de> Deserialize<'de> for Speed {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Speed, D::Error> {
        let text = decimal::json::number_text(de)?;
        Speed::parse_mbps(&text).map_err(serde::de::Error::custom)
    }
}

/// Optional burst: the customer may exceed the package speed up to the burst speed while the
/// average over `timeSecs` stays below the threshold (RouterOS semantics, routeros.md §5).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Burst {
    pub download_speed: Speed,
    pub upload_speed: Speed,
    /// Defaults to the package's download speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_download: Option<Speed>,
    /// Defaults to the package's upload speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_upload: Option<Speed>,
    pub time_secs: u32,
}

impl FieldValue for Speed {
    fn audit_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl FieldValue for Burst {
    fn audit_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

lww_record! {
    /// A package as replicated to the agents whose customers use it.
    pub struct PackageRecord {
        name: String,
        price: Money,
        download_speed: Speed,
        upload_speed: Speed,
        validity_days: u32,
        /// Bytes per validity period; `None` is unlimited.
        data_limit: Option<u64>,
        /// Seconds per session; `None` is unlimited.
        session_time_limit: Option<u32>,
        burst: Option<Burst>,
        created_at: DateTime<Utc>,
        deleted_at: Option<DateTime<Utc>>,
    }
}

/// The speeds a package puts on the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaping {
    pub download: Speed,
    pub upload: Speed,
    pub burst: Option<Burst>,
}

impl PackageRecord {
    pub fn shaping(&self) -> Shaping {
        Shaping {
            download: self.download_speed.as_ref().map_or(Speed(0), |f| f.value),
            upload: self.upload_speed.as_ref().map_or(Speed(0), |f| f.value),
            burst: self.burst.as_ref().and_then(|f| f.value),
        }
    }

    pub fn package_name(&self) -> &str {
        self.name.as_ref().map_or("", |f| f.value.as_str())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.as_ref().is_some_and(|f| f.value.is_some())
    }
}

/// The RouterOS `rate-limit` value for a package (PPP profile, hotspot user profile).
///
/// RouterOS reads pairs as `rx/tx` from the router's side: rx is what the customer uploads, tx
/// what it downloads. So a 10 Mbit/s down, 5 up package is `5M/10M`. With a burst the string
/// grows to `rate burst-rate burst-threshold burst-time`. Both speeds zero means unlimited,
/// which RouterOS spells as an empty string.
pub fn rate_limit(shaping: &Shaping) -> String {
    let pair = |up: Speed, down: Speed| format!("{}/{}", up.routeros_rate(), down.routeros_rate());
    if shaping.download.kbps() == 0 && shaping.upload.kbps() == 0 {
        return String::new();
    }
    let rate = pair(shaping.upload, shaping.download);
    match shaping.burst {
        None => rate,
        Some(burst) => {
            let threshold = pair(
                burst.threshold_upload.unwrap_or(shaping.upload),
                burst.threshold_download.unwrap_or(shaping.download),
            );
            let seconds = burst.time_secs.max(1);
            format!(
                "{rate} {} {threshold} {seconds}/{seconds}",
                pair(burst.upload_speed, burst.download_speed)
            )
        }
    }
}

/// `GET /api/packages/:id` and list items.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    pub download_speed: Speed,
    pub upload_speed: Speed,
    pub validity_days: u32,
    pub data_limit: Option<u64>,
    pub session_time_limit: Option<u32>,
    pub burst: Option<Burst>,
    /// The `rate-limit` this package puts on the router, for the operator's information.
    pub rate_limit: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping(down: u32, up: u32) -> Shaping {
        Shaping {
            download: Speed::from_kbps(down),
            upload: Speed::from_kbps(up),
            burst: None,
        }
    }

    #[test]
    fn rate_limit_puts_upload_first_as_routeros_reads_rx_tx() {
        assert_eq!(rate_limit(&shaping(10_000, 5_000)), "5M/10M");
        assert_eq!(rate_limit(&shaping(1_000, 512)), "512k/1M");
        assert_eq!(rate_limit(&shaping(0, 0)), "");
        assert_eq!(rate_limit(&shaping(2_500, 0)), "0/2500k");
    }

    #[test]
    fn rate_limit_with_burst_has_all_four_parts() {
        let burst = Burst {
            download_speed: Speed::from_mbps(20),
            upload_speed: Speed::from_mbps(10),
            threshold_download: Some(Speed::from_mbps(8)),
            threshold_upload: None,
            time_secs: 16,
        };
        let s = Shaping {
            burst: Some(burst),
            ..shaping(10_000, 5_000)
        };
        assert_eq!(rate_limit(&s), "5M/10M 10M/20M 5M/8M 16/16");
    }

    #[test]
    fn speeds_are_mbit_numbers_on_the_wire() {
        assert_eq!(serde_json::to_string(&Speed::from_mbps(10)).unwrap(), "10");
        assert_eq!(
            serde_json::to_string(&Speed::from_kbps(512)).unwrap(),
            "0.512"
        );
        assert_eq!(
            serde_json::from_str::<Speed>("2.5").unwrap(),
            Speed::from_kbps(2500)
        );
        assert!(serde_json::from_str::<Speed>("-1").is_err());
        assert!(serde_json::from_str::<Speed>("1.0001").is_err());
        assert!(serde_json::from_str::<Speed>("1000000").is_err());
    }
}

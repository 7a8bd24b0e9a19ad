//! Fixed-point decimals parsed from text, for money, speeds and coordinates.
//!
//! No floating point anywhere: a JSON number is read as its exact text (serde_json's
//! `arbitrary_precision`) and turned into an integer count of the smallest unit.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecimalError {
    #[error("is not a plain decimal number")]
    NotANumber,
    #[error("has more than {0} decimal places")]
    TooManyDecimals(u32),
    #[error("is too large")]
    TooLarge,
}

/// What to do with digits beyond `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraDigits {
    Reject,
    Truncate,
}

/// Parses `-?digits(.digits)?` into an integer scaled by `10^scale`.
/// Exponents, `NaN`, `Infinity`, leading `+` and empty parts are refused.
pub fn parse_fixed(text: &str, scale: u32, extra: ExtraDigits) -> Result<i64, DecimalError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (body.contains('.') && frac_part.is_empty())
    {
        return Err(DecimalError::NotANumber);
    }
    let frac_digits = frac_part.len() as u32;
    let frac_kept = if frac_digits > scale {
        let (kept, dropped) = frac_part.split_at(scale as usize);
        if extra == ExtraDigits::Reject && dropped.bytes().any(|b| b != b'0') {
            return Err(DecimalError::TooManyDecimals(scale));
        }
        kept
    } else {
        frac_part
    };
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(frac_kept.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or(DecimalError::TooLarge)?;
    }
    for _ in frac_kept.len() as u32..scale {
        value = value.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    Ok(if negative { -value } else { value })
}

/// Formats `value / 10^scale` with exactly `min_decimals..=scale` decimals (trailing zeros
/// beyond `min_decimals` trimmed). `min_decimals = 0` prints whole numbers without a point.
pub fn format_fixed(value: i64, scale: u32, min_decimals: u32) -> String {
    let divisor = 10i64.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let whole = abs / divisor as u64;
    let frac = abs % divisor as u64;
    let mut frac_text = format!("{frac:0width$}", width = scale as usize);
    while frac_text.len() > min_decimals as usize && frac_text.ends_with('0') {
        frac_text.pop();
    }
    if frac_text.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac_text}")
    }
}

/// Serde helpers that read and write a fixed-point value as a JSON number without floats.
pub(crate) mod json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
    use std::str::FromStr;

    pub fn serialize_number<S: Serializer>(text: &str, ser: S) -> Result<S::Ok, S::Error> {
        let number = serde_json::Number::from_str(text).map_err(serde::ser::Error::custom)?;
        number.serialize(ser)
    }

    /// The exact text of a JSON number (or of a JSON string holding a number, which some
    /// clients send for money).
    pub fn number_text<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrString {
            Number(serde_json::Number),
            Text(String),
        }
        match NumberOrString::deserialize(de) {
            Ok(NumberOrString::Number(n)) => Ok(n.to_string()),
            Ok(NumberOrString::Text(s)) => Ok(s),
            Err(_) => Err(D::Error::custom("expected a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_money_shapes() {
        assert_eq!(parse_fixed("500", 2, ExtraDigits::Reject), Ok(50000));
        assert_eq!(parse_fixed("500.5", 2, ExtraDigits::Reject), Ok(50050));
        assert_eq!(parse_fixed("500.55", 2, ExtraDigits::Reject), Ok(50055));
        assert_eq!(parse_fixed("500.550", 2, ExtraDigits::Reject), Ok(50055));
        assert_eq!(parse_fixed("-0.01", 2, ExtraDigits::Reject), Ok(-1));
        assert_eq!(
            parse_fixed("500.555", 2, ExtraDigits::Reject),
            Err(DecimalError::TooManyDecimals(2))
        );
        assert_eq!(
            parse_fixed("1.23456789", 3, ExtraDigits::Truncate),
            Ok(1234)
        );
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in [
            "", "-", ".5", "5.", "1e3", "NaN", "+1", "1,5", " 1", "0x10", "Infinity",
        ] {
            assert_eq!(
                parse_fixed(bad, 2, ExtraDigits::Reject),
                Err(DecimalError::NotANumber),
                "{bad}"
            );
        }
        assert_eq!(
            parse_fixed("99999999999999999999", 2, ExtraDigits::Reject),
            Err(DecimalError::TooLarge)
        );
    }

    #[test]
    fn formats_with_trimmed_decimals() {
        assert_eq!(format_fixed(50000, 2, 0), "500");
        assert_eq!(format_fixed(50050, 2, 0), "500.5");
        assert_eq!(format_fixed(50050, 2, 2), "500.50");
        assert_eq!(format_fixed(-5, 2, 2), "-0.05");
        assert_eq!(format_fixed(-12863890, 7, 0), "-1.286389");
    }
}

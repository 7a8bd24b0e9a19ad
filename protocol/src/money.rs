//! Money as integer minor units (cents). No floats anywhere in money paths.
//!
//! On the wire an amount is a JSON number with at most two decimals: whole amounts are written
//! as integers (`2000`), others with two decimals (`500.50`), as in the customer module's JSON.

use crate::decimal::{self, DecimalError, ExtraDigits};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use thiserror::Error;

/// An amount of money in minor units (1/100 of the currency unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// The largest amount one entry (a recharge, a package price) may carry: 100,000,000.00.
pub const MAX_AMOUNT: Money = Money(10_000_000_000);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("amount {0}")]
    Format(#[from] DecimalError),
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount exceeds the maximum of {MAX_AMOUNT}")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_minor(minor: i64) -> Money {
        Money(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Parses `"500"`, `"500.5"`, `"500.50"`; refuses a third decimal, exponents and junk.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        Ok(Money(decimal::parse_fixed(text, 2, ExtraDigits::Reject)?))
    }

    /// Checks an amount that a client asks to move (recharge, price): positive and bounded.
    pub fn positive_amount(self) -> Result<Money, MoneyError> {
        if self.0 <= 0 {
            Err(MoneyError::NotPositive)
        } else if self > MAX_AMOUNT {
            Err(MoneyError::TooLarge)
        } else {
            Ok(self)
        }
    }

    /// Checks a price: zero (free package) allowed, negative not.
    pub fn price(self) -> Result<Money, MoneyError> {
        if self.0 < 0 {
            Err(MoneyError::Negative)
        } else if self > MAX_AMOUNT {
            Err(MoneyError::TooLarge)
        } else {
            Ok(self)
        }
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn checked_neg(self) -> Option<Money> {
        self.0.checked_neg().map(Money)
    }

    /// Sums amounts, saturating instead of wrapping (a ledger can never reach i64::MAX minor
    /// units within [`MAX_AMOUNT`] per entry, but the sum must not panic on hostile input).
    pub fn sum<I: IntoIterator<Item = Money>>(items: I) -> Money {
        Money(
            items
                .into_iter()
                .fold(0i64, |acc, m| acc.saturating_add(m.0)),
        )
    }

    fn wire_text(self) -> String {
        // Whole amounts as integers, others with both decimals (`500.50`).
        let min_decimals = if self.0 % 100 == 0 { 0 } else { 2 };
        decimal::format_fixed(self.0, 2, min_decimals)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal::format_fixed(self.0, 2, 2))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        decimal::json::serialize_number(&self.wire_text(), ser)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Money, D::Error> {
        let text = decimal::json::number_text(de)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_json_number_with_at_most_two_decimals() {
        let json = |m: Money| serde_json::to_string(&m).unwrap();
        assert_eq!(json(Money::from_minor(200000)), "2000");
        assert_eq!(json(Money::from_minor(50050)), "500.50");
        assert_eq!(json(Money::from_minor(1)), "0.01");
        assert_eq!(json(Money::from_minor(-150)), "-1.50");
    }

    #[test]
    fn deserialises_exactly_without_floats() {
        let parse = |s: &str| serde_json::from_str::<Money>(s);
        assert_eq!(parse("500").unwrap(), Money::from_minor(50000));
        assert_eq!(parse("0.1").unwrap(), Money::from_minor(10));
        assert_eq!(parse("19.99").unwrap(), Money::from_minor(1999));
        assert_eq!(parse("\"19.99\"").unwrap(), Money::from_minor(1999));
        assert!(parse("19.999").is_err());
        assert!(parse("1e2").is_err());
        assert!(parse("true").is_err());
        assert!(parse("123456789012345678901234567890").is_err());
    }

    #[test]
    fn client_amounts_must_be_positive_and_bounded() {
        assert_eq!(
            Money::from_minor(0).positive_amount(),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Money::from_minor(-5).positive_amount(),
            Err(MoneyError::NotPositive)
        );
        assert!(MAX_AMOUNT.positive_amount().is_ok());
        assert_eq!(
            Money::from_minor(MAX_AMOUNT.minor() + 1).positive_amount(),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(Money::ZERO.price(), Ok(Money::ZERO));
    }
}

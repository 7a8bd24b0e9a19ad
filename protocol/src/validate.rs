//! Input rules shared by central and agent. Each failure is a typed error naming the field
//! (camelCase, as in the API's JSON) so central can answer `{"error": {"field": ...}}`.

use crate::customer::Degrees;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: &'static str,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    #[error("is required")]
    Required,
    #[error("must be at least {0} characters")]
    TooShort(usize),
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may only contain {0}")]
    Characters(&'static str),
    #[error("must not contain control characters (newlines, tabs, ...)")]
    ControlCharacters,
    #[error("must not be the same as the username")]
    EqualsUsername,
    #[error("is one of the most common passwords; choose another")]
    TooCommon,
    #[error("is not a valid email address")]
    Email,
    #[error("{0}")]
    Phone(&'static str),
    #[error("must be between {min} and {max}")]
    Range {
        min: &'static str,
        max: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

fn fail(field: &'static str, problem: Problem) -> ValidationError {
    ValidationError { field, problem }
}

pub const USERNAME_MAX: usize = 64;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 64;
/// Names, locations and other short text fields.
pub const TEXT_MAX: usize = 200;
/// Descriptions and notes.
pub const LONG_TEXT_MAX: usize = 1000;

/// A customer username becomes a RouterOS object name: 1–64 of `A–Z a–z 0–9 . _ @ -`.
pub fn username(value: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "username";
    if value.is_empty() {
        return Err(fail(FIELD, Problem::Required));
    }
    if value.chars().count() > USERNAME_MAX {
        return Err(fail(FIELD, Problem::TooLong(USERNAME_MAX)));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !value.chars().all(allowed) {
        return Err(fail(
            FIELD,
            Problem::Characters("letters A-Z a-z, digits and . _ @ -"),
        ));
    }
    Ok(())
}

/// A customer's PPPoE/hotspot password: 8–64 printable ASCII characters (the router and CHAP
/// handle nothing else reliably), not the username, not a well-known password.
pub fn customer_password(value: &str, username: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "password";
    if value.is_empty() {
        return Err(fail(FIELD, Problem::Required));
    }
    let length = value.chars().count();
    if length < PASSWORD_MIN {
        return Err(fail(FIELD, Problem::TooShort(PASSWORD_MIN)));
    }
    if length > PASSWORD_MAX {
        return Err(fail(FIELD, Problem::TooLong(PASSWORD_MAX)));
    }
    if !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(fail(
            FIELD,
            Problem::Characters("printable ASCII characters"),
        ));
    }
    if value.eq_ignore_ascii_case(username) {
        return Err(fail(FIELD, Problem::EqualsUsername));
    }
    if is_common_password(value) {
        return Err(fail(FIELD, Problem::TooCommon));
    }
    Ok(())
}

/// Operator (staff) passwords: checked only, stored as argon2id; longer minimum.
pub fn operator_password(value: &str, username: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "password";
    let length = value.chars().count();
    if length < 10 {
        return Err(fail(FIELD, Problem::TooShort(10)));
    }
    if length > 128 {
        return Err(fail(FIELD, Problem::TooLong(128)));
    }
    if value.chars().any(char::is_control) {
        return Err(fail(FIELD, Problem::ControlCharacters));
    }
    if value.eq_ignore_ascii_case(username) {
        return Err(fail(FIELD, Problem::EqualsUsername));
    }
    if is_common_password(value) {
        return Err(fail(FIELD, Problem::TooCommon));
    }
    Ok(())
}

/// Passwords of 8 or more characters that lead the published lists of leaked passwords.
/// Shorter ones are already refused by the length rule.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "password1",
    "password123",
    "password12",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "abc12345",
    "abcd1234",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "qwerty123",
    "qwerty12",
    "qwertyui",
    "11111111",
    "00000000",
    "88888888",
    "87654321",
    "123123123",
    "1234qwer",
    "asdfghjkl",
    "zxcvbnm1",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "superman",
    "starwars",
    "trustno1",
    "letmein1",
    "whatever",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "jordan23",
    "liverpool",
    "chelsea1",
    "arsenal1",
    "manchester",
    "samsung1",
    "charlie1",
    "shadow12",
    "master12",
    "monkey12",
    "dragon12",
    "freedom1",
    "qazwsxedc",
    "1qaz2wsx",
    "zaq12wsx",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "aa123456",
    "a1234567",
    "admin123",
    "administrator",
    "changeme",
    "default1",
    "mikrotik",
    "internet1",
    "wifi1234",
    "wireless",
    "hotspot1",
    "pppoe123",
    "12341234",
    "11223344",
    "147258369",
    "987654321",
    "123654789",
    "999999999",
    "1111111111",
    "123qweasd",
    "qweasdzxc",
    "asdf1234",
    "password!",
    "football1",
    "baseball1",
    "iloveyou1",
    "princess1",
    "sunshine1",
    "welcome!",
    "passpass",
    "secret123",
    "letmein123",
    "loveyou1",
    "babygirl",
    "lovelove",
    "12qwaszx",
    "123abc123",
    "abc123456",
];

pub fn is_common_password(value: &str) -> bool {
    COMMON_PASSWORDS
        .iter()
        .any(|common| common.eq_ignore_ascii_case(value))
}

/// A practical email check: one `@`, a local part of safe characters, a dotted domain of
/// letter/digit/hyphen labels ending in a TLD of at least two letters. Returns it trimmed.
pub fn email(value: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "email";
    let value = value.trim();
    let bad = || fail(FIELD, Problem::Email);
    if value.len() > 254 {
        return Err(fail(FIELD, Problem::TooLong(254)));
    }
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if local_ok && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok {
        Ok(value.to_string())
    } else {
        Err(bad())
    }
}

/// Normalises a phone number to E.164 (`+` then 8–15 digits). Spaces, dashes, dots and
/// parentheses are stripped; `00` is the international prefix; a number without `+` is
/// national: its leading trunk `0` is dropped and the tenant's calling code (digits, e.g.
/// `254`) is put in front.
pub fn phone(raw: &str, default_calling_code: Option<&str>) -> Result<String, ValidationError> {
    const FIELD: &str = "phone";
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    if cleaned.is_empty() {
        return Err(fail(FIELD, Problem::Required));
    }
    let digits = if let Some(rest) = cleaned.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = cleaned.strip_prefix("00") {
        rest.to_string()
    } else {
        let code = default_calling_code.ok_or(fail(
            FIELD,
            Problem::Phone("has no country code: write it as +<country code><number>"),
        ))?;
        format!("{code}{}", cleaned.trim_start_matches('0'))
    };
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(fail(
            FIELD,
            Problem::Phone("may only contain digits after the +"),
        ));
    }
    if digits.starts_with('0') {
        return Err(fail(
            FIELD,
            Problem::Phone("country code cannot start with 0"),
        ));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(fail(
            FIELD,
            Problem::Phone("must have 8 to 15 digits including the country code"),
        ));
    }
    Ok(format!("+{digits}"))
}

/// A tenant's default calling code: 1–3 digits, not starting with 0 (`254`, `1`, `44`).
pub fn calling_code(value: &str) -> Result<(), ValidationError> {
    let ok = (1..=3).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_digit())
        && !value.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(fail(
            "defaultCallingCode",
            Problem::Characters("1 to 3 digits, not starting with 0"),
        ))
    }
}

pub fn latitude(value: Degrees) -> Result<(), ValidationError> {
    let limit = 90 * 10i64.pow(Degrees::SCALE);
    if (-limit..=limit).contains(&value.e7()) {
        Ok(())
    } else {
        Err(fail(
            "latitude",
            Problem::Range {
                min: "-90",
                max: "90",
            },
        ))
    }
}

pub fn longitude(value: Degrees) -> Result<(), ValidationError> {
    let limit = 180 * 10i64.pow(Degrees::SCALE);
    if (-limit..=limit).contains(&value.e7()) {
        Ok(())
    } else {
        Err(fail(
            "longitude",
            Problem::Range {
                min: "-180",
                max: "180",
            },
        ))
    }
}

/// A free-text field: at most `max` characters and no control characters. The text is kept
/// as entered (no HTML escaping here: the API serves JSON only; HTML views escape on output).
pub fn text(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.chars().count() > max {
        return Err(fail(field, Problem::TooLong(max)));
    }
    if value.chars().any(char::is_control) {
        return Err(fail(field, Problem::ControlCharacters));
    }
    Ok(())
}

/// A required free-text field (customer or package name).
pub fn required_text(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(fail(field, Problem::Required));
    }
    text(field, value, max)
}

/// A MAC address `AA:BB:CC:DD:EE:FF` (also `-` separated or lower case); returns it upper-case
/// with colons, as RouterOS prints it.
pub fn mac(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let hex: String = value.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    let separators_ok = value.len() == 12 || value.len() == 17;
    if !separators_ok || hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(fail(
            field,
            Problem::Other("is not a MAC address like AA:BB:CC:DD:EE:FF".into()),
        ));
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Ok(pairs.join(":"))
}

/// An IPv4 address (static-IP customers, router addresses).
pub fn ipv4(field: &'static str, value: &str) -> Result<(), ValidationError> {
    value
        .parse::<std::net::Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| {
            fail(
                field,
                Problem::Other("is not an IPv4 address like 10.0.0.1".into()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_routeros_safe() {
        assert!(username("customer001").is_ok());
        assert!(username("john.doe@site_1-a").is_ok());
        assert_eq!(username("").unwrap_err().problem, Problem::Required);
        assert_eq!(
            username(&"a".repeat(65)).unwrap_err().problem,
            Problem::TooLong(64)
        );
        for bad in ["john doe", "a\"b", "name;drop", "ümlaut", "a/b", "a$b"] {
            let err = username(bad).unwrap_err();
            assert_eq!(err.field, "username");
            assert!(matches!(err.problem, Problem::Characters(_)), "{bad}");
        }
    }

    #[test]
    fn customer_passwords_follow_the_rules() {
        assert!(customer_password("Zebra-Lamp-42", "alice").is_ok());
        assert_eq!(
            customer_password("short", "alice").unwrap_err().problem,
            Problem::TooShort(8)
        );
        assert_eq!(
            customer_password(&"x".repeat(65), "a").unwrap_err().problem,
            Problem::TooLong(64)
        );
        assert_eq!(
            customer_password("alice.smith", "Alice.Smith")
                .unwrap_err()
                .problem,
            Problem::EqualsUsername
        );
        assert_eq!(
            customer_password("Password123", "bob").unwrap_err().problem,
            Problem::TooCommon
        );
        assert!(customer_password("tab\there1", "bob").is_err());
        assert!(customer_password("pässwörter", "bob").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(email(" john@example.com ").unwrap(), "john@example.com");
        assert!(email("a.b+tag@mail.example.co.ke").is_ok());
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@example",
            "jo hn@example.com",
            "a@b..com",
            "a@-b.com",
            "a@b.c0m",
        ] {
            assert_eq!(email(bad).unwrap_err().field, "email", "{bad}");
        }
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(phone("+254 700 000 000", None).unwrap(), "+254700000000");
        assert_eq!(phone("+1 (415) 555-0132", None).unwrap(), "+14155550132");
        assert_eq!(phone("0700.000.000", Some("254")).unwrap(), "+254700000000");
        assert_eq!(phone("00254700000000", None).unwrap(), "+254700000000");
        assert!(phone("0700000000", None).is_err());
        assert!(phone("+123", None).is_err());
        assert!(phone("+1234567890123456", None).is_err());
        assert!(phone("+25470000000x", None).is_err());
        assert!(phone("", Some("254")).is_err());
    }

    #[test]
    fn coordinates_are_range_checked() {
        assert!(latitude(Degrees::parse("-90").unwrap()).is_ok());
        assert!(latitude(Degrees::parse("90.0000001").unwrap()).is_err());
        assert!(longitude(Degrees::parse("180").unwrap()).is_ok());
        assert_eq!(
            longitude(Degrees::parse("-180.5").unwrap())
                .unwrap_err()
                .field,
            "longitude"
        );
    }

    #[test]
    fn text_fields_are_bounded_and_free_of_control_characters() {
        assert!(
            text("name", "<script>alert(1)</script>", 200).is_ok(),
            "kept as entered"
        );
        assert_eq!(
            text("name", "a\nb", 200).unwrap_err().problem,
            Problem::ControlCharacters
        );
        assert_eq!(
            text("location", &"x".repeat(201), 200).unwrap_err().problem,
            Problem::TooLong(200)
        );
        assert_eq!(
            required_text("name", "  ", 200).unwrap_err().problem,
            Problem::Required
        );
    }

    #[test]
    fn macs_and_addresses() {
        assert_eq!(
            mac("lastMac", "00-11-22-aa-bb-cc").unwrap(),
            "00:11:22:AA:BB:CC"
        );
        assert!(mac("lastMac", "00:11:22:33:44").is_err());
        assert!(ipv4("staticIp", "10.0.0.1").is_ok());
        assert!(ipv4("staticIp", "10.0.0.256").is_err());
    }
}

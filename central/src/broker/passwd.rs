//! Mosquitto 2 password hashes (`$7$`): PBKDF2-HMAC-SHA512 with a random 12-byte salt and a
//! 64-byte result, written `$7$<iterations>$<base64 salt>$<base64 hash>` (standard base64 with
//! padding, as `mosquitto_passwd` writes them). Pure apart from the random salt; no file I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use easyisp_protocol::Secret;

/// PBKDF2 rounds. Mosquitto checks the hash on every CONNECT on its single thread, and every
/// password central generates carries 256 random bits, which no amount of stretching makes
/// stronger; 1000 rounds (about 1 ms) keep a reconnect storm of a large fleet cheap while
/// still slowing down guesses of a weak monitor password chosen by a person.
pub const ITERATIONS: u32 = 1000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// A `$7$` hash of `password` with a fresh random salt.
pub fn hash(password: &Secret<String>) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    Ok(hash_with(password.expose().as_bytes(), &salt, ITERATIONS))
}

fn hash_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// Whether `password` matches a `$7$` hash; a malformed hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(""), Some("7"), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(expected),
    ) else {
        return false;
    };
    if iterations == 0 || iterations > 10_000_000 || expected.len() != HASH_LEN {
        return false;
    }
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, iterations, &mut out);
    // Constant-time comparison: every byte is looked at whatever differs first.
    out.iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// A new random password for a broker account: 256 bits, hex (no characters that need
/// quoting in a shell or a TOML file).
pub fn generate_password() -> Result<Secret<String>, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(Secret::new(hex::encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_has_mosquittos_layout_and_verifies() {
        let password = Secret::new("Zebra-Lamp-42".to_string());
        let stored = hash(&password).unwrap();
        let parts: Vec<&str> = stored.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "1000"]);
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), SALT_LEN);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), HASH_LEN);
        assert!(verify("Zebra-Lamp-42", &stored));
        assert!(!verify("Zebra-Lamp-43", &stored));
        // A second hash of the same password uses another salt.
        assert_ne!(stored, hash(&password).unwrap());
    }

    #[test]
    fn verifies_a_hash_written_by_mosquitto_passwd() {
        // `mosquitto_passwd -b FILE u secret` (Mosquitto 2.0, 101 rounds).
        let written = "$7$101$1NC/G30k+la4yuXf$hQ9LVpWIUwHxosj8f8iW7gm86L0T1R3AIlBOyw8kbiwCKTgOKRQY6uHCgDyowRyaM9ffHYbW4MKC5xhXZi8Myw==";
        assert!(verify("secret", written));
        assert!(!verify("Secret", written));
        let salt = STANDARD.decode("1NC/G30k+la4yuXf").unwrap();
        assert_eq!(hash_with(b"secret", &salt, 101), written);
    }

    #[test]
    fn malformed_hashes_match_nothing() {
        for bad in [
            "",
            "$6$abc$def",
            "$7$x$MDEy$MDEy",
            "$7$0$MDEy$MDEy",
            "$7$101$!!$MDEy",
            "$7$101$MDEy$MDEy",
            "$7$101$MDEy$MDEy$extra",
        ] {
            assert!(!verify("secret", bad), "{bad}");
        }
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
    }
}

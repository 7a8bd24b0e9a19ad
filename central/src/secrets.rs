//! Secrets at rest: the data directory's key file, the ChaCha20-Poly1305 AEAD that encrypts
//! customer passwords (the router needs them in clear for CHAP, so they cannot be hashed),
//! argon2id hashes of operator passwords, and opaque random tokens stored as SHA-256 hashes.
//!
//! Nothing here logs or prints a secret; plaintext passwords travel only in `Secret`.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use easyisp_protocol::Secret;
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use thiserror::Error;

/// Name of the key file inside the data directory.
pub const KEY_FILE: &str = "customer-secrets.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

#[derive(Debug, Error)]
pub enum SecretsError {
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} must hold exactly {KEY_LEN} bytes, found {found}")]
    KeyLength { path: String, found: usize },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("a stored customer password could not be decrypted (wrong key file or damaged row)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), SecretsError> {
    getrandom::fill(buf).map_err(|e| SecretsError::Random(e.to_string()))
}

/// The AEAD for customer passwords. Each ciphertext is `nonce || sealed`, and the customer's
/// tenant and id are the associated data, so a row copied onto another customer fails to open.
#[derive(Clone)]
pub struct Cipher {
    aead: ChaCha20Poly1305,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    pub fn from_key(key: &[u8; KEY_LEN]) -> Cipher {
        Cipher {
            aead: ChaCha20Poly1305::new(key.into()),
        }
    }

    /// Reads the key file in `dir`, creating it (mode 0600, 32 random bytes) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Cipher, SecretsError> {
        let path = dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| SecretsError::KeyFile {
            path: shown.clone(),
            source,
        };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let mut key = [0u8; KEY_LEN];
                random_bytes(&mut key)?;
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                return Ok(Cipher::from_key(&key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mut file = fs::File::open(&path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %shown, mode = format!("{mode:o}"), "key file is readable by others; tightening it to 0600");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        let mut bytes = Vec::with_capacity(KEY_LEN);
        file.read_to_end(&mut bytes).map_err(io)?;
        let key: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretsError::KeyLength {
                    path: shown.clone(),
                    found: bytes.len(),
                })?;
        Ok(Cipher::from_key(&key))
    }

    pub fn encrypt(&self, aad: &[u8], plain: &Secret<String>) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let sealed = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.expose().as_bytes(),
                    aad,
                },
            )
            .map_err(|_| SecretsError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, aad: &[u8], stored: &[u8]) -> Result<Secret<String>, SecretsError> {
        if stored.len() < NONCE_LEN {
            return Err(SecretsError::Decrypt);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Decrypt)?;
        let plain = self
            .aead
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SecretsError::Decrypt)
    }
}

/// A new opaque token (256 random bits, hex) and the hash under which it is stored.
pub fn new_token() -> Result<(Secret<String>, Vec<u8>), SecretsError> {
    let mut raw = [0u8; 32];
    random_bytes(&mut raw)?;
    let token = hex::encode(raw);
    let hash = token_hash(&token);
    Ok((Secret::new(token), hash))
}

/// SHA-256 of a presented token: what the database stores and looks up.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// An argon2id PHC string for an operator password. Slow by design: call off the runtime.
pub fn hash_password(password: &Secret<String>) -> Result<String, SecretsError> {
    Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretsError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string. Slow by design: call off the runtime.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when the username is unknown so that
/// unknown users and wrong passwords take the same time.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&Secret::new("easyisp-timing-equaliser".to_string())).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_passwords_round_trip_and_are_bound_to_their_customer() {
        let cipher = Cipher::from_key(&[7u8; 32]);
        let sealed = cipher
            .encrypt(b"t1/c1", &Secret::new("Zebra-Lamp-42".into()))
            .unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"Zebra"));
        assert_eq!(
            cipher.decrypt(b"t1/c1", &sealed).unwrap().expose(),
            "Zebra-Lamp-42"
        );
        assert!(cipher.decrypt(b"t1/c2", &sealed).is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cipher::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = a.encrypt(b"x", &Secret::new("secret-pass".into())).unwrap();
        let b = Cipher::load_or_create(dir.path()).unwrap();
        assert_eq!(b.decrypt(b"x", &sealed).unwrap().expose(), "secret-pass");
    }

    #[test]
    fn operator_passwords_are_argon2id() {
        let hash = hash_password(&Secret::new("correct horse".into())).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
    }
}

//! Secrets encrypted at rest: every stored Secret is sealed with XChaCha20-Poly1305 under
//! the cluster's primary key before it is proposed, so the Raft log, the state machine,
//! snapshots and backups hold only ciphertext; reads open it with the key it names. The
//! keys live in a file on each head only (`encryption.json`, mode 0600), never in the
//! replicated store; a joining head receives them with its certificate. Nonces are random
//! (24 bytes: no collision worth counting), and the storage key is the associated data, so a
//! sealed value cannot be moved under another name. Pure but for reading and writing the
//! key file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// Where Secrets are stored; values under it are sealed.
pub const SECRETS_PREFIX: &str = "/registry/core/secrets/";
/// How a sealed value starts: `orch:enc:v1:<key id>:` then nonce and ciphertext.
const MAGIC: &[u8] = b"orch:enc:v1:";
pub const KEY_FILE: &str = "encryption.json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the value is sealed with key {0:?}, which this head does not hold")]
    UnknownKey(String),
    #[error("the sealed value is damaged or was not sealed for this key")]
    Corrupt,
    #[error("the key file is invalid: {0}")]
    BadKeys(String),
}

/// The cluster's keys: the primary seals, any of them opens.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Keyring {
    pub primary: String,
    /// Key id → the 32-byte key, base64.
    pub keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("primary", &self.primary).field("keys", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl Keyring {
    /// A new keyring with one random key named `id`.
    pub fn generate(id: &str) -> Keyring {
        let key: [u8; 32] = rand::random();
        Keyring { primary: id.to_string(), keys: BTreeMap::from([(id.to_string(), base64::engine::general_purpose::STANDARD.encode(key))]) }
    }

    pub fn parse(bytes: &[u8]) -> Result<Keyring, SealError> {
        let ring: Keyring = serde_json::from_slice(bytes).map_err(|e| SealError::BadKeys(e.to_string()))?;
        if !ring.keys.contains_key(&ring.primary) {
            return Err(SealError::BadKeys(format!("the primary key {:?} is not in the file", ring.primary)));
        }
        for id in ring.keys.keys() {
            ring.cipher(id)?;
        }
        Ok(ring)
    }

    pub fn load(path: &Path) -> anyhow::Result<Keyring> {
        Ok(Keyring::parse(&std::fs::read(path)?)?)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::daemon::config::write_private(path, &serde_json::to_vec(self)?)
    }

    fn cipher(&self, id: &str) -> Result<XChaCha20Poly1305, SealError> {
        let b64 = self.keys.get(id).ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let key = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| SealError::BadKeys(format!("key {id:?} is not base64")))?;
        XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SealError::BadKeys(format!("key {id:?} is not 32 bytes")))
    }
}

/// Seals and opens stored values (only Secrets'); shared by a head's store and watches.
pub struct Codec {
    ring: RwLock<Keyring>,
}

impl Codec {
    pub fn new(ring: Keyring) -> Codec {
        Codec { ring: RwLock::new(ring) }
    }

    /// The keys in use.
    pub fn keyring(&self) -> Keyring {
        self.ring.read().expect("keyring lock").clone()
    }

    /// Swap in new keys (a rotation's steps; every head's codec is replaced the same way).
    pub fn replace(&self, ring: Keyring) {
        *self.ring.write().expect("keyring lock") = ring;
    }

    /// Does a value stored at `key` get sealed?
    pub fn sealed(key: &str) -> bool {
        key.starts_with(SECRETS_PREFIX)
    }

    /// The value to store at `key`: sealed under the primary key if it is a Secret's.
    pub fn seal(&self, key: &str, plain: Vec<u8>) -> Vec<u8> {
        if !Self::sealed(key) {
            return plain;
        }
        let ring = self.ring.read().expect("keyring lock");
        let cipher = ring.cipher(&ring.primary).expect("the primary key was checked when the keyring was loaded");
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = cipher.encrypt(nonce, Payload { msg: &plain, aad: key.as_bytes() }).expect("XChaCha20-Poly1305 seals any length we store");
        let mut out = Vec::with_capacity(MAGIC.len() + ring.primary.len() + 1 + 24 + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(ring.primary.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plain value stored at `key` (values that were never sealed pass through).
    pub fn open<'a>(&self, key: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, SealError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else { return Ok(Cow::Borrowed(stored)) };
        let colon = rest.iter().position(|b| *b == b':').ok_or(SealError::Corrupt)?;
        let id = std::str::from_utf8(&rest[..colon]).map_err(|_| SealError::Corrupt)?;
        let body = &rest[colon + 1..];
        if body.len() < 24 {
            return Err(SealError::Corrupt);
        }
        let (nonce, sealed) = body.split_at(24);
        let cipher = self.ring.read().expect("keyring lock").cipher(id)?;
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: key.as_bytes() }).map(Cow::Owned).map_err(|_| SealError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/registry/core/secrets/default/db";

    #[test]
    fn secrets_are_sealed_and_opened() {
        let codec = Codec::new(Keyring::generate("k1"));
        let plain = br#"{"data":{"password":"aHVudGVyMg=="}}"#.to_vec();
        let stored = codec.seal(KEY, plain.clone());
        assert!(stored.starts_with(b"orch:enc:v1:k1:"));
        assert!(!stored.windows(8).any(|w| w == b"aHVudGVy"), "no plaintext in the stored value");
        assert_eq!(codec.open(KEY, &stored).unwrap().as_ref(), plain.as_slice());
        assert_ne!(codec.seal(KEY, plain.clone()), stored, "a fresh nonce every time");
        // Other kinds, and values stored before encryption, pass through.
        let cm = b"{}".to_vec();
        assert_eq!(codec.seal("/registry/core/configmaps/default/x", cm.clone()), cm);
        assert_eq!(codec.open(KEY, b"{\"old\":1}").unwrap().as_ref(), b"{\"old\":1}");
    }

    #[test]
    fn tampering_moving_and_foreign_keys_fail() {
        let codec = Codec::new(Keyring::generate("k1"));
        let mut stored = codec.seal(KEY, b"secret".to_vec());
        assert_eq!(codec.open("/registry/core/secrets/default/other", &stored).unwrap_err(), SealError::Corrupt, "bound to its key");
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert_eq!(codec.open(KEY, &stored).unwrap_err(), SealError::Corrupt);
        let other = Codec::new(Keyring::generate("k2"));
        let foreign = other.seal(KEY, b"x".to_vec());
        assert_eq!(codec.open(KEY, &foreign).unwrap_err(), SealError::UnknownKey("k2".into()));
        assert_eq!(codec.open(KEY, b"orch:enc:v1:k1:short").unwrap_err(), SealError::Corrupt);
    }

    #[test]
    fn key_files_are_checked() {
        let ring = Keyring::generate("k1");
        assert_eq!(Keyring::parse(&serde_json::to_vec(&ring).unwrap()).unwrap(), ring);
        assert!(Keyring::parse(br#"{"primary":"x","keys":{}}"#).is_err());
        assert!(Keyring::parse(br#"{"primary":"x","keys":{"x":"c2hvcnQ="}}"#).is_err(), "a key of 5 bytes");
        assert!(!format!("{ring:?}").contains(&ring.keys["k1"]), "Debug prints no key");
    }
}

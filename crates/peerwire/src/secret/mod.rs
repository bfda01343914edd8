//! Secret mode: every connection proves knowledge of a shared secret, with no secret on the
//! wire, and is then encrypted and authenticated — for clusters without a certificate
//! authority (Spark's `spark.authenticate`, without its home-made key exchange).
//!
//! The construction is the Noise protocol framework's `NNpsk0` pattern
//! (`Noise_NNpsk0_25519_ChaChaPoly_SHA256`, the `snow` crate): the secret is a 32-byte
//! pre-shared key mixed into the handshake before anything else, both sides contribute fresh
//! ephemeral X25519 keys, and every byte after the handshake travels in ChaCha20-Poly1305
//! records. A peer without the secret cannot complete the handshake; a recorded exchange
//! replayed fails at its first record (the responder's new ephemeral key changes every
//! session key); an altered, dropped or reordered record fails to decrypt and closes the
//! connection.
//!
//! Secrets are named, so a cluster rotates without a restart of every node at once: a node
//! accepts every secret in its [`SecretConfig`] and connects with the first. A node in secret
//! mode refuses plaintext and TLS peers ([`GoAwayReason::SecretRequired`]), unknown names
//! and wrong secrets, each with its own [`SecretFailure`]. Holding the secret is what a peer
//! proves: any holder may claim any node id (use TLS where node identities must be proven).
//!
//! [`GoAwayReason::SecretRequired`]: crate::GoAwayReason::SecretRequired

mod config;
mod failure;
mod handshake;
mod stream;

pub use config::{MAX_NAME_LEN, SECRET_LEN, SecretConfig, SecretConfigError};
pub use failure::SecretFailure;

pub(crate) use handshake::{accept, connect};

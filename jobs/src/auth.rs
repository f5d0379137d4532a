//! Bearer-token authentication. Tokens are compared in constant time (as SHA-256 digests, so
//! neither content nor length leaks through timing) and never logged. Admin tokens are
//! accepted everywhere and may also see secrets (`?reveal=true`).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted tokens, or none at all in dev mode.
#[derive(Clone)]
pub struct Auth {
    digests: Arc<Vec<[u8; 32]>>,
    admin: Arc<Vec<[u8; 32]>>,
    disabled: bool,
}

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// May see secrets (`?reveal=true`): an admin token, or dev mode.
    pub admin: bool,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Auth {
    /// Accept `tokens` and `admin` tokens; `dev` disables authentication altogether.
    pub fn new(tokens: &[SecretString], admin: &[SecretString], dev: bool) -> Self {
        let hash = |ts: &[SecretString]| ts.iter().map(|t| digest(t.expose_secret().as_bytes())).collect();
        Self { digests: Arc::new(hash(tokens)), admin: Arc::new(hash(admin)), disabled: dev }
    }

    /// The caller an `Authorization` header value makes, or `None` when it is not ours.
    pub fn caller(&self, authorization: Option<&[u8]>) -> Option<Caller> {
        if self.disabled {
            return Some(Caller { admin: true });
        }
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = authorization
            .and_then(|h| h.split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token)?;
        let d = digest(token);
        let admin = known(&self.admin, &d);
        (admin || known(&self.digests, &d)).then_some(Caller { admin })
    }
}

/// Is `d` one of `digests`? Compares with every one, without an early exit.
fn known(digests: &[[u8; 32]], d: &[u8; 32]) -> bool {
    digests.iter().fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(d)).into()
}

//! Bearer-token authentication. Tokens are compared in constant time (as SHA-256 digests, so
//! neither content nor length leaks through timing) and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The accepted tokens, or none at all in dev mode.
#[derive(Clone)]
pub struct Auth {
    digests: Arc<Vec<[u8; 32]>>,
    disabled: bool,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Auth {
    /// Accept `tokens`; `dev` disables authentication altogether.
    pub fn new(tokens: &[SecretString], dev: bool) -> Self {
        let digests = tokens.iter().map(|t| digest(t.expose_secret().as_bytes())).collect();
        Self { digests: Arc::new(digests), disabled: dev }
    }

    /// Is this `Authorization` header value one of ours?
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        if self.disabled {
            return true;
        }
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some(token) = authorization
            .and_then(|h| h.split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token)
        else {
            return false;
        };
        let d = digest(token);
        // Compare with every token, without an early exit.
        self.digests.iter().fold(subtle::Choice::from(0), |acc, known| acc | known.ct_eq(&d)).into()
    }
}

/// Middleware: 401 unless the request carries an accepted bearer token.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if auth.accepts(header) { Ok(next.run(req).await) } else { Err(ApiError::unauthorized()) }
}

//! Bearer-token authentication of the API (the token check itself is `draas_jobs::auth`, shared
//! with the workers' metrics listener).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

pub use draas_jobs::auth::{Auth, Caller};

use crate::error::ApiError;

/// Middleware: 401 unless the request carries an accepted bearer token; tells the handlers
/// who called.
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let caller = auth.caller(header).ok_or_else(ApiError::unauthorized)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

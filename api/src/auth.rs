//! Bearer-token authentication of the API (the token check itself is `draas_jobs::auth`, shared
//! with the workers' metrics listener), and what each role may do.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

pub use draas_jobs::auth::{Auth, Caller, Role};

use crate::error::ApiError;

/// Middleware: 401 unless the request carries an accepted bearer token, 403 when its role may
/// not use the method; tells the handlers who called.
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let caller = auth.caller(header).ok_or_else(ApiError::unauthorized)?;
    allowed(&caller, req.method())?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// A `read` token may only read (`GET`, `HEAD`); `operate` and `admin` may use every method
/// (what is admin-only is checked where it is asked for: `?reveal=true`, policy exemptions).
fn allowed(caller: &Caller, method: &Method) -> Result<(), ApiError> {
    if caller.role == Role::Read && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            format!(
                "token '{}' has the role 'read', which may only use GET and HEAD; {method} needs 'operate' or 'admin'",
                caller.name
            ),
        ));
    }
    Ok(())
}

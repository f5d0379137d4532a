//! draas shared kernel: validated domain types, drasi-server configuration, the Redis state
//! store and its key schema, settings and telemetry. No HTTP framework, no platform SDKs.

pub mod auth;
pub mod crashloop;
pub mod drasi;
pub mod ids;
pub mod jobs;
pub mod lease;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod nodes;
pub mod ops;
pub mod ports;
pub mod queues;
pub mod redact;
pub mod render;
pub mod settings;
pub mod store;
pub mod submit;
pub mod telemetry;
pub mod validate;

//! draas shared kernel. No HTTP framework, no platform SDKs.
//!
//! | module | holds |
//! |---|---|
//! | [`domain`] | validated ids, instance and operation records, the drasi-server configuration with its validation, redaction and rendering |
//! | [`store`] | the Redis state store: one `Store`, its key schema, scripts and typed views (the only code that sends Redis commands) |
//! | [`queue`] | job payloads, queue names, submitting operations, the apalis backend of the lifecycle queues, sweeping finished tasks |
//! | [`drasi`] | drasi-server's REST API as draas reads it: components, query results |
//! | [`settings`] | one `Settings`, loaded in layers |
//! | [`vault`] | encryption of the instances' secrets at rest |
//! | [`auth`], [`metrics`], [`telemetry`] | bearer tokens, Prometheus metrics, tracing set-up |

pub mod auth;
pub mod domain;
pub mod drasi;
pub mod metrics;
pub mod queue;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod vault;

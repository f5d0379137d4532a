//! The domain: validated identifiers, the records of an instance and of an operation, the
//! drasi-server configuration with its validation, redaction and rendering. Plain data and
//! pure functions; nothing here talks to Redis, a platform or the network.

pub mod config;
pub mod ids;
pub mod limits;
pub mod live;
pub mod model;
pub mod network;
pub mod operation;
pub mod plugins;
pub mod policy;
pub mod redact;
pub mod render;
pub mod secrets;
pub mod text;
pub mod validate;

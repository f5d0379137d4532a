//! Route handlers, one module per resource.

pub mod components;
pub mod config;
pub mod data;
pub mod health;
pub mod instances;
pub mod logs;
pub mod operations;
pub mod queues;
pub mod secrets;
pub mod status;

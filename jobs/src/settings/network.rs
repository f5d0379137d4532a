//! Settings of the network policy (`network` section): which server `host` and `port` of a
//! user's configuration draas honours. None by default: draas binds every server where it
//! decides and allocates its port from the platform's pool.

use serde::Deserialize;

use crate::domain::network::Policy;

/// What users may choose of where their servers listen.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkSettings {
    /// Bind addresses a configuration may name (`DRAAS_NETWORK__ALLOWED_HOSTS=a,b`).
    pub allowed_hosts: Vec<String>,
    /// Ports a configuration may name, inclusive; a port is also only ever bound inside the
    /// platform's own pool (`process.port_range_*`), so this range should lie within it.
    pub allowed_ports: Option<PortRange>,
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl NetworkSettings {
    /// The policy these settings make (no choice of draas' own kept yet).
    pub fn policy(&self) -> Policy<'_> {
        Policy { hosts: &self.allowed_hosts, ports: self.allowed_ports.map(|r| (r.start, r.end)), ..Policy::default() }
    }
}

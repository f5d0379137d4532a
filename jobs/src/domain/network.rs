//! Where a server listens belongs to draas: a configuration's top-level `host` and `port` are
//! honoured only when the operator's policy allows them, and otherwise replaced by draas' own
//! (the platform's bind address, a port from its pool), with a warning for the user.
//! Replacing rather than refusing keeps drasi-server's own examples, which all say
//! `host: 0.0.0.0` and `port: 8080`, working as pasted.

use super::config::DrasiConfig;

/// What an operator lets users choose, and what draas chose itself for the instance at hand
/// (kept without a word: a client writing back the YAML draas rendered names exactly those).
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy<'a> {
    /// Bind addresses a configuration may name.
    pub hosts: &'a [String],
    /// Ports (inclusive) a configuration may name.
    pub ports: Option<(u16, u16)>,
    /// The bind address draas gives the instance's platform.
    pub own_host: Option<&'a str>,
    /// The port draas allocated to the instance.
    pub own_port: Option<u16>,
}

/// Drop the `host` and `port` of `config` that `policy` does not allow; one warning for each.
pub fn confine(config: &mut DrasiConfig, policy: Policy<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    let allowed_host = |h: &String| policy.hosts.contains(h) || policy.own_host == Some(h.as_str());
    let allowed_port =
        |p: u16| policy.ports.is_some_and(|(lo, hi)| (lo..=hi).contains(&p)) || policy.own_port == Some(p);
    if let Some(host) = config.host.take_if(|h| !allowed_host(h)) {
        warnings.push(format!(
            "host '{}' was removed: draas decides where servers listen (it binds the platform's own address)",
            host.escape_default()
        ));
    }
    if let Some(port) = config.port.take_if(|p| !allowed_port(p.get())) {
        warnings.push(format!("port {} was removed: draas allocates each server's port from its pool", port.get()));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_config;
    use serde_json::json;

    #[test]
    fn a_pasted_example_loses_its_host_and_port_with_a_warning_each() {
        let mut c = parse_config(json!({"host": "0.0.0.0", "port": 8080, "logLevel": "info"})).expect("valid");
        let warnings = confine(&mut c, Policy::default());
        assert_eq!((c.host.as_deref(), c.port, warnings.len()), (None, None, 2));
    }

    #[test]
    fn what_the_policy_allows_is_kept() {
        let hosts = vec!["127.0.0.1".to_owned()];
        let policy = Policy { hosts: &hosts, ports: Some((9000, 9010)), ..Policy::default() };
        let mut c = parse_config(json!({"host": "127.0.0.1", "port": 9005})).expect("valid");
        assert!(confine(&mut c, policy).is_empty());
        let mut c = parse_config(json!({"host": "0.0.0.0", "port": 2})).expect("valid");
        assert_eq!(confine(&mut c, policy).len(), 2);
        let own = Policy { own_host: Some("0.0.0.0"), own_port: Some(2), ..Policy::default() };
        let mut c = parse_config(json!({"host": "0.0.0.0", "port": 2})).expect("valid");
        assert!(confine(&mut c, own).is_empty(), "draas' own choices are kept");
    }
}

//! Validated identifiers: instance ids and names, component ids, operation ids.
//!
//! Every identifier that may end up in a file name, a container name, a Redis key or a
//! Kubernetes object name is parsed here, once, at the edge. A value of these types cannot
//! hold `../`, whitespace, NUL, shell metacharacters or YAML specials.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IdError {
    /// Stable machine-readable code (`invalid_name`, `invalid_id`, ...).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of at most `max` characters: a DNS-1123 label.
pub(crate) fn is_dns_label(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// Server-generated instance id: a lowercase ULID (26 characters), safe as a URL segment,
    /// file name, container name and Kubernetes name suffix.
    InstanceId
);

string_newtype!(
    /// User-chosen instance name: 1–63 characters, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
    InstanceName
);

string_newtype!(
    /// Id of a source, query or reaction inside a drasi-server configuration.
    ComponentId
);

string_newtype!(
    /// Operation id: a lowercase ULID, doubling as the apalis task id.
    OperationId
);

/// Longest id we accept for instances and operations.
pub const MAX_ID_LEN: usize = 40;

pub(crate) fn new_ulid_string() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

impl InstanceId {
    /// A new, unique, time-ordered id.
    pub fn generate() -> Self {
        Self(new_ulid_string())
    }
}

impl OperationId {
    /// A new, unique, time-ordered id.
    pub fn generate() -> Self {
        Self(new_ulid_string())
    }
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if is_dns_label(s, MAX_ID_LEN) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError {
                code: "invalid_id",
                message: format!(
                    "instance id must be 1-{MAX_ID_LEN} characters of [a-z0-9-], starting and ending with a letter or digit"
                ),
            })
        }
    }
}

impl FromStr for OperationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if is_dns_label(s, MAX_ID_LEN) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError {
                code: "invalid_id",
                message: format!("operation id must be 1-{MAX_ID_LEN} characters of [a-z0-9-]"),
            })
        }
    }
}

impl FromStr for InstanceName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if is_dns_label(s, 63) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError {
                code: "invalid_name",
                message: "name must be 1-63 characters of [a-z0-9-], starting and ending with a letter or digit".into(),
            })
        }
    }
}

/// Longest component id we accept.
pub const MAX_COMPONENT_ID_LEN: usize = 63;

impl FromStr for ComponentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_COMPONENT_ID_LEN
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError {
                code: "invalid_component_id",
                message: format!(
                    "component id must be 1-{MAX_COMPONENT_ID_LEN} characters of [A-Za-z0-9_.-], starting with a letter, digit or '_'"
                ),
            })
        }
    }
}

/// Check a key prefix: it goes inside a Redis Cluster hash tag (`{prefix}`) and labels.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok { Ok(()) } else { Err(format!("key prefix '{prefix}' must be 1-64 characters of [A-Za-z0-9_.:-]")) }
}

/// Check a node id: it becomes part of queue names and keys.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(format!("node id '{id}' must be 1-63 characters of [A-Za-z0-9_.-]")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_lowercase() {
        let id = InstanceId::generate();
        assert_eq!(id.as_str().len(), 26);
        assert_eq!(id.as_str().parse::<InstanceId>().ok(), Some(id.clone()));
        assert_eq!(id.as_str(), id.as_str().to_ascii_lowercase());
    }

    #[test]
    fn hostile_names_are_rejected() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "../../etc",
            "has space",
            "Upper",
            "-lead",
            "trail-",
            "a;b",
            "$(x)",
            "a\0b",
            long.as_str(),
            "a:b",
            "a#b",
            "a/b",
            "a.b",
        ] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(63).parse::<InstanceName>().is_ok());
        assert!("my-instance-1".parse::<InstanceName>().is_ok());
    }

    #[test]
    fn component_ids_allow_builtin_graph_source_but_not_paths() {
        assert!("__component_graph__".parse::<ComponentId>().is_ok());
        assert!("orders-db".parse::<ComponentId>().is_ok());
        for bad in ["..", ".hidden", "a/b", "a b", "", "a:b", "-x"] {
            assert!(bad.parse::<ComponentId>().is_err(), "{bad:?} accepted");
        }
    }
}

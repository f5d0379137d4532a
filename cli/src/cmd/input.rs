//! Command inputs: YAML or JSON documents from a file or stdin (`-`), and durations.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::client::CliError;

/// Read a YAML or JSON document (JSON is YAML) from `path`, or from stdin when it is `-`.
pub fn document(path: &Path) -> Result<Value, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    serde_norway::from_str(&text).map_err(|e| CliError::Usage(format!("{name} is not valid YAML or JSON: {e}")))
}

/// A duration: seconds (`90`), or with a unit (`90s`, `5m`, `1h`).
pub fn duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("'{raw}' is not a duration (e.g. 90, 90s, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("'{raw}': unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("5d").is_err());
        assert!(duration("m").is_err());
    }
}

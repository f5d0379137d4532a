//! Text from drasi-server for people and clients: its log lines carry ANSI colour codes even
//! when its output is not a terminal; what draas shows (error details, log tails) is plain.

/// `s` without ANSI escape sequences.
pub fn plain(s: &str) -> String {
    String::from_utf8_lossy(&strip_ansi_escapes::strip(s.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_codes_are_removed_and_the_text_kept() {
        let line = "\u{1b}[2m2026-12-01T21:28:26Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m drasi_lib: started";
        assert_eq!(super::plain(line), "2026-12-01T21:28:26Z  INFO drasi_lib: started");
    }
}

//! What `/proc` says about this host's processes and sockets: the drasi-servers of an
//! instance (by the marks in their environment), whether a process is still the one we
//! started (pid and start time), and which process listens on which TCP port.

use std::collections::HashSet;
use std::fs;

/// A drasi-server process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    /// Start time in clock ticks since boot: with the pid, names the process uniquely.
    pub start_time: u64,
    /// The spec hash it was started with (`DRAAS_SPEC_HASH`).
    pub spec_hash: Option<String>,
}

impl Found {
    /// Is this process still alive (same pid, same start time)?
    pub fn is_alive(&self) -> bool {
        start_time(self.pid).is_some_and(|t| self.start_time == 0 || t == self.start_time)
    }
}

/// Listening TCP sockets on this host (IPv4 and IPv6): port and `socket:[inode]` link name.
pub fn listening_sockets() -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (`addr:PORT` in hex), st field 3 (0A = LISTEN), inode field 9.
            let Some(port) =
                f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if f.len() > 9 && f[3] == "0A" {
                out.push((port, format!("socket:[{}]", f[9])));
            }
        }
    }
    out
}

/// The `socket:[inode]` links among a process's descriptors.
pub fn socket_links(pid: i32) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:["))
        .collect()
}

/// Does process `pid` hold a listening TCP socket on `port` (IPv4 or IPv6)?
pub fn listens_on(pid: i32, port: u16) -> bool {
    let inodes: HashSet<String> = listening_sockets().into_iter().filter(|(p, _)| *p == port).map(|(_, i)| i).collect();
    !inodes.is_empty() && socket_links(pid).iter().any(|l| inodes.contains(l))
}

/// Ports in `range` that a listening socket not held by any of `own` uses.
pub fn busy_ports(range: (u16, u16), own: &[Found]) -> Vec<u16> {
    let own: HashSet<String> = own.iter().flat_map(|p| socket_links(p.pid)).collect();
    let mut busy: Vec<u16> = listening_sockets()
        .into_iter()
        .filter(|(port, inode)| (range.0..=range.1).contains(port) && !own.contains(inode))
        .map(|(port, _)| port)
        .collect();
    busy.sort_unstable();
    busy.dedup();
    busy
}

/// Start time of a live process in clock ticks since boot (field 22 of `/proc/<pid>/stat`);
/// `None` for a zombie or no process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is the state (field 3); start time is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Every live process on this host whose environment holds `marker` (`NAME=value`).
pub fn with_env(marker: &str) -> Vec<Found> {
    scan(|vars| vars.contains(&marker.as_bytes()).then_some(())).into_iter().map(|(_, f)| f).collect()
}

/// Live processes whose environment `select` picks (returning a tag for each).
pub fn scan<T>(select: impl Fn(&[&[u8]]) -> Option<T>) -> Vec<(T, Found)> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
            let tag = select(&vars)?;
            let spec_hash = vars
                .iter()
                .find_map(|v| v.strip_prefix(b"DRAAS_SPEC_HASH="))
                .map(|h| String::from_utf8_lossy(h).into_owned());
            Some((tag, Found { pid, start_time: start_time(pid)?, spec_hash }))
        })
        .collect()
}

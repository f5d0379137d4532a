//! What the kernel says about this host's processes and sockets: the drasi-servers of an
//! instance (by the marks in their environment in `/proc`), whether a process is still the one
//! we started (pid and start time), and which process listens on which TCP port (sock_diag
//! over netlink, which asks only for listening sockets; reading `/proc/net/tcp` walks every
//! socket of the host and takes milliseconds, twice per start).

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
    match diag::listening() {
        Ok(sockets) => sockets,
        Err(e) => {
            tracing::debug!(error = %e, "sock_diag failed; reading /proc/net/tcp");
            proc_net_tcp()
        }
    }
}

/// [`listening_sockets`] from `/proc/net/tcp` and `/proc/net/tcp6`.
fn proc_net_tcp() -> Vec<(u16, String)> {
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

/// Listening sockets through `NETLINK_SOCK_DIAG`.
mod diag {
    use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    use netlink_sys::protocols::NETLINK_SOCK_DIAG;
    use netlink_sys::{Socket, SocketAddr};

    /// Port and `socket:[inode]` of every listening TCP socket, IPv4 and IPv6.
    pub fn listening() -> std::io::Result<Vec<(u16, String)>> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut out = Vec::new();
        for (family, id) in [(AF_INET, SocketId::new_v4()), (AF_INET6, SocketId::new_v6())] {
            dump(&socket, family, id, &mut out)?;
        }
        Ok(out)
    }

    fn dump(socket: &Socket, family: u8, socket_id: SocketId, out: &mut Vec<(u16, String)>) -> std::io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let request = InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        };
        let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf[..]);
        socket.send(&buf[..], 0)?;
        let mut receive = vec![0; 65536];
        loop {
            let size = socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&receive[offset..size])
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                match message.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        out.push((r.header.socket_id.source_port, format!("socket:[{}]", r.header.inode)));
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => return Err(std::io::Error::other(format!("sock_diag: {e:?}"))),
                    _ => {}
                }
                let length = message.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        #[test]
        fn a_listener_of_this_process_is_found_with_its_port() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let found = super::listening().unwrap();
            assert!(found.iter().any(|(p, _)| *p == port), "{port} in {found:?}");
            let mine = super::super::socket_links(i32::try_from(std::process::id()).unwrap());
            assert!(found.iter().any(|(p, inode)| *p == port && mine.contains(inode)));
        }
    }
}

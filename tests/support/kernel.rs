//! What the kernel says about the processes under test, read from `/proc`:
//! which cell processes run (by their command name and the cell id in their
//! environment), what state a process is in, and which process owns the
//! client end of a TCP connection. The chaos audit uses these as evidence
//! the colony did not write: its own tables and logs are the claims under
//! test.

use std::collections::HashSet;

/// A running process of a cell binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellProcess {
    pub pid: i32,
    /// `COLONY_CELL_ID` from its environment (set by the launcher at exec).
    pub cell: Option<uuid::Uuid>,
}

/// Every process id the kernel lists.
pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The command name of `pid` (`/proc/pid/comm`, at most 15 bytes).
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim_end().to_owned())
}

/// The state letter of `pid` (`R`, `S`, `T` when stopped, `Z` when it died
/// and is not reaped yet), or None once it is gone.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Is `pid` gone or dead (a zombie counts: it runs nothing any more)?
pub fn dead(pid: i32) -> bool {
    matches!(state(pid), None | Some('Z') | Some('X'))
}

/// Every live process whose command name is `name` (`observer-cell`, say).
pub fn cell_processes(name: &str) -> Vec<CellProcess> {
    pids()
        .into_iter()
        .filter(|pid| comm(*pid).as_deref() == Some(name) && !dead(*pid))
        .map(|pid| {
            let cell = std::fs::read(format!("/proc/{pid}/environ")).ok().and_then(|env| {
                env.split(|b| *b == 0)
                    .find_map(|var| var.strip_prefix(b"COLONY_CELL_ID="))
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            });
            CellProcess { pid, cell }
        })
        .collect()
}

/// The network namespace `pid` lives in, as its inode number.
pub fn netns_of(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    link.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The process, among those named one of `names`, that owns the client end
/// of a TCP connection from local port `client_port` to remote port
/// `server_port`, found through the kernel's socket tables: the socket's
/// inode in `/proc/<pid>/net/tcp` (read in each network namespace the
/// candidates live in), then the process holding `socket:[inode]`.
pub fn owner_of_connection(client_port: u16, server_port: u16, names: &[&str]) -> Option<i32> {
    let candidates: Vec<i32> =
        pids().into_iter().filter(|pid| comm(*pid).is_some_and(|c| names.contains(&c.as_str()))).collect();
    let mut seen_ns = HashSet::new();
    let mut inodes = HashSet::new();
    for pid in &candidates {
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else { continue };
        if !seen_ns.insert(ns) {
            continue;
        }
        for table in ["tcp", "tcp6"] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
            inodes.extend(text.lines().skip(1).filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |addr: &str| u16::from_str_radix(addr.rsplit_once(':')?.1, 16).ok();
                (port(fields.get(1)?)? == client_port && port(fields.get(2)?)? == server_port)
                    .then(|| fields.get(9)?.parse::<u64>().ok())
                    .flatten()
                    .filter(|inode| *inode != 0)
            }));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: HashSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    candidates.into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| wanted.contains(target.to_string_lossy().as_ref()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup finds this very process as the owner of a connection it
    /// opened, and nobody for a port no connection uses.
    #[test]
    fn the_owner_of_a_connection_is_found_through_the_socket_tables() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let _accepted = server.accept().unwrap();
        let me = std::process::id() as i32;
        let name = comm(me).unwrap();
        let found = owner_of_connection(
            client.local_addr().unwrap().port(),
            server.local_addr().unwrap().port(),
            &[name.as_str()],
        );
        assert_eq!(found, Some(me));
        assert_eq!(owner_of_connection(1, server.local_addr().unwrap().port(), &[name.as_str()]), None);
        assert!(matches!(state(me), Some('R' | 'S')), "{:?}", state(me));
        assert!(!dead(me));
    }
}

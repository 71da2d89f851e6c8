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

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// `R`, `S`, `T` when stopped, `Z` when it died and is not reaped yet.
    pub state: char,
    pub ppid: i32,
    /// User + system CPU seconds of the process itself.
    pub cpu_secs: f64,
    /// User + system CPU seconds of the children it has reaped.
    pub reaped_cpu_secs: f64,
}

/// Read `/proc/<pid>/stat`, or None once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// "pid (comm) S ppid ...": the comm may hold spaces and parentheses, so
/// the fields are counted from the last ')'.
fn parse_stat(text: &str) -> Option<Stat> {
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let secs = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).map(|t| t / USER_HZ);
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        cpu_secs: secs(11)? + secs(12)?,
        reaped_cpu_secs: secs(13)? + secs(14)?,
    })
}

/// Resident and peak resident memory (`VmRSS`, `VmHWM`) in KiB, from
/// `/proc/<pid>/status`.
pub fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(key))?.trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Bytes the process handed to write(2) and send(2) (`wchar` in
/// `/proc/<pid>/io`).
pub fn written(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("wchar:"))?.trim().parse().ok()
}

/// CPU seconds of `root` and everything under it: each live descendant's,
/// plus what each has reaped.
pub fn tree_cpu_secs(root: i32) -> f64 {
    let all: Vec<(i32, Stat)> = pids().into_iter().filter_map(|pid| stat(pid).map(|s| (pid, s))).collect();
    let mut tree = vec![root];
    let mut total = 0.0;
    while let Some(pid) = tree.pop() {
        total += all.iter().find(|p| p.0 == pid).map_or(0.0, |p| p.1.cpu_secs + p.1.reaped_cpu_secs);
        tree.extend(all.iter().filter(|p| p.1.ppid == pid).map(|p| p.0));
    }
    total
}

/// The state letter of `pid` (`R`, `S`, `T` when stopped, `Z` when it died
/// and is not reaped yet), or None once it is gone.
pub fn state(pid: i32) -> Option<char> {
    stat(pid).map(|s| s.state)
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

    #[test]
    fn a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (obs (cell) x) T 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 5 0 1000 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.ppid), ('T', 17));
        assert!((s.cpu_secs - 3.0).abs() < 1e-9 && (s.reaped_cpu_secs - 0.5).abs() < 1e-9, "{s:?}");
        assert_eq!(parse_stat("4242 (truncated"), None);
    }

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

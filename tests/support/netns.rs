//! Real partitions: processes in a network namespace of the test's making,
//! joined to the host by a veth pair, cut off by dropped packets.
//!
//! The tests' servers (Postgres, Garage, the live source) listen on
//! 127.0.0.1. A [`CellNet`] gives the namespace one way to them: the host
//! end of the veth pair, [`CellNet::host_ip`], is translated to 127.0.0.1
//! (a DNAT in nftables, with `route_localnet` on that interface, and a
//! SNAT so that servers which trust only loopback, as the test Postgres
//! does in `pg_hba.conf`, see 127.0.0.1), so a URL
//! made with [`CellNet::url`] works inside the namespace and on the host
//! alike, and from another [`CellNet`]'s namespace too (the DNAT matches
//! the address on any interface), so two namespaces can share one URL and
//! still be cut apart. [`CellNet::cut`] drops every packet between the namespace and one
//! of those ports, both ways: established connections go half-open and new
//! ones time out, as on a real partition, and [`CellNet::heal`] lets them
//! through again. Nothing here is a proxy: the kernel drops the packets.
//!
//! Needs root (the tests run as root), `ip` and `nft`. Dropping a
//! [`CellNet`] removes the namespace, the veth pair and the table.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct CellNet {
    /// The namespace's name (`ip netns`).
    pub name: String,
    host_if: String,
    table: String,
    host_ip: Ipv4Addr,
    dir: tempfile::TempDir,
}

/// Run a command that must succeed; its stderr in the panic message.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Feed a ruleset to `nft -f -`.
fn nft(rules: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run nft: install nftables");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft failed: {}\n{rules}", String::from_utf8_lossy(&out.stderr).trim());
}

/// The port of a test server's URL, which [`CellNet::cut`] names.
pub fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().expect("a URL with a port")
}

impl CellNet {
    /// A new namespace with a veth pair to the host and a way to the
    /// host's loopback servers through [`CellNet::host_ip`].
    pub fn create() -> Self {
        // Unique across the test binaries that run at once: the pid and a counter.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}{n:x}", std::process::id() % 0xfffff);
        let name = format!("colony-{id}");
        let (host_if, ns_if) = (format!("ch{id}"), format!("cn{id}"));
        assert!(host_if.len() <= 15, "interface name too long: {host_if}");
        // A /30 per namespace from 10.200.0.0/16 .. 10.255.0.0/16.
        let slot = (std::process::id().wrapping_mul(64).wrapping_add(n)) % (56 * 16384);
        let base = 0x0AC8_0000u32 + slot * 4;
        let host_ip = Ipv4Addr::from(base + 1);
        let ns_ip = Ipv4Addr::from(base + 2);
        let table = format!("colony_{id}");
        let net = CellNet {
            name: name.clone(),
            host_if: host_if.clone(),
            table: table.clone(),
            host_ip,
            dir: tempfile::tempdir().unwrap(),
        };
        run("ip", &["netns", "add", &name]);
        run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        run("ip", &["link", "set", &ns_if, "netns", &name]);
        run("ip", &["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        run("ip", &["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &host_ip.to_string()]);
        // Packets from the namespace to 127.0.0.1 must not be dropped as martians.
        run("sysctl", &["-qw", &format!("net.ipv4.conf.{host_if}.route_localnet=1")]);
        nft(&format!(
            "table ip {table} {{
               set cut {{ type inet_service; }}
               counter dropped {{ }}
               chain nat_in {{ type nat hook prerouting priority -100; ip daddr {host_ip} dnat to 127.0.0.1; }}
               chain nat_out {{ type nat hook output priority -100; ip daddr {host_ip} dnat to 127.0.0.1; }}
               chain nat_src {{ type nat hook input priority 100; iifname \"{host_if}\" snat to 127.0.0.1; }}
               chain drop_in {{ type filter hook prerouting priority -300; iifname \"{host_if}\" tcp dport @cut counter name dropped drop; }}
               chain drop_out {{ type filter hook postrouting priority 0; oifname \"{host_if}\" tcp sport @cut counter name dropped drop; }}
             }}"
        ));
        net
    }

    /// The namespace's inode number, as [`crate::kernel::netns_of`] reads
    /// it for a process inside.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/var/run/netns/{}", self.name)).expect("the namespace exists").ino()
    }

    /// The address the namespace reaches the host's loopback servers at.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// `url` with 127.0.0.1 (or localhost) replaced by [`CellNet::host_ip`]:
    /// the same server, reachable from inside the namespace and the host.
    pub fn url(&self, url: &str) -> String {
        url.replace("127.0.0.1", &self.host_ip.to_string()).replace("localhost", &self.host_ip.to_string())
    }

    /// A script that runs `bin` inside the namespace (`ip netns exec`
    /// execs it: the pid a launcher sees is the program's own).
    pub fn wrap(&self, bin: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let script = self.dir.path().join(format!("in-{}-{name}", self.name));
        std::fs::write(&script, format!("#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n", self.name, bin.display()))
            .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    /// Drop every packet between the namespace and the host's `port`, both ways.
    pub fn cut(&self, port: u16) {
        run("nft", &["add", "element", "ip", &self.table, "cut", &format!("{{ {port} }}")]);
    }

    /// Packets dropped by [`CellNet::cut`] so far, both ways: the kernel's
    /// own count, the proof that a cut met traffic.
    pub fn dropped(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "counter", "ip", &self.table, "dropped"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run nft: {e}"));
        assert!(out.status.success(), "nft list counter failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            if word == "packets" {
                return words.next().and_then(|n| n.parse().ok()).expect("nft prints `packets N`");
            }
        }
        panic!("no packet count in `nft list counter`: {text}")
    }

    /// Let `port` through again.
    pub fn heal(&self, port: u16) {
        run("nft", &["delete", "element", "ip", &self.table, "cut", &format!("{{ {port} }}")]);
    }
}

impl Drop for CellNet {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        quiet("nft", &["delete", "table", "ip", &self.table]);
        quiet("ip", &["link", "del", &self.host_if]);
        quiet("ip", &["netns", "del", &self.name]);
    }
}

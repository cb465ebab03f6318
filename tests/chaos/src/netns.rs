//! The network of one chaos run: a namespace per node, all attached to a
//! bridge that lives in a namespace of its own, and a veth from the root
//! namespace to that bridge so that the test process reaches every node.
//!
//! ```text
//!  root namespace                 raftq-chaos-<run>-br            raftq-chaos-<run>-nI
//!  rqc<run>h 10.213.S.1/24 ─veth─ host ┐
//!                                      ├─ br0 ─ pI ─veth─ eth0 10.213.S.(10+I)/24
//! ```
//!
//! The /24 is picked so that no route of the root namespace overlaps it, so
//! the only traffic it carries is between the test process and the nodes.
//! A partition is a pair of nftables drop rules inside the two node
//! namespaces concerned, so a cut link drops packets silently, as a failed
//! switch port does, rather than refusing connections.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use rand::Rng;
use thiserror::Error;

/// Prefix of every namespace this module creates.
pub const NAMESPACE_PREFIX: &str = "raftq-chaos-";
/// Second octet of the run's 10.213.S.0/24 subnet.
const SUBNET_SECOND_OCTET: u8 = 213;
/// Host part of the root namespace's address on the bridge.
const HOST_OCTET: u8 = 1;
/// Name of the nftables table in each node namespace.
const NFT_TABLE: &str = "raftq_chaos";

/// Failure to build, change or remove the run's network.
#[derive(Debug, Error)]
pub enum NetnsError {
    /// `ip`, `nft` or a namespace file could not be used at all.
    #[error("network namespaces are unavailable: {detail}; the chaos suite needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), the ip tool (iproute2) and nft")]
    Unavailable { detail: String },
    /// A command ran and failed.
    #[error("`{command}` failed with {status}: {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    /// Every candidate subnet overlaps a route of the root namespace.
    #[error("no free 10.{SUBNET_SECOND_OCTET}.x.0/24 subnet: every candidate overlaps a route of the root namespace")]
    NoFreeSubnet,
}

/// The namespaces, links and addresses of one run. Dropping it deletes them.
pub struct Topology {
    run_id: String,
    subnet_third_octet: u8,
    node_count: u8,
    created_namespaces: Vec<String>,
    host_link_created: bool,
    owner_file: Option<PathBuf>,
}

impl Topology {
    /// Creates the bridge namespace, `node_count` node namespaces and the
    /// root namespace's link, after deleting leftovers of dead runs.
    pub fn create(node_count: u8) -> Result<Topology, NetnsError> {
        check_available()?;
        sweep_stale_runs();

        let mut rng = rand::thread_rng();
        let run_id = format!("{:06x}", rng.gen_range(0..0x100_0000u32));
        let subnet_third_octet = pick_subnet(&mut rng)?;
        let mut topology = Topology {
            run_id,
            subnet_third_octet,
            node_count,
            created_namespaces: Vec::new(),
            host_link_created: false,
            owner_file: None,
        };
        topology.write_owner_file();
        // On an error the partly built topology is dropped, which removes
        // what was created so far.
        topology.build()?;
        tracing::info!(
            run = %topology.run_id,
            subnet = %format!("10.{SUBNET_SECOND_OCTET}.{subnet_third_octet}.0/24"),
            nodes = node_count,
            "created the chaos network"
        );
        Ok(topology)
    }

    fn build(&mut self) -> Result<(), NetnsError> {
        let bridge = self.bridge_namespace();
        self.add_namespace(&bridge)?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;

        for node in 1..=self.node_count {
            let namespace = self.node_namespace(node);
            self.add_namespace(&namespace)?;
            let bridge_port = format!("p{node}");
            ip(&[
                "-n", &bridge, "link", "add", &bridge_port, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            ip(&["-n", &bridge, "link", "set", &bridge_port, "master", "br0", "up"])?;
            let address = format!("{}/24", self.node_address(node));
            ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            nft(&namespace, &format!(
                "table inet {NFT_TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; policy accept; }}\n\
                 chain output {{ type filter hook output priority 0; policy accept; }}\n\
                 }}\n"
            ))?;
        }

        let host_link = self.host_link();
        ip(&["link", "add", &host_link, "type", "veth", "peer", "name", "host", "netns", &bridge])?;
        self.host_link_created = true;
        ip(&["-n", &bridge, "link", "set", "host", "master", "br0", "up"])?;
        let host_address = format!("{}/24", self.host_address());
        ip(&["addr", "add", &host_address, "dev", &host_link])?;
        ip(&["link", "set", &host_link, "up"])?;
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetnsError> {
        ip(&["netns", "add", name])?;
        self.created_namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Returns the run's unique id, part of every name it creates.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn bridge_namespace(&self) -> String {
        format!("{NAMESPACE_PREFIX}{}-br", self.run_id)
    }

    pub fn node_namespace(&self, node: u8) -> String {
        format!("{NAMESPACE_PREFIX}{}-n{node}", self.run_id)
    }

    /// Returns the path of a node namespace's file, for `setns(2)`.
    pub fn node_namespace_path(&self, node: u8) -> PathBuf {
        PathBuf::from("/run/netns").join(self.node_namespace(node))
    }

    /// Returns the root namespace's end of its veth to the bridge. Interface
    /// names are limited to 15 bytes, so this one is `rqc` + run id + `h`.
    pub fn host_link(&self) -> String {
        format!("rqc{}h", self.run_id)
    }

    pub fn node_address(&self, node: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_SECOND_OCTET, self.subnet_third_octet, 10 + node)
    }

    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_SECOND_OCTET, self.subnet_third_octet, HOST_OCTET)
    }

    /// Drops all traffic between nodes `a` and `b`, in both directions.
    pub fn cut(&self, a: u8, b: u8) -> Result<(), NetnsError> {
        for (local, remote) in [(a, b), (b, a)] {
            let namespace = self.node_namespace(local);
            let peer = self.node_address(remote);
            nft(&namespace, &format!(
                "add rule inet {NFT_TABLE} input ip saddr {peer} drop\n\
                 add rule inet {NFT_TABLE} output ip daddr {peer} drop\n"
            ))?;
        }
        tracing::info!(run = %self.run_id, a, b, "cut the link between two nodes");
        Ok(())
    }

    /// Removes every drop rule, so that all nodes see each other again.
    pub fn heal(&self) -> Result<(), NetnsError> {
        for node in 1..=self.node_count {
            nft(&self.node_namespace(node), &format!(
                "flush chain inet {NFT_TABLE} input\nflush chain inet {NFT_TABLE} output\n"
            ))?;
        }
        tracing::info!(run = %self.run_id, "healed every link");
        Ok(())
    }

    /// Returns the pairs of nodes currently cut from each other, read back
    /// from the rules, so a test can check that a cut or a heal took effect.
    pub fn cut_pairs(&self) -> Result<BTreeSet<(u8, u8)>, NetnsError> {
        let mut pairs = BTreeSet::new();
        for node in 1..=self.node_count {
            let rules = run(Command::new("ip").args([
                "netns", "exec", &self.node_namespace(node), "nft", "list", "table", "inet", NFT_TABLE,
            ]))?;
            for other in 1..=self.node_count {
                if other != node && rules.contains(&format!("ip daddr {} drop", self.node_address(other))) {
                    pairs.insert((node.min(other), node.max(other)));
                }
            }
        }
        Ok(pairs)
    }

    /// Records this process as the owner of the run, so that a later run can
    /// tell a leftover of a dead process from a run still in progress.
    fn write_owner_file(&mut self) {
        let directory = owner_directory();
        let path = directory.join(&self.run_id);
        let written = std::fs::create_dir_all(&directory)
            .and_then(|()| std::fs::write(&path, std::process::id().to_string()));
        match written {
            Ok(()) => self.owner_file = Some(path),
            Err(error) => tracing::warn!(path = %path.display(), %error, "failed to write the run's owner file"),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth ends inside it, and with
        // them their peers, so the root namespace's link goes with the bridge.
        for namespace in self.created_namespaces.iter().rev() {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                tracing::error!(namespace = %namespace, %error, "failed to delete a chaos namespace");
            }
        }
        if self.host_link_created && link_exists(&self.host_link()) {
            if let Err(error) = ip(&["link", "del", &self.host_link()]) {
                tracing::error!(link = %self.host_link(), %error, "failed to delete the root namespace's link");
            }
        }
        if let Some(path) = &self.owner_file {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(run = %self.run_id, "removed the chaos network");
    }
}

fn owner_directory() -> PathBuf {
    std::env::temp_dir().join("raftq-chaos-owners")
}

fn run(command: &mut Command) -> Result<String, NetnsError> {
    let description = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|error| NetnsError::Unavailable {
        detail: format!("failed to run {description}: {error}"),
    })?;
    if !output.status.success() {
        return Err(NetnsError::CommandFailed {
            command: description,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run(Command::new("ip").args(args))
}

/// Runs an nftables script inside a namespace.
fn nft(namespace: &str, script: &str) -> Result<(), NetnsError> {
    use std::io::Write;
    let description = format!("ip netns exec {namespace} nft -f -");
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| NetnsError::Unavailable {
            detail: format!("failed to run {description}: {error}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|error| NetnsError::Unavailable {
            detail: format!("failed to write to {description}: {error}"),
        })?;
    }
    let output = child.wait_with_output().map_err(|error| NetnsError::Unavailable {
        detail: format!("failed to wait for {description}: {error}"),
    })?;
    if !output.status.success() {
        return Err(NetnsError::CommandFailed {
            command: description,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Fails with a clear error unless this process can create a namespace and
/// run nft inside it.
fn check_available() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(NetnsError::Unavailable {
            detail: format!("the test runs as uid {euid}, not root"),
        });
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool).arg("-V").output().is_ok_and(|output| output.status.success());
        if !found {
            return Err(NetnsError::Unavailable {
                detail: format!("`{tool} -V` did not run"),
            });
        }
    }
    Ok(())
}

/// Picks a 10.213.S.0/24 that overlaps no route of the root namespace other
/// than the default route, nor the subnet of another chaos run.
fn pick_subnet(rng: &mut impl Rng) -> Result<u8, NetnsError> {
    let routes = ip(&["-4", "-o", "route", "show", "table", "all"])?;
    let taken: Vec<(u32, u32)> = routes
        .lines()
        .filter_map(|line| line.split_whitespace().find_map(parse_prefix))
        .collect();
    for _ in 0..64 {
        let third = rng.gen_range(0..=255u8);
        let network = u32::from(Ipv4Addr::new(10, SUBNET_SECOND_OCTET, third, 0));
        let overlaps = taken.iter().any(|(base, length)| {
            let shorter = (*length).min(24);
            let mask = if shorter == 0 { 0 } else { u32::MAX << (32 - shorter) };
            base & mask == network & mask
        });
        if !overlaps {
            return Ok(third);
        }
    }
    Err(NetnsError::NoFreeSubnet)
}

/// Parses `a.b.c.d/len` or a bare address (a /32) from a route line; the
/// word `default` and other words yield nothing.
fn parse_prefix(word: &str) -> Option<(u32, u32)> {
    let (address, length) = match word.split_once('/') {
        Some((address, length)) => (address, length.parse::<u32>().ok()?),
        None => (word, 32),
    };
    let address: Ipv4Addr = address.parse().ok()?;
    (length <= 32).then_some((u32::from(address), length))
}

/// Deletes the namespaces and links of runs whose owner process is gone,
/// such as a test killed before its guards ran. Runs of live processes,
/// including parallel runs of this one, are left alone.
fn sweep_stale_runs() {
    let Ok(listing) = ip(&["netns", "list"]) else {
        return;
    };
    let mut stale_runs = BTreeSet::new();
    for name in listing.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else {
            continue;
        };
        let Some((run_id, _)) = rest.split_once('-') else {
            continue;
        };
        let owner = std::fs::read_to_string(owner_directory().join(run_id))
            .ok()
            .and_then(|text| text.trim().parse::<libc::pid_t>().ok());
        let alive = owner.is_some_and(|pid| {
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(pid, 0) == 0 }
        });
        if !alive {
            stale_runs.insert(run_id.to_string());
            if let Err(error) = ip(&["netns", "del", name]) {
                tracing::warn!(namespace = name, %error, "failed to delete a stale chaos namespace");
            }
        }
    }
    for run_id in stale_runs {
        let link = format!("rqc{run_id}h");
        if link_exists(&link) {
            let _ = ip(&["link", "del", &link]);
        }
        let _ = std::fs::remove_file(owner_directory().join(&run_id));
        tracing::info!(run = %run_id, "removed the network of a dead chaos run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_parses_network_and_host_routes() {
        assert_eq!(parse_prefix("10.213.4.0/24"), Some((u32::from(Ipv4Addr::new(10, 213, 4, 0)), 24)));
        assert_eq!(parse_prefix("192.168.1.7"), Some((u32::from(Ipv4Addr::new(192, 168, 1, 7)), 32)));
        assert_eq!(parse_prefix("default"), None);
        assert_eq!(parse_prefix("dev"), None);
        assert_eq!(parse_prefix("10.0.0.0/40"), None);
    }
}

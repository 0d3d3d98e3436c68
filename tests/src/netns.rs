//! Network fault injection with Linux network namespaces: a [`Network`] gives every node
//! its own namespace and address on a private `10.a.b.0/24`, joined by a bridge that
//! lives in a dedicated hub namespace, and can cut, partition and heal those links while
//! the nodes run. [`cluster::NetnsCluster`] runs PostgreSQL and `ramd` inside those
//! namespaces.
//!
//! Layout for a network tagged `rl<pid>_<k>` (k counts networks in this process):
//!
//! - namespace `rl<pid>_<k>h` (the hub): bridges `br0` … `br<n>`; `br0` is the shared
//!   segment, the others are islands used by [`Network::partition`];
//! - namespace `rl<pid>_<k>n<i>` per node: `eth0` = `10.a.b.<i>/24` (the *data* network
//!   its agent and PostgreSQL use), whose peer `n<i>` is a port of a hub bridge, and
//!   `mgmt0` = `10.a.(b+1).<i>`, a point-to-point link to the root namespace;
//! - in the root namespace (the test process): `rl<pid>_<k>d` = `10.a.b.254/24`, a port of
//!   `br0` (a client on the shared segment), and `rl<pid>_<k>m<i>` = `10.a.(b+1).(100+i)`,
//!   the management side door to node `i`.
//!
//! Faults only ever touch the data network: the management links stay up, so the test
//! can still talk to a node cut off from its peers — as an application in the same
//! partition as that node would. Nothing routes between namespaces (no forwarding), so
//! the management links do not bridge a partition.
//!
//! Dropping a [`Network`] kills every process still inside its namespaces (all were
//! started by this process), deletes the namespaces (which removes their veths) and the
//! root-side links it created, also when the test panicked. It touches nothing else.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use rale_e2e::netns::{Network, skip_reason};
//!
//! if let Some(why) = skip_reason() {
//!     eprintln!("skipped: needs root and ip netns ({why})");
//!     return Ok(());
//! }
//! let net = Network::create(3)?;
//! net.partition(&[&[0]])?; // node 1 alone on an island
//! net.heal()?;
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod writer;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Path of the `ip` tool (iproute2).
pub const IP: &str = "ip";
/// Path of the `tc` tool (iproute2).
pub const TC: &str = "/usr/sbin/tc";
/// nftables, for asymmetric partitions and lossy links (Debian: `nftables`).
pub const NFT: &str = "/usr/sbin/nft";
/// The table the fault rules live in, in a node's namespace.
const NFT_TABLE: &str = "rale_fault";

/// Networks created by this process so far (part of every name).
static CREATED: AtomicUsize = AtomicUsize::new(0);

/// Why namespace tests cannot run here (`None`: they can): not root, no `ip`, or the
/// kernel refuses to create a network namespace.
/// Probed once per process (tests of one binary may ask concurrently).
pub fn skip_reason() -> Option<String> {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    REASON.get_or_init(probe_skip_reason).clone()
}

fn probe_skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    if let Err(e) = run(IP, &["-V"]) {
        return Some(format!("`ip` is not usable: {e:#}"));
    }
    let probe = format!("rl{}probe", std::process::id());
    if let Err(e) = run(IP, &["netns", "add", &probe]) {
        return Some(format!("`ip netns add` failed: {e:#}"));
    }
    if let Err(e) = run(IP, &["netns", "del", &probe]) {
        return Some(format!("`ip netns del` failed: {e:#}"));
    }
    None
}

/// Runs `program args…` to completion (at most 30 s); fails with its stderr unless it
/// exits 0.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{program} {}` ran longer than 30 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One node's place in a [`Network`].
#[derive(Clone, Debug)]
pub struct NodeNet {
    /// Its namespace.
    pub netns: String,
    /// Its address on the data network (`eth0`), which its agent and PostgreSQL use.
    pub data_ip: Ipv4Addr,
    /// Its end of the management link, reachable from the root namespace whatever the
    /// data network's state.
    pub mgmt_ip: Ipv4Addr,
    /// The name of its port in the hub namespace.
    hub_port: String,
}

/// Namespaces, bridges and links for `n` nodes; see the [module docs](self).
pub struct Network {
    tag: String,
    hub: String,
    nodes: Vec<NodeNet>,
    /// Root-namespace links created here (removed on drop).
    root_links: Vec<String>,
    /// Namespaces created here (deleted on drop), hub last.
    namespaces: Vec<String>,
    prefix: [u8; 2],
    third: u8,
}

impl Network {
    /// Creates the namespaces and links for `n` nodes (1–9). Whatever was created is
    /// removed again if a later step fails.
    pub fn create(n: usize) -> anyhow::Result<Self> {
        ensure!((1..=9).contains(&n), "1 to 9 nodes, not {n}");
        let k = CREATED.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("rl{pid}_{k}");
        let (prefix, third) = choose_subnet(pid, k)?;
        let mut net = Self {
            hub: format!("{tag}h"),
            tag,
            nodes: Vec::new(),
            root_links: Vec::new(),
            namespaces: Vec::new(),
            prefix,
            third,
        };
        net.build(n)?;
        Ok(net)
    }

    fn ip4(&self, third_offset: u8, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(
            self.prefix[0],
            self.prefix[1],
            self.third + third_offset,
            last,
        )
    }

    /// The data network, e.g. `10.123.40.0/24`.
    pub fn data_cidr(&self) -> String {
        format!("{}/24", self.ip4(0, 0))
    }

    /// The management network, e.g. `10.123.41.0/24`.
    pub fn mgmt_cidr(&self) -> String {
        format!("{}/24", self.ip4(1, 0))
    }

    /// The root namespace's own address on the data network.
    pub fn root_data_ip(&self) -> Ipv4Addr {
        self.ip4(0, 254)
    }

    /// Every node, in order (index 0 is node 1).
    pub fn nodes(&self) -> &[NodeNet] {
        &self.nodes
    }

    fn ns_add(&mut self, name: &str) -> anyhow::Result<()> {
        run(IP, &["netns", "add", name])?;
        // Delete nodes before the hub: the hub's bridges go last.
        self.namespaces.insert(0, name.to_string());
        run(IP, &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self, n: usize) -> anyhow::Result<()> {
        let hub = self.hub.clone();
        self.ns_add(&hub)?;
        for b in 0..=n {
            let br = format!("br{b}");
            run(IP, &["-n", &hub, "link", "add", &br, "type", "bridge"])?;
            run(IP, &["-n", &hub, "link", "set", &br, "up"])?;
        }
        // The root namespace's port on the shared segment.
        let root_if = format!("{}d", self.tag);
        run(
            IP,
            &[
                "link", "add", "name", &root_if, "type", "veth", "peer", "name", "up0", "netns",
                &hub,
            ],
        )?;
        self.root_links.push(root_if.clone());
        run(
            IP,
            &["-n", &hub, "link", "set", "up0", "master", "br0", "up"],
        )?;
        let root_addr = format!("{}/24", self.root_data_ip());
        run(IP, &["addr", "add", &root_addr, "dev", &root_if])?;
        run(IP, &["link", "set", &root_if, "up"])?;
        for i in 1..=n {
            let i8 = u8::try_from(i).context("node index")?;
            let ns = format!("{}n{i}", self.tag);
            self.ns_add(&ns)?;
            let hub_port = format!("n{i}");
            run(
                IP,
                &[
                    "-n", &ns, "link", "add", "name", "eth0", "type", "veth", "peer", "name",
                    &hub_port, "netns", &hub,
                ],
            )?;
            run(
                IP,
                &["-n", &hub, "link", "set", &hub_port, "master", "br0", "up"],
            )?;
            let data_ip = self.ip4(0, i8);
            run(
                IP,
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{data_ip}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            run(IP, &["-n", &ns, "link", "set", "eth0", "up"])?;
            // Management: a point-to-point veth between the root namespace and the node.
            let mgmt_if = format!("{}m{i}", self.tag);
            let mgmt_ip = self.ip4(1, i8);
            let root_mgmt_ip = self.ip4(1, 100 + i8);
            run(
                IP,
                &[
                    "link", "add", "name", &mgmt_if, "type", "veth", "peer", "name", "mgmt0",
                    "netns", &ns,
                ],
            )?;
            self.root_links.push(mgmt_if.clone());
            run(
                IP,
                &[
                    "addr",
                    "add",
                    &root_mgmt_ip.to_string(),
                    "peer",
                    &format!("{mgmt_ip}/32"),
                    "dev",
                    &mgmt_if,
                ],
            )?;
            run(IP, &["link", "set", &mgmt_if, "up"])?;
            run(
                IP,
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &mgmt_ip.to_string(),
                    "peer",
                    &format!("{root_mgmt_ip}/32"),
                    "dev",
                    "mgmt0",
                ],
            )?;
            run(IP, &["-n", &ns, "link", "set", "mgmt0", "up"])?;
            self.nodes.push(NodeNet {
                netns: ns,
                data_ip,
                mgmt_ip,
                hub_port,
            });
        }
        Ok(())
    }

    fn node(&self, index: usize) -> anyhow::Result<&NodeNet> {
        self.nodes
            .get(index)
            .with_context(|| format!("no node with index {index}"))
    }

    /// Splits the data network: each group of node indexes (0-based) goes onto its own
    /// island bridge, where its members still reach each other but nobody else. Nodes in
    /// no group stay on the shared segment with the root namespace's data port. Links in
    /// flight are not reset: packets are silently dropped, as by a failed switch.
    pub fn partition(&self, groups: &[&[usize]]) -> anyhow::Result<()> {
        ensure!(
            groups.len() < self.nodes.len() + 1,
            "more groups than islands"
        );
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                let port = &self.node(i)?.hub_port;
                let br = format!("br{}", g + 1);
                run(IP, &["-n", &self.hub, "link", "set", port, "master", &br])?;
            }
        }
        Ok(())
    }

    /// Puts every node back on the shared segment and every link up.
    pub fn heal(&self) -> anyhow::Result<()> {
        for n in &self.nodes {
            run(
                IP,
                &["-n", &self.hub, "link", "set", &n.hub_port, "master", "br0"],
            )?;
            run(IP, &["-n", &self.hub, "link", "set", &n.hub_port, "up"])?;
        }
        Ok(())
    }

    /// Takes node `index`'s hub port down: its data link loses carrier (both ends).
    pub fn link_down(&self, index: usize) -> anyhow::Result<()> {
        let port = &self.node(index)?.hub_port;
        run(IP, &["-n", &self.hub, "link", "set", port, "down"])?;
        Ok(())
    }

    /// Brings node `index`'s hub port up again.
    pub fn link_up(&self, index: usize) -> anyhow::Result<()> {
        let port = &self.node(index)?.hub_port;
        run(IP, &["-n", &self.hub, "link", "set", port, "up"])?;
        Ok(())
    }

    /// Whether the kernel offers `tc … netem` (the `sch_netem` module; missing on some
    /// CI kernels and containers).
    pub fn netem_available(&self) -> bool {
        let Some(n) = self.nodes.first() else {
            return false;
        };
        let ok = self.tc_both(n, &["netem", "delay", "1ms"]).is_ok();
        let _ = self.clear_qdisc(n);
        ok
    }

    /// Adds `delay_ms` of delay and `loss_percent` loss in both directions of node
    /// `index`'s data link (netem). Fails where netem is unavailable
    /// ([`Network::netem_available`]).
    pub fn impair(&self, index: usize, delay_ms: u32, loss_percent: u32) -> anyhow::Result<()> {
        let n = self.node(index)?;
        self.tc_both(
            n,
            &[
                "netem",
                "delay",
                &format!("{delay_ms}ms"),
                "loss",
                &format!("{loss_percent}%"),
            ],
        )
    }

    /// Limits both directions of node `index`'s data link to `rate_kbit` kbit/s with a
    /// queue of at most `queue_ms` (token bucket, `tbf`): a slow, congested link on which
    /// packets beyond the queue are dropped.
    pub fn throttle(&self, index: usize, rate_kbit: u32, queue_ms: u32) -> anyhow::Result<()> {
        let n = self.node(index)?;
        self.tc_both(
            n,
            &[
                "tbf",
                "rate",
                &format!("{rate_kbit}kbit"),
                "burst",
                "16kbit",
                "latency",
                &format!("{queue_ms}ms"),
            ],
        )
    }

    /// Removes [`Network::impair`]'s or [`Network::throttle`]'s queueing discipline from
    /// node `index`'s data link.
    pub fn clear_impairment(&self, index: usize) -> anyhow::Result<()> {
        let n = self.node(index)?;
        self.clear_qdisc(n)
    }

    /// `tc qdisc replace … root <qdisc>` on the node's `eth0` (its egress) and on its hub
    /// port (its ingress).
    fn tc_both(&self, n: &NodeNet, qdisc: &[&str]) -> anyhow::Result<()> {
        for (ns, dev) in [
            (n.netns.as_str(), "eth0"),
            (self.hub.as_str(), n.hub_port.as_str()),
        ] {
            let mut args = vec!["-n", ns, "qdisc", "replace", "dev", dev, "root"];
            args.extend_from_slice(qdisc);
            run(TC, &args)?;
        }
        Ok(())
    }

    fn clear_qdisc(&self, n: &NodeNet) -> anyhow::Result<()> {
        let mut result = Ok(());
        for (ns, dev) in [
            (n.netns.as_str(), "eth0"),
            (self.hub.as_str(), n.hub_port.as_str()),
        ] {
            let has_root_qdisc = run(TC, &["-n", ns, "qdisc", "show", "dev", dev])
                .map(|out| out.contains("tbf") || out.contains("netem"))
                .unwrap_or(false);
            if has_root_qdisc
                && let Err(e) = run(TC, &["-n", ns, "qdisc", "del", "dev", dev, "root"])
            {
                result = Err(e);
            }
        }
        result
    }

    /// Asymmetric partition: node `index` refuses every new connection that arrives on
    /// its data link (nftables, `ct state new drop`), while it still opens connections to
    /// the others and connections already established keep working. So the node reaches
    /// its peers, and they do not reach it. [`Network::clear_filters`] removes it.
    pub fn refuse_inbound(&self, index: usize) -> anyhow::Result<()> {
        let n = self.node(index)?;
        self.nft_rules(n, &["iifname \"eth0\" ct state new drop"], &[])
    }

    /// Lossy link without netem: drops `percent` % of node `index`'s data packets, in
    /// both directions, at random (nftables `numgen random`). [`Network::clear_filters`]
    /// removes it.
    pub fn drop_randomly(&self, index: usize, percent: u32) -> anyhow::Result<()> {
        ensure!(percent <= 100, "drop rate {percent} % is over 100 %");
        let n = self.node(index)?;
        let input = format!("iifname \"eth0\" numgen random mod 100 < {percent} drop");
        let output = format!("oifname \"eth0\" numgen random mod 100 < {percent} drop");
        self.nft_rules(n, &[input.as_str()], &[output.as_str()])
    }

    /// Removes what [`Network::refuse_inbound`] and [`Network::drop_randomly`] installed
    /// on node `index` (nothing to do when none is there).
    pub fn clear_filters(&self, index: usize) -> anyhow::Result<()> {
        let n = self.node(index)?;
        let inside = run(IP, &["netns", "exec", &n.netns, NFT, "list", "tables"])?;
        if inside.contains(NFT_TABLE) {
            run(
                IP,
                &[
                    "netns", "exec", &n.netns, NFT, "delete", "table", "inet", NFT_TABLE,
                ],
            )?;
        }
        Ok(())
    }

    /// Replaces node `n`'s fault table with one holding the given input and output rules.
    fn nft_rules(&self, n: &NodeNet, input: &[&str], output: &[&str]) -> anyhow::Result<()> {
        let mut script = format!(
            "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\ntable inet {NFT_TABLE} {{\n"
        );
        for (chain, hook, rules) in [
            ("fault_in", "input", input),
            ("fault_out", "output", output),
        ] {
            script.push_str(&format!(
                "  chain {chain} {{\n    type filter hook {hook} priority 0; policy accept;\n"
            ));
            for r in rules {
                script.push_str(&format!("    {r}\n"));
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        let file = tempfile::NamedTempFile::new().context("an nft script file")?;
        std::fs::write(file.path(), script).context("writing the nft script")?;
        let path = file.path().to_string_lossy().into_owned();
        run(IP, &["netns", "exec", &n.netns, NFT, "-f", &path])?;
        Ok(())
    }

    /// The PIDs of the processes inside namespace `ns`.
    fn pids_in(ns: &str) -> Vec<i32> {
        run(IP, &["netns", "pids", ns])
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Network {
    /// Kills (SIGKILL, 5 s bound per namespace) every process left in the namespaces of
    /// this network; all of them descend from processes this test started.
    pub fn kill_leftovers(&self) {
        for ns in &self.namespaces {
            for round in 0..50 {
                let pids = Self::pids_in(ns);
                if pids.is_empty() {
                    break;
                }
                if round == 0 {
                    eprintln!("netns: killing {} leftover process(es) in {ns}", pids.len());
                }
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.kill_leftovers();
        for ns in &self.namespaces {
            if let Err(e) = run(IP, &["netns", "del", ns]) {
                eprintln!("netns: deleting namespace {ns} failed: {e:#}");
            }
        }
        // Deleting a namespace destroys its veth ends and so their peers here; remove
        // whatever is left (a namespace kept alive by a process we could not kill).
        for link in &self.root_links {
            let exists = run(IP, &["link", "show", "dev", link]).is_ok();
            if exists && let Err(e) = run(IP, &["link", "del", link]) {
                eprintln!("netns: deleting link {link} failed: {e:#}");
            }
        }
    }
}

/// A `10.a.b.0/23` (data network `b`, management network `b+1`) that overlaps no address
/// or route of the root namespace, derived from the PID and the network counter.
fn choose_subnet(pid: u32, k: usize) -> anyhow::Result<([u8; 2], u8)> {
    let mut taken = Vec::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        let out = run(IP, args)?;
        for word in out.split_whitespace() {
            // A default route (`0.0.0.0/0`) does not make an address taken.
            if let Some(net) = parse_cidr(word).filter(|n| n.1 > 0) {
                taken.push(net);
            }
        }
    }
    let k = u32::try_from(k % 1000).unwrap_or(0);
    for attempt in 0..200u32 {
        let seed = pid
            .wrapping_mul(31)
            .wrapping_add(k * 7919 + attempt * 104_729);
        let a = u8::try_from(100 + seed % 150).unwrap_or(100);
        let b = u8::try_from(2 * ((seed / 150) % 120)).unwrap_or(0);
        let candidate = (u32::from(Ipv4Addr::new(10, a, b, 0)), 23);
        if !taken.iter().any(|t| overlaps(*t, candidate)) {
            return Ok(([10, a], b));
        }
    }
    bail!("no free 10.x.y.0/23 found in 200 attempts")
}

/// `a.b.c.d/len` or a bare `a.b.c.d` (a /32) as (network, prefix length).
fn parse_cidr(word: &str) -> Option<(u32, u8)> {
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()?),
        None => (word, 32),
    };
    if len > 32 {
        return None;
    }
    let ip: Ipv4Addr = addr.parse().ok()?;
    Some((u32::from(ip), len))
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a.0 & mask == b.0 & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_overlap() {
        let net = |s: &str| parse_cidr(s).expect("valid");
        assert!(overlaps(net("10.1.2.0/24"), net("10.1.2.7")));
        assert!(overlaps(net("10.0.0.0/8"), net("10.1.2.0/23")));
        assert!(!overlaps(net("10.1.4.0/24"), net("10.1.2.0/23")));
        assert!(overlaps(net("0.0.0.0/0"), net("10.1.2.0/23")));
        assert!(parse_cidr("dev").is_none());
        assert!(parse_cidr("10.1.2.3/40").is_none());
    }

    /// Dropping a network during a panic removes its namespaces and root-side links.
    #[test]
    fn network_is_removed_on_panic() {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: needs root and ip netns ({why})");
            return;
        }
        let tag = std::sync::Mutex::new(String::new());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let net = Network::create(2).expect("creating a network");
            if let Ok(mut t) = tag.lock() {
                *t = net.tag.clone();
            }
            net.partition(&[&[0]]).expect("partition");
            net.link_down(1).expect("link down");
            net.heal().expect("heal");
            panic!("on purpose, with the network alive");
        }));
        assert!(outcome.is_err());
        let tag = tag.lock().map(|t| t.clone()).unwrap_or_default();
        assert!(tag.starts_with("rl"), "{tag:?}");
        let namespaces = run(IP, &["netns", "list"]).expect("ip netns list");
        assert!(!namespaces.contains(&tag), "left behind: {namespaces}");
        let links = run(IP, &["-o", "link", "show"]).expect("ip link show");
        assert!(!links.contains(&tag), "left behind: {links}");
    }
}

//! The host side of the test beds: namespaces, `ip`/`nft`/`sysctl`, the lock and
//! the guard route that keep beds of several processes apart, and the wiring.

use super::*;

/// Whether `ip` is inside [`BED_NET`].
pub fn in_bed_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let (net, len) = BED_NET;
            let mask = u32::MAX << (32 - len);
            u32::from(v4) & mask == u32::from(net)
        }
        IpAddr::V6(_) => false,
    }
}

/// Moves the CALLING THREAD into network namespace `netns` (by name, as made
/// by `ip netns add`). Only that thread's new sockets and `/proc/thread-self/net`
/// are affected. Usable as a tokio `on_thread_start` hook; prefer [`run_in`].
pub fn enter(netns: &str) -> io::Result<()> {
    let handle = File::open(Path::new(NETNS_DIR).join(netns))?;
    // SAFETY: setns(2) on a valid fd only changes this thread's namespace.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside network namespace `netns` and returns its
/// result; the caller's thread never changes namespace. Why a thread: `setns`
/// is per thread and has no undo that is safe if `f` panics, so the thread
/// is thrown away instead. A panic in `f` is re-raised here.
pub fn run_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let joined = s
            .spawn(|| {
                enter(netns)?;
                Ok(f())
            })
            .join();
        joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs a command, returning its stdout, or its stderr as the error.
pub(super) fn run(mut cmd: Command, stdin: &str) -> Result<String, String> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .map_err(|e| format!("{what}: stdin: {e}"))?;
    drop(input);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// `ip ARGS`: its stdout, or its error message.
pub(super) fn try_ip(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd, "")
}

/// `ip ARGS`, panicking with ip's message on failure.
pub(super) fn ip(args: &[&str]) {
    try_ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Applies an nft script inside `netns`; `nft -f` applies it atomically.
pub(super) fn nft_in(netns: &str, script: &str) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "nft", "-f", "-"]);
    run(cmd, script).unwrap_or_else(|e| panic!("{e}\n{script}"));
}

/// Writes one sysctl of `netns` (`key` as a path under /proc/sys).
pub(super) fn sysctl_in(netns: &str, key: &str, value: &str) {
    // /proc/sys/net is resolved against the opening THREAD's namespace.
    let path = Path::new("/proc/sys").join(key);
    run_in(netns, || fs::write(&path, value))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("sysctl {key}={value} in {netns}: {e}"));
}

/// An exclusive `flock` on [`LOCK_FILE`], released when dropped.
pub(super) struct HostLock(File);

impl HostLock {
    /// Blocks until granted. Trap: flock locks belong to the open file, so a
    /// second `take()` in the same thread while one is held deadlocks.
    fn take() -> io::Result<HostLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)?;
        // SAFETY: flock(2) on a valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(HostLock(file))
    }
}

/// The pid in a bed namespace name `mp<pid>-...`, if it is one.
pub(super) fn bed_owner(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("mp")?.split_once('-')?.0;
    digits.parse().ok()
}

/// Bed namespaces that exist now, with their owner pid.
pub(super) fn bed_namespaces() -> Vec<(String, u32)> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = bed_owner(&name)?;
            Some((name, pid))
        })
        .collect()
}

pub(super) fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Deletes one bed namespace: SIGKILLs what still runs in it (a daemon a
/// crashed run left, or a straggler of ours), then removes the name and its
/// `/etc/netns` files. Errors are reported, not raised (runs in Drop).
pub(super) fn delete_namespace(name: &str) {
    if let Ok(pids) = try_ip(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) only sends a signal to that one pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Err(e) = try_ip(&["netns", "del", name])
        && Path::new(NETNS_DIR).join(name).exists()
    {
        eprintln!("warning: {e}");
    }
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(name));
    // Only succeeds once empty: /etc/netns was not there before the beds.
    let _ = fs::remove_dir("/etc/netns");
}

/// Removes namespaces `mp<pid>-*` (and what runs in them) whose test process
/// `pid` no longer exists, e.g. after a test run was SIGKILLed. Returns their
/// names. [`TestBed::start`] calls it; safe while other processes have beds.
pub fn remove_stale_namespaces() -> Vec<String> {
    let _lock = HostLock::take().unwrap_or_else(|e| panic!("lock {LOCK_FILE}: {e}"));
    remove_stale_locked()
}

pub(super) fn remove_stale_locked() -> Vec<String> {
    let me = std::process::id();
    let stale: Vec<String> = bed_namespaces()
        .into_iter()
        .filter(|(_, pid)| *pid != me && !alive(*pid))
        .map(|(name, _)| name)
        .collect();
    for name in &stale {
        delete_namespace(name);
    }
    stale
}

pub(super) fn guard_route() -> String {
    format!("{}/{}", BED_NET.0, BED_NET.1)
}

/// The four namespaces of one bed. Deleting them (on drop) also deletes their
/// links, addresses, routes and nft tables; the host's guard route goes when no
/// bed of any live process is left (the namespaces themselves are the
/// reference count, so it works across threads and processes).
pub(super) struct Namespaces {
    pub(super) names: [String; 4],
}

impl Namespaces {
    pub(super) fn create(prefix: &str) -> Namespaces {
        let names = ["site", "router", "inet", "prov"].map(|role| format!("{prefix}-{role}"));
        // Host-wide steps under the lock; any panic only after it is released,
        // since the cleanup in Drop takes it again.
        let failed = {
            let _lock = HostLock::take().unwrap_or_else(|e| panic!("lock {LOCK_FILE}: {e}"));
            for name in remove_stale_locked() {
                eprintln!("removed stale test bed namespace {name}");
            }
            match try_ip(&["route", "add", "prohibit", &guard_route()]) {
                Err(e) if !e.contains("File exists") => Some(format!("guard route: {e}")),
                _ => names.iter().find_map(|name| {
                    // Same name = debris of an earlier process that had our pid.
                    if Path::new(NETNS_DIR).join(name).exists() {
                        delete_namespace(name);
                    }
                    try_ip(&["netns", "add", name]).err()
                }),
            }
        };
        // Drop cleans up whatever was made (and the route, if no bed is left).
        let ns = Namespaces { names };
        if let Some(e) = failed {
            panic!("test bed namespaces: {e}");
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Best effort without the lock rather than a panic inside Drop.
        let _lock = HostLock::take()
            .map_err(|e| eprintln!("warning: lock {LOCK_FILE}: {e}"))
            .ok();
        for name in &self.names {
            delete_namespace(name);
        }
        // Only beds of live processes keep the route; those of dead ones are
        // debris that the next start() removes.
        let live = bed_namespaces().iter().any(|(_, pid)| alive(*pid));
        if !live
            && let Err(e) = try_ip(&["route", "del", "prohibit", &guard_route()])
            && !e.contains("No such process")
        {
            eprintln!("warning: {e}");
        }
    }
}

/// An nft script that (re)creates table `inet <name>` with one filter chain.
/// `add` + `delete` first, so that re-applying a fault replaces it.
pub(super) fn table(name: &str, hook: &str, rules: &str) -> String {
    format!(
        "add table inet {name}\ndelete table inet {name}\n\
         table inet {name} {{\n  chain {hook} {{\n    \
         type filter hook {hook} priority 0; policy accept;\n    {rules}\n  }}\n}}\n"
    )
}

/// An nft script that removes table `inet <name>` whether or not it exists.
pub(super) fn no_table(name: &str) -> String {
    format!("add table inet {name}\ndelete table inet {name}\n")
}

/// Links, addresses, routes and sysctls of a bed's namespaces
/// `[site, router, inet, prov]` on subnets `[lan, inet, prov]`.
pub(super) fn wire(names: &[String; 4], [lan, inet, prov]: [[u8; 3]; 3]) {
    let [site, router, inet_ns, prov_ns] = names.each_ref().map(String::as_str);
    for ns in names {
        // Before any link exists, so that no link ever gets an IPv6 address:
        // the bed is IPv4-only, with no IPv6 chatter or fallbacks to reason about.
        sysctl_in(ns, "net/ipv6/conf/all/disable_ipv6", "1");
        sysctl_in(ns, "net/ipv6/conf/default/disable_ipv6", "1");
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    sysctl_in(router, "net/ipv4/ip_forward", "1");
    // Exim drops root before binding; ports 25 and 465 need this (per namespace).
    sysctl_in(prov_ns, "net/ipv4/ip_unprivileged_port_start", "0");
    // Created inside the router namespace, with the peer moved straight into the
    // leaf: no interface ever appears in the host namespace, so names are free.
    for (router_if, leaf, net, leaf_ips) in [
        ("site0", site, lan, &[2, 53][..]),
        ("inet0", inet_ns, inet, &[10, 53][..]),
        ("prov0", prov_ns, prov, &[25, 53][..]),
    ] {
        // `name` spelled out: `ip link add a ...` would parse "a" as "address".
        ip(&[
            "-n", router, "link", "add", "name", router_if, "type", "veth", "peer", "name", "eth0",
            "netns", leaf,
        ]);
        let gw = host(net, 1).to_string();
        ip(&[
            "-n",
            router,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            router_if,
        ]);
        ip(&["-n", router, "link", "set", router_if, "up"]);
        for last in leaf_ips {
            let addr = format!("{}/24", host(net, *last));
            ip(&["-n", leaf, "addr", "add", &addr, "dev", "eth0"]);
        }
        ip(&["-n", leaf, "link", "set", "eth0", "up"]);
        ip(&[
            "-n", leaf, "route", "add", "default", "via", &gw, "dev", "eth0",
        ]);
    }
}

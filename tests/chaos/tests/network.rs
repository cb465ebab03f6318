//! The chaos network itself: a cut drops traffic between exactly the two
//! nodes named, a heal restores it, and dropping the topology removes every
//! namespace and link it created. Needs root, like the chaos suite.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use raftq_chaos::netns::Topology;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// Runs `work` on a new thread that has entered the network namespace at
/// `namespace`; setns(2) changes the namespace of the calling thread only.
fn in_namespace<T: Send + 'static>(namespace: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(namespace).unwrap_or_else(|error| panic!("failed to open {}: {error}", namespace.display()));
    std::thread::spawn(move || {
        // SAFETY: setns only reads the descriptor, which `file` keeps open.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(result, 0, "setns failed: {}", std::io::Error::last_os_error());
        work()
    })
    .join()
    .expect("the namespace thread panicked")
}

fn connects_from(namespace: &Path, address: SocketAddr) -> bool {
    in_namespace(namespace, move || TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok())
}

fn namespaces_of_run(run_id: &str) -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().expect("failed to run ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.contains(run_id))
        .map(str::to_string)
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn cut_drops_only_the_named_link() {
    let topology = Topology::create(3).unwrap_or_else(|error| panic!("{error}"));
    let run_id = topology.run_id().to_string();
    let host_link = topology.host_link();
    let paths: Vec<PathBuf> = (1..=3).map(|node| topology.node_namespace_path(node)).collect();
    let target = SocketAddr::new(topology.node_address(2).into(), 0);
    // The listener stays open on this thread's stack; the kernel completes
    // connections into its backlog without an accept call.
    let listener: TcpListener = in_namespace(&paths[1], move || TcpListener::bind(target).expect("bind in node 2"));
    let address = listener.local_addr().expect("listener address");

    assert!(connects_from(&paths[0], address), "node 1 cannot reach node 2 before the cut");
    assert!(TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok(), "the root namespace cannot reach node 2");

    topology.cut(1, 2).expect("cut");
    assert!(!connects_from(&paths[0], address), "node 1 still reaches node 2 after the cut");
    assert!(connects_from(&paths[2], address), "node 3 lost node 2 although only 1-2 was cut");
    assert!(TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok(), "the root namespace lost node 2");
    assert_eq!(topology.cut_pairs().expect("read rules"), [(1, 2)].into_iter().collect());

    topology.heal().expect("heal");
    assert!(connects_from(&paths[0], address), "node 1 cannot reach node 2 after the heal");
    assert!(topology.cut_pairs().expect("read rules").is_empty());

    drop(listener);
    drop(topology);
    assert_eq!(namespaces_of_run(&run_id), Vec::<String>::new(), "namespaces left behind");
    assert!(!link_exists(&host_link), "the root namespace's link {host_link} was left behind");
}

//! Every acknowledged write survives a SIGKILL of the node process.
//!
//! NOTE: SIGKILL keeps the kernel's page cache. So this test shows that an
//! acknowledged entry left the process before the acknowledgement, but not
//! that it was fsynced. Power loss is not simulated: with the flush in
//! `LogStore::append` removed, the test still passed on Linux, because sled
//! had already written the entries to its file.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use uuid::Uuid;

const PROBE: &str = env!("CARGO_BIN_EXE_raftq-raft-probe");
const WAIT: Duration = Duration::from_secs(30);

/// A probe process with its stdin and a channel of its stdout lines.
struct Probe {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Probe {
    /// Starts the probe on `data_dir` and waits for its `ready` line.
    fn start(data_dir: &Path) -> Probe {
        let mut child = Command::new(PROBE)
            .arg("--data-dir")
            .arg(data_dir)
            // Small enough that the restart loads a snapshot and replays the
            // log written after it.
            .args(["--snapshot-every-entries", "7"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("failed to start the probe");

        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });

        let stdin = child.stdin.take();
        let probe = Probe {
            child,
            stdin,
            lines,
        };
        let first = probe.next_line();
        assert_eq!(first, "ready", "unexpected first line of the probe");
        probe
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("failed to write to the probe");
        stdin.flush().expect("failed to flush the probe's stdin");
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("the probe printed nothing before the deadline")
    }

    /// Closes stdin, which stops the node cleanly, and checks the exit status.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("failed to poll the probe") {
                assert!(status.success(), "the probe exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the probe did not stop after its stdin closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let data_dir = tempfile::tempdir().unwrap();
    let pool = Uuid::new_v4();
    let messages: Vec<Uuid> = (0..60).map(|_| Uuid::new_v4()).collect();

    let mut probe = Probe::start(data_dir.path());
    for message in &messages {
        probe.send(&format!("enqueue {pool} {message}"));
    }

    // Kill right after the 40th acknowledgement, with the last 20 writes
    // possibly still in flight.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 40 {
        let line = probe.next_line();
        let Some(message) = line.strip_prefix("acked ") else {
            panic!("unexpected probe output {line:?}");
        };
        acknowledged.push(Uuid::parse_str(message).expect("the probe printed a message id"));
    }
    probe.child.kill().expect("failed to SIGKILL the probe");
    probe.child.wait().expect("failed to reap the probe");
    drop(probe);

    let mut restarted = Probe::start(data_dir.path());
    for message in &acknowledged {
        restarted.send(&format!("read {pool} {message}"));
        assert_eq!(
            restarted.next_line(),
            format!("found {message}"),
            "acknowledged write lost"
        );
    }
    restarted.stop();
}

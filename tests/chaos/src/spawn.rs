//! Starting `raftq serve` inside a node's network namespace.
//!
//! Every child enters the namespace with `setns(2)` before `exec` and
//! requests SIGKILL when its parent thread exits (`PR_SET_PDEATHSIG`), so
//! that no node outlives a test process that was killed before its guards
//! ran. The kernel sends that signal when the
//! thread that forked the child exits, not the process, so every child is
//! forked by one thread that lives as long as the process.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();

fn spawner() -> mpsc::Sender<SpawnRequest> {
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("raftq-chaos-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("failed to start the process spawner thread");
        Mutex::new(sender)
    });
    sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Spawns `command` inside the network namespace whose file is
/// `namespace_path` (such as `/run/netns/NAME`).
pub fn spawn_in_namespace(mut command: Command, namespace_path: &Path) -> std::io::Result<Child> {
    let namespace = File::open(namespace_path)?;
    let namespace_fd = namespace.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // two system calls, which are async-signal-safe. The descriptor stays
    // open in the parent until `spawn` returns because `namespace` lives
    // until the end of this function.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let (reply, result) = mpsc::channel();
    spawner()
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the process spawner thread has stopped"))?;
    let child = result
        .recv()
        .map_err(|_| std::io::Error::other("the process spawner thread has stopped"))?;
    drop(namespace);
    child
}

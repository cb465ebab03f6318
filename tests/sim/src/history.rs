//! The client's record of every write: each attempt sent and the one that
//! was acknowledged, if any.

use raftq_state_machine::{Command, CommandOutput};

/// One logical write and its attempts. Every attempt carries the same
/// request id, so at most one of them takes effect and the others replay
/// its response.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub request_id: String,
    /// Every command sent, in order. Each has its own `now`, and a reserve
    /// its own token, because the leader stamps both on every attempt.
    pub attempts: Vec<Command>,
    /// The attempt that `RaftNode::write` returned, with its output.
    pub acknowledged: Option<(Command, CommandOutput)>,
}

impl WriteRecord {
    /// Returns the earliest `now` among the attempts: the effect of the
    /// write happened at or after it.
    pub fn earliest_now(&self) -> Option<raftq_state_machine::Timestamp> {
        self.attempts.iter().map(|command| command.now).min()
    }
}

/// Every write of one run, in the order the client started them.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<WriteRecord>,
}

impl History {
    pub fn acknowledged(&self) -> impl Iterator<Item = (&WriteRecord, &Command, &CommandOutput)> {
        self.writes.iter().filter_map(|write| {
            write
                .acknowledged
                .as_ref()
                .map(|(command, output)| (write, command, output))
        })
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged().count()
    }
}

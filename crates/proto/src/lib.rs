//! Generated types and services of `proto/raftq/v1/queue.proto` and
//! `proto/raftq/v1/admin.proto`. Conversions to the state machine's types live
//! in the server crate, in one place.

pub mod v1 {
    tonic::include_proto!("raftq.v1");
}

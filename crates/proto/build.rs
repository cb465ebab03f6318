//! Compiles the client and admin protos with the protoc shipped by the
//! `protoc-bin-vendored` crate, so a fresh clone builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let proto_root = "../../proto";
    let files = [
        "../../proto/raftq/v1/queue.proto",
        "../../proto/raftq/v1/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    tonic_build::configure().compile_protos(&files, &[proto_root])?;
    Ok(())
}

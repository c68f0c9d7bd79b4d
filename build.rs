//! Compiles `proto/tend/v1/*.proto` with a vendored `protoc`, so a fresh machine needs only cargo,
//! and writes the file descriptor set that server reflection serves.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let protos: Vec<PathBuf> = std::fs::read_dir("proto/tend/v1")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // The `Connect` RPC would collide with the generated `connect` constructor; clients are built
    // with `new(channel)` instead.
    tonic_prost_build::configure()
        .build_transport(false)
        // Output bytes go from the ring to the wire without a copy into a Vec.
        .bytes(".tend.v1.DataEvent.data")
        .file_descriptor_set_path(out.join("tend_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto")])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

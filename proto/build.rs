//! Compiles the .proto files with protox (pure Rust, no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);

    let node = protox::compile(["plexus/v1/node.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(node.clone())?;
    std::fs::write(
        out.join("plexus_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&node),
    )?;

    let pod_resources = protox::compile(["kubelet/podresources/v1/api.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(pod_resources)?;

    let nri = protox::compile(["nri/api.proto", "nri/ttrpc.proto"], ["."])?;
    prost_build::Config::new().compile_fds(nri)?;

    println!("cargo:rerun-if-changed=plexus");
    println!("cargo:rerun-if-changed=nri");
    println!("cargo:rerun-if-changed=kubelet");
    Ok(())
}

//! Compiles the CRI `runtime.v1` subset with protox (pure Rust, no system `protoc`);
//! client stubs only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cri = protox::compile(["cri.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(cri)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

//! Compiles `proto/echo.proto` (the tonic baseline), `proto/etcd.proto` (the etcd client of
//! the kv scenario), `proto/pull.proto` (the tonic baseline of the pull scenario) and
//! `proto/stream.proto` (the stream scenario's messages and its tonic baseline) with the
//! vendored `protoc`, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // `std::env::set_var("PROTOC", ..)` is `unsafe` in edition 2024 and the workspace forbids
    // unsafe code, so hand the binary to prost-build directly instead.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // `bytes` fields as `bytes::Bytes`: no copy into a `Vec<u8>` on decode.
        .bytes(".echo")
        .build_server(true)
        .compile_with_config(config, &["proto/echo.proto"], &["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &["proto/etcd.proto"], &["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .bytes(".pull")
        .build_server(true)
        .compile_with_config(config, &["proto/pull.proto"], &["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .bytes(".stream")
        .build_server(true)
        .compile_with_config(config, &["proto/stream.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/stream.proto");
    println!("cargo:rerun-if-changed=proto/echo.proto");
    println!("cargo:rerun-if-changed=proto/etcd.proto");
    println!("cargo:rerun-if-changed=proto/pull.proto");
    Ok(())
}

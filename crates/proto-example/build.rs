//! Compiles `proto/hdfs.proto` with peerwire-build (and the vendored `protoc`, so none needs to
//! be installed): prost's messages and a `#[peerwire::protocol]` trait per service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    peerwire_build::configure()
        .protoc(protoc_bin_vendored::protoc_bin_path()?)
        .version("hdfs.ClientProtocol", 2)
        .compile(&["proto/hdfs.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/hdfs.proto");
    Ok(())
}

//! `peerwire-build`: typed peerwire protocols from the `service`s of `.proto` files.
//!
//! A build script compiles the `.proto` files with [`prost_build`], and this crate's service
//! generator turns each `service` into a trait under `#[peerwire::protocol]`, so the messages
//! come from prost and both sides of the protocol (the mountable server side and the typed
//! client) from the macro, exactly as for a protocol written by hand:
//!
//! ```text
//! // build.rs
//! fn main() -> std::io::Result<()> {
//!     peerwire_build::configure()
//!         .version("hdfs.ClientProtocol", 2)
//!         .compile(&["proto/hdfs.proto"], &["proto"])
//! }
//!
//! // src/lib.rs
//! include!(concat!(env!("OUT_DIR"), "/hdfs.rs"));
//! // service ClientProtocol → trait ClientProtocol, client_protocol(Arc<impl ClientProtocol>),
//! // ClientProtocolClient
//! ```
//!
//! For `service ClientProtocol { rpc GetBlockLocations(Req) returns (Resp); }` in package
//! `hdfs` it writes, beside prost's messages:
//!
//! ```text
//! #[peerwire::protocol(name = "hdfs.ClientProtocol", version = 1)]
//! pub trait ClientProtocol {
//!     #[engine(prost)]
//!     #[rename = "GetBlockLocations"]
//!     async fn get_block_locations(&self, request: Req) -> Result<Resp, peerwire::HandlerError>;
//! }
//! ```
//!
//! Conventions:
//! - the protocol's name is the service's full name (`package.Service`); its version is 1
//!   unless [`Builder::version`] says otherwise (protobuf has no standard option for it);
//! - a method is idempotent (`#[idempotent]`: answered from the retry cache when a call is
//!   sent again, and retried by the client) when its options say
//!   `option idempotency_level = IDEMPOTENT;` or `NO_SIDE_EFFECTS` (protobuf's own method
//!   option, `google.protobuf.MethodOptions`);
//! - the method's name on the wire is its name in the `.proto` file (`GetBlockLocations`), the
//!   Rust method its snake case (`get_block_locations`);
//! - the `.proto` comments become the trait's and methods' docs;
//! - streaming methods (`stream` on either side) are refused with a build error naming the
//!   method: peerwire's typed protocols take one request and give one reply.
//!
//! The crate using the generated code depends on `peerwire` and `prost`.

use std::path::{Path, PathBuf};

use prost_build::{Comments, Method, Service};
use prost_types::method_options::IdempotencyLevel;

/// Settings of a `.proto` compilation; [`configure`] makes one.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    versions: Vec<(String, u32)>,
    protoc: Option<PathBuf>,
    bytes: Vec<String>,
    out_dir: Option<PathBuf>,
}

/// A [`Builder`] with the defaults: every protocol at version 1, `protoc` from `PROTOC` or the
/// `PATH`, the output in `OUT_DIR`.
pub fn configure() -> Builder {
    Builder::default()
}

impl Builder {
    /// The version of the protocol made from the service `full_name` (`package.Service`).
    pub fn version(mut self, full_name: &str, version: u32) -> Self {
        self.versions.push((full_name.to_owned(), version));
        self
    }

    /// The `protoc` program to run (for example `protoc-bin-vendored`'s).
    pub fn protoc(mut self, path: impl Into<PathBuf>) -> Self {
        self.protoc = Some(path.into());
        self
    }

    /// `bytes` fields under these protobuf paths become `bytes::Bytes` (no copy on decode),
    /// as [`prost_build::Config::bytes`].
    pub fn bytes(mut self, path: &str) -> Self {
        self.bytes.push(path.to_owned());
        self
    }

    /// Writes the Rust files into `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// The prost-build configuration these settings make, with the generator installed, for
    /// callers that set more of prost-build's options themselves.
    pub fn into_config(self) -> prost_build::Config {
        let mut config = prost_build::Config::new();
        if let Some(protoc) = &self.protoc {
            config.protoc_executable(protoc);
        }
        if !self.bytes.is_empty() {
            config.bytes(&self.bytes);
        }
        if let Some(dir) = &self.out_dir {
            config.out_dir(dir);
        }
        config.service_generator(Box::new(Generator {
            versions: self.versions,
        }));
        config
    }

    /// Compiles `protos` (looking for imports in `includes`): prost's messages and a
    /// `#[peerwire::protocol]` trait per service, one Rust file per package.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> std::io::Result<()> {
        self.into_config().compile_protos(protos, includes)
    }
}

/// The service generator: one `#[peerwire::protocol]` trait per service.
#[derive(Debug, Default)]
pub struct Generator {
    versions: Vec<(String, u32)>,
}

impl Generator {
    /// A generator with every protocol at version 1 but those named in `versions`
    /// (`("package.Service", version)`).
    pub fn new(versions: Vec<(String, u32)>) -> Self {
        Self { versions }
    }
}

/// Whether the method's options mark it idempotent.
fn idempotent(method: &Method) -> bool {
    matches!(
        method.options.idempotency_level(),
        IdempotencyLevel::Idempotent | IdempotencyLevel::NoSideEffects
    )
}

/// `///` lines from a `.proto` element's leading comments.
fn docs(comments: &Comments, indent: &str, out: &mut String) {
    for line in &comments.leading {
        for l in line.lines() {
            out.push_str(indent);
            out.push_str("///");
            if !l.is_empty() && !l.starts_with(' ') {
                out.push(' ');
            }
            out.push_str(l);
            out.push('\n');
        }
    }
}

impl prost_build::ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        for m in &service.methods {
            assert!(
                !m.client_streaming && !m.server_streaming,
                "peerwire-build: {full_name}.{} streams its {}; peerwire's typed protocols take one request and give one reply",
                m.proto_name,
                if m.client_streaming {
                    "requests"
                } else {
                    "replies"
                }
            );
        }
        let version = self
            .versions
            .iter()
            .rev()
            .find(|(n, _)| *n == full_name)
            .map_or(1, |(_, v)| *v);
        docs(&service.comments, "", buf);
        if service.comments.leading.is_empty() {
            buf.push_str(&format!(
                "/// The `{full_name}` service (generated by peerwire-build).\n"
            ));
        }
        buf.push_str(&format!(
            "#[::peerwire::protocol(name = \"{full_name}\", version = {version})]\npub trait {} {{\n",
            service.name
        ));
        for m in &service.methods {
            docs(&m.comments, "    ", buf);
            if m.comments.leading.is_empty() {
                buf.push_str(&format!("    /// `{}`.\n", m.proto_name));
            }
            buf.push_str("    #[engine(prost)]\n");
            if idempotent(m) {
                buf.push_str("    #[idempotent]\n");
            }
            buf.push_str(&format!(
                "    #[rename = \"{}\"]\n    async fn {}(&self, request: {}) -> ::core::result::Result<{}, ::peerwire::HandlerError>;\n",
                m.proto_name, m.name, m.input_type, m.output_type
            ));
        }
        buf.push_str("}\n");
    }
}

#[cfg(test)]
mod tests {
    use prost_build::ServiceGenerator as _;

    use super::*;

    fn method(name: &str, proto_name: &str, level: Option<IdempotencyLevel>) -> Method {
        let mut options = prost_types::MethodOptions::default();
        if let Some(l) = level {
            options.set_idempotency_level(l);
        }
        Method {
            name: name.into(),
            proto_name: proto_name.into(),
            comments: Comments::default(),
            input_type: "Req".into(),
            output_type: "super::other::Resp".into(),
            input_proto_type: ".pkg.Req".into(),
            output_proto_type: ".other.Resp".into(),
            options,
            client_streaming: false,
            server_streaming: false,
        }
    }

    fn service(methods: Vec<Method>) -> Service {
        Service {
            name: "Store".into(),
            proto_name: "Store".into(),
            package: "pkg".into(),
            comments: Comments {
                leading_detached: Vec::new(),
                leading: vec![" A store.".into()],
                trailing: Vec::new(),
            },
            methods,
            options: prost_types::ServiceOptions::default(),
        }
    }

    #[test]
    fn a_service_becomes_a_protocol_trait() {
        let mut out = String::new();
        Generator::new(vec![("pkg.Store".into(), 3)]).generate(
            service(vec![
                method("get", "Get", Some(IdempotencyLevel::NoSideEffects)),
                method("put_all", "PutAll", None),
            ]),
            &mut out,
        );
        assert!(out.starts_with("/// A store.\n#[::peerwire::protocol(name = \"pkg.Store\", version = 3)]\npub trait Store {\n"), "{out}");
        assert!(out.contains("    #[engine(prost)]\n    #[idempotent]\n    #[rename = \"Get\"]\n    async fn get(&self, request: Req) -> ::core::result::Result<super::other::Resp, ::peerwire::HandlerError>;\n"), "{out}");
        assert!(
            out.contains("    #[engine(prost)]\n    #[rename = \"PutAll\"]\n    async fn put_all("),
            "{out}"
        );
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn the_version_defaults_to_one() {
        let mut out = String::new();
        Generator::default().generate(service(vec![method("get", "Get", None)]), &mut out);
        assert!(out.contains("version = 1)]"), "{out}");
    }

    #[test]
    #[should_panic(expected = "pkg.Store.Watch streams its replies")]
    fn a_streaming_method_is_refused_by_name() {
        let mut watch = method("watch", "Watch", None);
        watch.server_streaming = true;
        Generator::default().generate(service(vec![watch]), &mut String::new());
    }
}

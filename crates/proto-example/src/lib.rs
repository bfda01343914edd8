//! Two protocols defined once, in `proto/hdfs.proto`, and made into peerwire protocols by
//! `peerwire-build` in `build.rs`: this crate only includes the generated code and implements
//! the traits. `tests/two_services.rs` serves both on one port and calls them.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Generated from `proto/hdfs.proto`: the messages (prost), and for each service a trait,
/// its server side (`client_protocol`, `datanode_protocol`) and its client
/// (`ClientProtocolClient`, `DatanodeProtocolClient`).
#[allow(missing_docs, clippy::use_self)]
pub mod hdfs {
    include!(concat!(env!("OUT_DIR"), "/hdfs.rs"));
}

use hdfs::{
    ClientProtocol, DatanodeProtocol, FileStatus, GetFileInfoRequest, HeartbeatRequest,
    HeartbeatResponse, MkdirsRequest, MkdirsResponse,
};
use peerwire::HandlerError;

/// A toy NameNode: directories by path, and the datanodes that have reported.
#[derive(Debug, Default)]
pub struct NameNode {
    dirs: Mutex<BTreeSet<String>>,
    datanodes: Mutex<BTreeSet<u64>>,
}

impl ClientProtocol for NameNode {
    async fn get_file_info(&self, request: GetFileInfoRequest) -> Result<FileStatus, HandlerError> {
        let dirs = self.dirs.lock().expect("dirs lock");
        Ok(FileStatus {
            exists: dirs.contains(&request.path),
            length: 0,
        })
    }

    async fn mkdirs(&self, request: MkdirsRequest) -> Result<MkdirsResponse, HandlerError> {
        if !request.path.starts_with('/') {
            return Err(HandlerError::new(format!(
                "{:?} is not absolute",
                request.path
            )));
        }
        let created = self.dirs.lock().expect("dirs lock").insert(request.path);
        Ok(MkdirsResponse { created })
    }
}

impl DatanodeProtocol for NameNode {
    async fn send_heartbeat(
        &self,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, HandlerError> {
        let mut live = self.datanodes.lock().expect("datanodes lock");
        live.insert(request.datanode);
        Ok(HeartbeatResponse {
            live_datanodes: live.len() as u64,
        })
    }
}

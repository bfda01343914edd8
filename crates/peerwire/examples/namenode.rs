//! A toy NameNode: two protocols on one server and one port, as Hadoop's NameNode serves
//! `ClientProtocol` to filesystem clients and `DatanodeProtocol` to its DataNodes.
//!
//! Each protocol is defined once, as a Rust trait under `#[peerwire::protocol]`, which writes
//! the server side (a [`Protocol`] for an implementation) and a typed client.
//! `ClientProtocol` uses the serde engine for most methods and protobuf (prost) for
//! `getFileInfo`; `DatanodeProtocol` uses protobuf throughout. `mkdirs` and `create` are not
//! idempotent, so their retries are answered from the server's retry cache.
//!
//! Run with `cargo run --release -p peerwire --example namenode`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use peerwire::service::{Prost, ProtocolClient};
use peerwire::{
    Client, ClientConfig, Error, HandlerError, Identity, NotExecuted, Peer, Request, Server,
    ServerConfig,
};
use serde::{Deserialize, Serialize};

const CLUSTER: u64 = 0x4e4e_0001;
const NAMENODE: u64 = 1;

// ---- ClientProtocol -------------------------------------------------------------------------

/// `mkdirs` arguments (serde engine).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mkdirs {
    path: String,
    create_parent: bool,
}

/// `create` arguments (serde engine).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Create {
    path: String,
    replication: u16,
}

/// `getFileInfo` arguments (protobuf engine).
#[derive(Clone, PartialEq, prost::Message)]
struct GetFileInfo {
    #[prost(string, tag = "1")]
    path: String,
}

/// `getFileInfo` answer (protobuf engine).
#[derive(Clone, PartialEq, prost::Message)]
struct FileStatus {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(bool, tag = "2")]
    is_dir: bool,
    #[prost(uint32, tag = "3")]
    replication: u32,
    #[prost(bool, tag = "4")]
    exists: bool,
}

/// What filesystem clients call: `ClientProtocol` version 1, defined once (the macro writes
/// `client_protocol`, the server side, and `ClientProtocolClient`).
#[peerwire::protocol(name = "ClientProtocol", version = 1)]
trait ClientProtocol {
    /// Creates a directory (and its parents if asked); false if it existed. Not idempotent:
    /// a retry is answered from the retry cache.
    async fn mkdirs(&self, req: Mkdirs) -> Result<bool, HandlerError>;
    /// Creates a file; its id. Not idempotent.
    async fn create(&self, req: Create) -> Result<u64, HandlerError>;
    /// A path's status (protobuf engine).
    #[idempotent]
    #[engine(prost)]
    #[rename = "getFileInfo"]
    async fn get_file_info(&self, req: GetFileInfo) -> Result<FileStatus, HandlerError>;
    /// A directory's entries.
    #[idempotent]
    #[rename = "getListing"]
    async fn get_listing(&self, dir: String) -> Result<Vec<String>, HandlerError>;
}

// ---- DatanodeProtocol -----------------------------------------------------------------------

/// A DataNode's heartbeat (protobuf engine).
#[derive(Clone, PartialEq, prost::Message)]
struct Heartbeat {
    #[prost(uint64, tag = "1")]
    capacity_bytes: u64,
    #[prost(uint64, tag = "2")]
    used_bytes: u64,
}

/// The NameNode's answer: commands for the DataNode (protobuf engine).
#[derive(Clone, PartialEq, prost::Message)]
struct HeartbeatResponse {
    #[prost(string, repeated, tag = "1")]
    commands: Vec<String>,
}

/// What DataNodes call: `DatanodeProtocol` version 2. The caller is identified by the node
/// id of its connection, so the method takes the call's `Request`.
#[peerwire::protocol(name = "DatanodeProtocol", version = 2)]
trait DatanodeProtocol {
    /// A DataNode's heartbeat; commands for it.
    #[idempotent]
    #[engine(prost)]
    #[rename = "sendHeartbeat"]
    async fn send_heartbeat(
        &self,
        hb: Heartbeat,
        call: Request,
    ) -> Result<HeartbeatResponse, HandlerError>;
}

// ---- The NameNode ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Inode {
    Dir,
    File { replication: u16 },
}

/// The namespace (a sorted map of paths) and what the DataNodes reported.
#[derive(Default)]
struct NameNode {
    namespace: Mutex<BTreeMap<String, Inode>>,
    datanodes: Mutex<BTreeMap<u64, Heartbeat>>,
    next_file_id: Mutex<u64>,
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn check_path(path: &str) -> Result<(), HandlerError> {
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
        return Err(HandlerError::new(format!("invalid path `{path}`")));
    }
    Ok(())
}

impl ClientProtocol for NameNode {
    async fn mkdirs(&self, req: Mkdirs) -> Result<bool, HandlerError> {
        check_path(&req.path)?;
        let mut ns = self.namespace.lock().expect("namespace lock");
        if !req.create_parent && !ns.contains_key(parent(&req.path)) {
            return Err(HandlerError::new(format!(
                "parent of `{}` does not exist",
                req.path
            )));
        }
        let mut dir = req.path.as_str();
        let mut created = false;
        while dir != "/" {
            match ns.get(dir) {
                Some(Inode::Dir) => break,
                Some(Inode::File { .. }) => {
                    return Err(HandlerError::new(format!("`{dir}` is a file")));
                }
                None => {
                    ns.insert(dir.to_string(), Inode::Dir);
                    created = true;
                }
            }
            dir = parent(dir);
        }
        Ok(created)
    }

    async fn create(&self, req: Create) -> Result<u64, HandlerError> {
        check_path(&req.path)?;
        let mut ns = self.namespace.lock().expect("namespace lock");
        if !matches!(ns.get(parent(&req.path)), Some(Inode::Dir)) && parent(&req.path) != "/" {
            return Err(HandlerError::new(format!(
                "parent of `{}` is not a directory",
                req.path
            )));
        }
        if ns.contains_key(&req.path) {
            return Err(HandlerError::new(format!("`{}` already exists", req.path)));
        }
        ns.insert(
            req.path,
            Inode::File {
                replication: req.replication,
            },
        );
        let mut id = self.next_file_id.lock().expect("file id lock");
        *id += 1;
        Ok(*id)
    }

    async fn get_file_info(&self, req: GetFileInfo) -> Result<FileStatus, HandlerError> {
        let ns = self.namespace.lock().expect("namespace lock");
        let (exists, is_dir, replication) = match ns.get(&req.path) {
            Some(Inode::Dir) => (true, true, 0),
            Some(Inode::File { replication }) => (true, false, u32::from(*replication)),
            None => (false, false, 0),
        };
        Ok(FileStatus {
            path: req.path,
            is_dir,
            replication,
            exists,
        })
    }

    async fn get_listing(&self, dir: String) -> Result<Vec<String>, HandlerError> {
        let ns = self.namespace.lock().expect("namespace lock");
        Ok(ns
            .keys()
            .filter(|p| parent(p) == dir && p.as_str() != dir)
            .cloned()
            .collect())
    }
}

impl DatanodeProtocol for NameNode {
    async fn send_heartbeat(
        &self,
        hb: Heartbeat,
        call: Request,
    ) -> Result<HeartbeatResponse, HandlerError> {
        let datanode = call.peer().node_id;
        let full = hb.used_bytes * 10 > hb.capacity_bytes * 9;
        self.datanodes
            .lock()
            .expect("datanodes lock")
            .insert(datanode, hb);
        let commands = if full {
            vec!["balance".to_string()]
        } else {
            Vec::new()
        };
        Ok(HeartbeatResponse { commands })
    }
}

fn identity(node_id: u64) -> Identity {
    Identity {
        cluster_id: CLUSTER,
        node_id,
        epoch: 1,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let namenode = Arc::new(NameNode::default());
    let server = Server::builder(ServerConfig {
        identity: identity(NAMENODE),
        ..ServerConfig::default()
    })
    .protocol(client_protocol(namenode.clone()))
    .protocol(datanode_protocol(namenode.clone()))
    .bind("127.0.0.1:0".parse().expect("loopback"))
    .await?;
    let addr = server.local_addr();
    println!("namenode serving ClientProtocol v1 and DatanodeProtocol v2 on {addr}");
    let target = Peer::new(addr, NAMENODE);

    // A filesystem client (node 100).
    let fs_client = Client::new(ClientConfig {
        identity: identity(100),
        ..ClientConfig::default()
    });
    let fs = ClientProtocolClient::new(fs_client.clone());
    let mkdirs = |path: &str| Mkdirs {
        path: path.into(),
        create_parent: true,
    };
    let create = |path: &str, replication| Create {
        path: path.into(),
        replication,
    };
    println!(
        "mkdirs /user/alice -> {}",
        fs.mkdirs(target, &mkdirs("/user/alice")).await?
    );
    println!(
        "mkdirs /user/alice -> {} (exists)",
        fs.mkdirs(target, &mkdirs("/user/alice")).await?
    );
    println!(
        "create /user/alice/a.txt -> file id {}",
        fs.create(target, &create("/user/alice/a.txt", 3)).await?
    );
    println!(
        "create /user/alice/b.txt -> file id {}",
        fs.create(target, &create("/user/alice/b.txt", 2)).await?
    );
    let info = fs
        .get_file_info(
            target,
            &GetFileInfo {
                path: "/user/alice/a.txt".into(),
            },
        )
        .await?;
    println!(
        "getFileInfo {} -> exists {}, dir {}, replication {}",
        info.path, info.exists, info.is_dir, info.replication
    );
    println!(
        "getListing /user/alice -> {:?}",
        fs.get_listing(target, &"/user/alice".to_string()).await?
    );
    match fs.create(target, &create("/user/alice/a.txt", 3)).await {
        Err(Error::Remote {
            status, message, ..
        }) => {
            println!("create /user/alice/a.txt again -> {status:?}: {message}")
        }
        other => println!("create /user/alice/a.txt again -> unexpected {other:?}"),
    }

    // Three DataNodes (nodes 11..=13) heartbeat over the second protocol, on the same port.
    for dn in 11..=13u64 {
        let client = Client::new(ClientConfig {
            identity: identity(dn),
            ..ClientConfig::default()
        });
        let datanode = DatanodeProtocolClient::new(client.clone());
        let hb = Heartbeat {
            capacity_bytes: 1 << 40,
            used_bytes: (dn - 10) * (350 << 30),
        };
        let resp = datanode.send_heartbeat(target, &hb).await?;
        println!("datanode {dn} heartbeat -> commands {:?}", resp.commands);
        client.shutdown().await;
    }
    println!(
        "namenode knows datanodes {:?}",
        namenode
            .datanodes
            .lock()
            .expect("datanodes lock")
            .keys()
            .collect::<Vec<_>>()
    );

    // Asking for a protocol version the server does not serve is refused before anything runs.
    let old = ProtocolClient::new(fs_client.clone(), "DatanodeProtocol", 1);
    match old
        .call::<_, _, HeartbeatResponse>(target, "sendHeartbeat", Prost, &Heartbeat::default())
        .await
    {
        Err(Error::NotExecuted {
            reason: NotExecuted::Rejected { status, message },
            ..
        }) => println!("DatanodeProtocol v1 -> {status:?}: {message}"),
        other => println!("DatanodeProtocol v1 -> unexpected {other:?}"),
    }

    fs_client.shutdown().await;
    server.shutdown().await;
    println!("namenode stopped");
    Ok(())
}

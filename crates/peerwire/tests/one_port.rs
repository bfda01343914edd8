//! The one-port example runs: an RpcEnv endpoint, two typed protocols, two raft groups, a
//! data-stream group and a user-defined service on one node's one port, driven from a second
//! node (the example checks each answer and fails on any error).

#[path = "../examples/one_port.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod one_port;

#[test]
fn the_one_port_example_runs() {
    one_port::main().expect("the one-port example");
}

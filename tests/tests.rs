//! The one integration-test binary (see STYLE.md, item 9): each module tests one capability
//! against a real `fjord` process; `support` is the harness.

mod support;

mod admin_describe;
mod admin_ops;
mod bad_input;
mod broker_clients;
mod cli;
mod compaction;
mod differential;
mod disk_full;
mod exactly_once;
mod fuzz_regressions;
mod groups;
mod kafka_tools;
mod layers;
mod matrix_go;
mod matrix_java;
mod matrix_kcat;
mod matrix_node;
mod matrix_python;
mod node_clients;
mod replication;
mod request_parsing;
mod transactions;

//! sluice integration tests: one binary (faster to link), one module per feature.
//! Every test starts a real server on 127.0.0.1:0 and talks TCP to it.

#![allow(unreachable_pub, missing_docs)]

mod auth;
mod bench;
mod binary_keys;
mod cli;
mod cli_schema;
mod cluster;
mod common;
mod config;
mod connections;
mod crash;
mod dashboard;
mod delivery;
mod disk;
mod docs;
mod errors;
mod failure;
mod framing;
mod groups;
mod handshake;
mod hash_exchange;
mod hostile_input;
mod http_api;
mod introspection;
mod lag;
mod limits;
mod logs;
mod message_log;
mod paging;
mod persistence;
mod recovery;
mod routing;
mod schemas;
mod single_active;
mod stop;
mod stream_dead_letters;
mod streams;
mod tls;
mod topology;
mod tx;
mod ui;
mod walkthrough;

//! # sluice
//!
//! A message broker with AMQP-style routing (exchanges, bindings, queues),
//! real delivery guarantees (publisher confirms after fsync, acks, prefetch,
//! redelivery) and a line-based text protocol a person can type into `nc`.
//!
//! # Layout
//!
//! - [`protocol`]: the wire format, pure (bytes in, values out): framing,
//!   tokens, the command parser and its inverse (command encoding), reply
//!   encoding, error codes.
//! - `session`: one connection's event loop: reads frames, runs commands
//!   through `cmd`, writes replies and pushes in the order the protocol
//!   promises; held publishes, heartbeats, the close. Also `oneshot`:
//!   one command run without a connection, for the HTTP API.
//! - `cmd`: runs one command against the broker and the connection's
//!   state, and returns what happened (one file per verb family).
//! - `session_state`: what a connection holds between commands and all a
//!   command may touch: delivery tags, unacked deliveries and their ack
//!   deadlines, subscriptions, its login, the outbox of what waits to be
//!   written; requeue on close. `session` uses `cmd`, both use
//!   `session_state`, which uses neither.
//! - [`connection`]: the socket halves (TCP or TLS) and their buffers.
//! - [`server`]: accept loops (plain and TLS ports), connection limit,
//!   graceful shutdown.
//! - [`shutdown`]: how the process stops: SIGINT/SIGTERM on a thread of
//!   their own, and the deadline that ends a stop that hangs.
//! - [`tls`]: TLS set-up (server certificate and key, client trust).
//! - [`broker`]: registries of exchanges and queues, routing (the
//!   consistent-hash ring too), queue state (single-active, message groups;
//!   streams with their offsets, consumer groups and partitions),
//!   publishing, the resource alarms (disk, memory) with the disk reserve,
//!   and recovery.
//! - `schema`: the schema registry (subjects, versions, compatibility
//!   rules, compiled JSON Schema validators) that `PUB` to an exchange
//!   with `schema=` (or through the default exchange to a queue with
//!   `schema=`) checks bodies against; pure of storage.
//! - [`auth`]: users, password hashing, permissions, the login rate
//!   limiter and `sluice user`.
//! - `cluster`: clusters on openraft (issue 18, under way): the Raft log
//!   store on the message log's consensus groups, so far.
//! - [`store`]: persistence, a seam per concern: [`store::TopologyStore`]
//!   (exchanges, queues, bindings, users, schemas) and [`store::MessageStore`]
//!   (messages, de-duplication records, stream offsets), both on sled, in
//!   RAM for tests that restart a broker, or nowhere (`--in-memory`); the
//!   group commit.
//! - [`http`]: `--http`: Prometheus `/metrics`, the management UI and its
//!   JSON API: logins and sessions, reads, and every action as one
//!   protocol command run as the caller (through `session::oneshot`). The
//!   counters, rates and history live in [`broker::stats`] and
//!   `broker::history`, the connection registry in [`broker::connections`].
//! - [`client`]: a small async client used by tests, examples, the bench
//!   and the CLI.
//! - [`cli`]: the command-line client (`sluice pub|sub|get|declare|bind|
//!   stats|ls|schema ...`): options, output formats, exit codes; and `sluice user`.
//! - [`config`], [`error`]: settings and typed errors.
//!
//! The library's public surface is what the binary (`main.rs`, the CLI
//! and `sluice bench`), the tests, benches, examples and fuzz targets use;
//! everything else is `pub(crate)` (`unreachable_pub` keeps it so). These
//! docs are for contributors: `cargo doc --document-private-items` shows
//! every module.
//!
//! # How a message flows
//!
//! `PUB` bytes arrive on a connection → [`protocol::frame`] cuts the line and
//! its `{N}` literal → [`protocol::parse`] makes a `Command::Publish` →
//! `cmd` calls [`broker::Broker::publish`] → the exchange's bindings route
//! it to queues → persistent copies for durable queues are written to the
//! store in one atomic batch → each queue enqueues its copy and dispatches
//! it to a subscriber with prefetch credit, through that subscriber's push
//! channel → the subscriber's session writes `MSG` → the client `ACK`s →
//! the queue removes the copy from the store and returns the credit. The
//! publisher's `OK` waits in its session's output queue until the group
//! commit has fsync'd the batch that holds the message.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub(crate) mod cmd;
pub mod config;
pub(crate) mod connection;
pub mod error;
pub mod http;
pub mod protocol;
pub(crate) mod schema;
pub mod server;
pub(crate) mod session;
pub(crate) mod session_state;
pub mod shutdown;
pub mod store;
pub mod tls;

/// The crate version, as the greeting reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The protocol version this server speaks.
pub(crate) const PROTOCOL_VERSION: u64 = 1;

//! sluice integration tests: one binary (faster to link), one module per feature.
#![allow(unreachable_pub, missing_docs)]
//! Every test starts a real server on 127.0.0.1:0 and talks TCP to it.

mod common;
mod handshake;

//! [`run`]: the accept loop. One task per connection, a cap on concurrent
//! connections, and a clean shutdown: stop accepting, let every session
//! finish its in-flight confirms, then flush the store.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;
use crate::session::Session;
use crate::{PROTOCOL_VERSION, VERSION};

/// Serves `listener` until `shutdown` completes, then closes every
/// connection and shuts the broker's store down cleanly.
pub async fn run(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(broker.config().max_connections));
    let mut sessions = JoinSet::new();
    let timers = tokio::spawn(broker.timers().clone().run());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: log, back off a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        while sessions.try_join_next().is_some() {}
        let broker = broker.clone();
        let stop = stop_rx.clone();
        sessions.spawn(async move {
            let conn_id = broker.next_id();
            tracing::debug!(conn = conn_id, %peer, "connection opened");
            let (reader, mut writer) = connection::split(stream, broker.config().limits);
            writer.buf.extend_from_slice(
                format!("HELLO sluice {VERSION} proto={PROTOCOL_VERSION}\r\n").as_bytes(),
            );
            let session = Session::new(conn_id, broker);
            session.run(reader, writer, stop).await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    let _ = stop_tx.send(true);
    while sessions.join_next().await.is_some() {}
    timers.abort();
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown()).await??;
    tracing::info!("store flushed; bye");
    Ok(())
}

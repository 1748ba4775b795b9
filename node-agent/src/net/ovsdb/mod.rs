//! A small typed OVSDB JSON-RPC client (RFC 7047) of our own, over ovsdb-server's unix socket
//! (or TCP).
//!
//! Why our own: the `ovsdb*` crates on the registry can read but not write (no
//! insert/update/mutate). The protocol is small: JSON-RPC 1.0 where every frame is one bare
//! JSON value (no length prefix, no newline framing), so we read the socket with serde_json's
//! stream deserializer.
//!
//! The API is synchronous: a reader thread owns the read half of the connection, routes
//! replies to the caller waiting on that request id, answers the server's `echo` keep-alives,
//! and forwards `update` notifications to the [`Monitor`] they belong to. Any number of
//! threads may call [`Client::transact`] at once. The node agent calls it through
//! `spawn_blocking`, like the hypervisor backend.
//!
//! When the connection drops, every waiting call fails with [`Error::Closed`] and every
//! monitor channel disconnects; the owner (e.g. the OVS switch) reconnects.

pub mod ops;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

pub use ops::{Atom, Cond, Datum, Mutation, NewRow, Op, OpResult, Row, Until};

/// ovsdb-server's default unix socket.
pub const DEFAULT_SOCKET: &str = "/var/run/openvswitch/db.sock";

/// The Open vSwitch database name.
pub const OPEN_VSWITCH_DB: &str = "Open_vSwitch";

/// How long a request waits for its reply by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to ovsdb-server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, reading or writing the socket failed.
    #[error("ovsdb i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not valid JSON-RPC/OVSDB.
    #[error("ovsdb protocol error: {0}")]
    Protocol(String),
    /// The server answered the request with a JSON-RPC error.
    #[error("ovsdb rpc error: {error}{}", details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Rpc {
        /// The error name (e.g. `unknown database`).
        error: String,
        /// Human-readable details, if any.
        details: Option<String>,
    },
    /// One operation of a transaction failed, so the whole transaction was rolled back.
    /// `index` is the failing operation's position; a commit failure (e.g. `constraint
    /// violation` from a duplicate index) has `index == ops.len()`.
    #[error("ovsdb operation {index} failed: {error}{}", details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    OperationFailed {
        /// Position of the failing operation.
        index: usize,
        /// The error name (`timed out` for a failed `wait`, `constraint violation`, …).
        error: String,
        /// Details, if any.
        details: Option<String>,
    },
    /// The connection is closed (server gone, or the client dropped).
    #[error("ovsdb connection closed")]
    Closed,
    /// No reply within the client's timeout.
    #[error("ovsdb request {method} timed out after {after:?}")]
    Timeout {
        /// The request's method.
        method: String,
        /// How long we waited.
        after: Duration,
    },
}

impl Error {
    /// Whether this is a failed `wait` guard or an index conflict: a concurrent writer got
    /// there first, and re-reading then retrying is the right reaction.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::OperationFailed { error, .. }
            if error == "timed out" || error == "constraint violation")
    }

    /// Whether the connection is unusable (reconnect before retrying).
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Closed | Error::Protocol(_))
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Changes to one table: row uuid → old/new.
pub type TableUpdate = BTreeMap<String, RowUpdate>;

/// Changes to several tables: table name → changes (the `update` notification's payload and
/// the initial result of `monitor`).
pub type TableUpdates = BTreeMap<String, TableUpdate>;

/// One row's change. In the initial contents only `new` is set; on delete only `old` (the
/// whole row); on modify `new` is the whole new row and `old` holds the changed columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowUpdate {
    /// The row before (changed columns only, or the whole row on delete).
    pub old: Option<Row>,
    /// The row after (all monitored columns), `None` on delete.
    pub new: Option<Row>,
}

fn parse_table_updates(v: &Value) -> Result<TableUpdates> {
    let tables = v
        .as_object()
        .ok_or_else(|| Error::Protocol(format!("table-updates is not an object: {v}")))?;
    let mut out = TableUpdates::new();
    for (table, rows) in tables {
        let rows = rows
            .as_object()
            .ok_or_else(|| Error::Protocol(format!("table-update is not an object: {rows}")))?;
        let mut tu = TableUpdate::new();
        for (uuid, ru) in rows {
            let row = |k: &str| ru.get(k).and_then(Value::as_object).cloned().map(Row);
            tu.insert(
                uuid.clone(),
                RowUpdate {
                    old: row("old"),
                    new: row("new"),
                },
            );
        }
        out.insert(table.clone(), tu);
    }
    Ok(out)
}

type Reply = std::result::Result<Value, Value>;

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, SyncSender<Reply>>,
    monitors: HashMap<String, Sender<TableUpdates>>,
}

struct Inner {
    writer: Mutex<Box<dyn Write + Send>>,
    routes: Mutex<Routes>,
    next_id: AtomicU64,
    closed: AtomicBool,
    shutdown: Box<dyn Fn() + Send + Sync>,
    timeout: Duration,
}

impl Inner {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: &Value) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let bytes = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(&bytes)?;
        w.flush()?;
        Ok(())
    }

    fn call(&self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        self.routes().pending.insert(id, tx);
        if let Err(e) = self.send(&json!({"id": id, "method": method, "params": params})) {
            self.routes().pending.remove(&id);
            return Err(e);
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(rpc_error(&e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.routes().pending.remove(&id);
                Err(Error::Timeout {
                    method: method.to_owned(),
                    after: self.timeout,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    /// Routes one message from the server.
    fn dispatch(&self, msg: Value) {
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        match method {
            Some("echo") => {
                let params = msg.get("params").cloned().unwrap_or(json!([]));
                if let Err(e) = self.send(&json!({"id": id, "result": params, "error": null})) {
                    tracing::warn!(error = %e, "ovsdb: answering echo failed");
                }
            }
            Some("update") => {
                let params = msg.get("params").and_then(Value::as_array);
                let (Some(mid), Some(updates)) = (
                    params.and_then(|p| p.first()),
                    params.and_then(|p| p.get(1)),
                ) else {
                    tracing::warn!(%msg, "ovsdb: malformed update notification");
                    return;
                };
                let key = mid.to_string();
                match parse_table_updates(updates) {
                    Ok(u) => {
                        let mut routes = self.routes();
                        if let Some(tx) = routes.monitors.get(&key)
                            && tx.send(u).is_err()
                        {
                            routes.monitors.remove(&key);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ovsdb: bad update notification"),
                }
            }
            Some(other) if !id.is_null() => {
                let _ = self.send(&json!({"id": id, "result": null,
                    "error": format!("unsupported method {other}")}));
            }
            Some(_) => {} // other notifications (locked, stolen): not used
            None => {
                let Some(id) = id.as_u64() else {
                    tracing::warn!(%msg, "ovsdb: reply with an id we never sent");
                    return;
                };
                let reply = match msg.get("error") {
                    Some(e) if !e.is_null() => Err(e.clone()),
                    _ => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                };
                if let Some(tx) = self.routes().pending.remove(&id) {
                    let _ = tx.send(reply);
                }
            }
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut r = self.routes();
        r.pending.clear();
        r.monitors.clear();
    }
}

fn rpc_error(e: &Value) -> Error {
    match e {
        Value::String(s) => Error::Rpc {
            error: s.clone(),
            details: None,
        },
        Value::Object(o) => Error::Rpc {
            error: o
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            details: o.get("details").and_then(Value::as_str).map(str::to_owned),
        },
        other => Error::Rpc {
            error: other.to_string(),
            details: None,
        },
    }
}

/// A connection to ovsdb-server. Share it (`Arc`) between threads; dropping the last handle
/// closes the connection and stops the reader thread.
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.inner.closed.load(Ordering::SeqCst))
            .finish()
    }
}

impl Client {
    /// Connects to a unix socket (normally [`DEFAULT_SOCKET`]).
    pub fn connect_unix(path: &Path) -> Result<Self> {
        let s = UnixStream::connect(path)?;
        let r = s.try_clone()?;
        let sd = s.try_clone()?;
        Ok(Self::from_parts(
            r,
            s,
            Box::new(move || {
                let _ = sd.shutdown(std::net::Shutdown::Both);
            }),
            DEFAULT_TIMEOUT,
        ))
    }

    /// Connects over TCP (`ovs-appctl -t ovsdb-server ovsdb-server/add-remote ptcp:6640:…`).
    pub fn connect_tcp(addr: &str) -> Result<Self> {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let r = s.try_clone()?;
        let sd = s.try_clone()?;
        Ok(Self::from_parts(
            r,
            s,
            Box::new(move || {
                let _ = sd.shutdown(std::net::Shutdown::Both);
            }),
            DEFAULT_TIMEOUT,
        ))
    }

    /// Connects to `unix:<path>`, `tcp:<host>:<port>` or a bare socket path.
    pub fn connect(remote: &str) -> Result<Self> {
        if let Some(addr) = remote.strip_prefix("tcp:") {
            Self::connect_tcp(addr)
        } else {
            Self::connect_unix(Path::new(remote.strip_prefix("unix:").unwrap_or(remote)))
        }
    }

    /// Builds a client over an already connected stream's halves. `shutdown` must make the
    /// reader return (EOF or error); it is called when the client is dropped.
    pub fn from_parts(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        shutdown: Box<dyn Fn() + Send + Sync>,
        timeout: Duration,
    ) -> Self {
        let inner = Arc::new(Inner {
            writer: Mutex::new(Box::new(writer)),
            routes: Mutex::new(Routes::default()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            shutdown,
            timeout,
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("ovsdb-reader".into())
            .spawn(move || {
                let stream = serde_json::Deserializer::from_reader(BufReader::new(reader))
                    .into_iter::<Value>();
                for msg in stream {
                    let Some(inner) = weak.upgrade() else { return };
                    match msg {
                        Ok(m) => inner.dispatch(m),
                        Err(e) => {
                            if !inner.closed.load(Ordering::SeqCst) {
                                tracing::warn!(error = %e, "ovsdb: connection read failed");
                            }
                            break;
                        }
                    }
                }
                if let Some(inner) = weak.upgrade() {
                    inner.close();
                }
            })
            .expect("spawn ovsdb reader thread");
        Client { inner }
    }

    /// Whether the connection has closed (reconnect with a new client).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// A raw JSON-RPC call: the `result`, or [`Error::Rpc`].
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.inner.call(method, params)
    }

    /// `list_dbs`.
    pub fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self.call("list_dbs", json!([]))?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Runs `ops` atomically in `db`. Returns one result per operation, or the first failure
    /// as [`Error::OperationFailed`] (the transaction was then not committed).
    pub fn transact(&self, db: &str, ops: &[Op]) -> Result<Vec<OpResult>> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().map(Op::to_json));
        let v = self.call("transact", Value::Array(params))?;
        decode_transact(ops.len(), &v)
    }

    /// Starts monitoring `columns` of `tables` in `db`: returns the current rows and then
    /// every change as [`TableUpdates`] on [`Monitor::updates`]. Dropping the monitor cancels
    /// it on the server.
    pub fn monitor(&self, db: &str, tables: &[(&str, &[&str])]) -> Result<Monitor> {
        let mid = json!(format!(
            "m{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let key = mid.to_string();
        let (tx, rx) = mpsc::channel();
        self.inner.routes().monitors.insert(key.clone(), tx);
        let reqs: serde_json::Map<String, Value> = tables
            .iter()
            .map(|(t, cols)| (t.to_string(), json!({"columns": cols})))
            .collect();
        let initial = match self.call("monitor", json!([db, mid, reqs])) {
            Ok(v) => parse_table_updates(&v)?,
            Err(e) => {
                self.inner.routes().monitors.remove(&key);
                return Err(e);
            }
        };
        Ok(Monitor {
            initial,
            updates: rx,
            id: mid,
            inner: Arc::downgrade(&self.inner),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        (self.inner.shutdown)();
    }
}

/// Decodes a `transact` result array against the number of operations sent.
fn decode_transact(n_ops: usize, v: &Value) -> Result<Vec<OpResult>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::Protocol(format!("transact result is not an array: {v}")))?;
    for (index, r) in arr.iter().enumerate() {
        if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
            return Err(Error::OperationFailed {
                index,
                error: e.as_str().unwrap_or("unknown").to_owned(),
                details: r.get("details").and_then(Value::as_str).map(str::to_owned),
            });
        }
    }
    if arr.len() < n_ops {
        return Err(Error::Protocol(format!(
            "transact returned {} results for {n_ops} operations",
            arr.len()
        )));
    }
    Ok(arr[..n_ops].iter().map(OpResult::from_json).collect())
}

/// A running `monitor`: its initial contents and a channel of later changes. The channel
/// disconnects when the connection closes.
pub struct Monitor {
    /// The monitored rows when the monitor started (every row as `new`).
    pub initial: TableUpdates,
    /// Every later change, in order.
    pub updates: Receiver<TableUpdates>,
    id: Value,
    inner: std::sync::Weak<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("id", &self.id).finish()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.routes().monitors.remove(&self.id.to_string());
            // Fire and forget: the reply (if any) is dropped by the reader.
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = inner.send(&json!({"id": id, "method": "monitor_cancel", "params": [self.id]}));
        }
    }
}

//! The admin `status` poller: one persistent, `TCP_NODELAY` admin connection
//! per server, polled concurrently; rows summed per function across servers
//! (for scaling), and kept per server too (for metrics and `/api/status`).
//! A server that does not answer is logged once per outage and left out of
//! the sum until it answers again.

use std::collections::HashMap;

use gearman::admin::{AdminClient, FunctionStatus};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{connect_stream, CONNECT_TIMEOUT};

/// How long a poll waits for a new connection before leaving the server out
/// of this snapshot. A server that drops SYNs would otherwise hold up every
/// snapshot, and with it every scaling decision, for the whole connect
/// timeout; the connect goes on in its own task and a later poll uses it.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Queue counts for one function, summed over the servers that answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionCounts {
    pub total: u64,
    pub running: u64,
    pub workers: u64,
}

impl FunctionCounts {
    /// Jobs queued and not yet running.
    pub fn waiting(&self) -> u64 {
        self.total.saturating_sub(self.running)
    }
}

/// One poll's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub functions: HashMap<String, FunctionCounts>,
    /// How many servers answered; 0 means nothing is known.
    pub servers_answered: usize,
    /// When the poll went out: jobs taken since may be missing from the counts.
    pub requested_at: Option<std::time::Instant>,
    /// Each server's own rows, in the configured order.
    pub servers: Vec<ServerStatus>,
}

/// One server's answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub address: String,
    /// None when it did not answer.
    pub rows: Option<Vec<(String, FunctionCounts)>>,
}

impl ServerStatus {
    pub fn up(&self) -> bool {
        self.rows.is_some()
    }
}

impl StatusSnapshot {
    /// Sums per-server rows into one table.
    pub fn from_rows<'a>(
        per_server: impl IntoIterator<Item = Option<&'a [FunctionStatus]>>,
    ) -> Self {
        let mut snapshot = StatusSnapshot::default();
        for rows in per_server.into_iter().flatten() {
            snapshot.servers_answered += 1;
            for row in rows {
                let c = snapshot.functions.entry(row.function.clone()).or_default();
                c.total += row.total;
                c.running += row.running;
                c.workers += row.worker_count;
            }
        }
        snapshot
    }

    /// Sums the servers' rows and keeps them per server.
    pub fn from_servers(servers: Vec<(String, Option<Vec<FunctionStatus>>)>) -> Self {
        let mut snapshot = Self::from_rows(servers.iter().map(|(_, rows)| rows.as_deref()));
        snapshot.servers = servers
            .into_iter()
            .map(|(address, rows)| ServerStatus {
                address,
                rows: rows.map(|rows| {
                    rows.into_iter()
                        .map(|r| {
                            let counts = FunctionCounts {
                                total: r.total,
                                running: r.running,
                                workers: r.worker_count,
                            };
                            (r.function, counts)
                        })
                        .collect()
                }),
            })
            .collect();
        snapshot
    }

    pub fn get(&self, function: &str) -> FunctionCounts {
        self.functions.get(function).copied().unwrap_or_default()
    }
}

/// Polls every server for `status`.
pub struct StatusPoller {
    servers: Vec<ServerPoll>,
}

struct ServerPoll {
    addr: String,
    client: Option<AdminClient<TcpStream>>,
    connecting: Option<tokio::task::JoinHandle<std::io::Result<TcpStream>>>,
    down_since_logged: bool,
}

impl StatusPoller {
    pub fn new(servers: &[String]) -> Self {
        StatusPoller {
            servers: servers
                .iter()
                .map(|addr| ServerPoll {
                    addr: addr.clone(),
                    client: None,
                    connecting: None,
                    down_since_logged: false,
                })
                .collect(),
        }
    }

    /// Asks every server at once and sums what comes back.
    pub async fn poll(&mut self) -> StatusSnapshot {
        let requested_at = std::time::Instant::now();
        let results =
            futures::future::join_all(self.servers.iter_mut().map(ServerPoll::poll)).await;
        let addresses = self.servers.iter().map(|s| s.addr.clone());
        let mut snapshot = StatusSnapshot::from_servers(addresses.zip(results).collect());
        snapshot.requested_at = Some(requested_at);
        snapshot
    }
}

impl ServerPoll {
    /// Logs outages and recoveries, once each.
    fn outcome(
        &mut self,
        result: Result<Vec<FunctionStatus>, String>,
    ) -> Option<Vec<FunctionStatus>> {
        match result {
            Ok(rows) => {
                if self.down_since_logged {
                    tracing::info!("gearmand {} is reachable again", self.addr);
                    self.down_since_logged = false;
                }
                Some(rows)
            }
            Err(err) => {
                self.client = None;
                if !self.down_since_logged {
                    tracing::warn!("gearmand {} is unreachable: {err}; retrying", self.addr);
                    self.down_since_logged = true;
                }
                None
            }
        }
    }

    async fn poll(&mut self) -> Option<Vec<FunctionStatus>> {
        if self.client.is_none() {
            // A fresh connect gets a moment; one left over from an earlier
            // poll is only looked at. Still connecting: left out of this
            // snapshot, and not yet an outage.
            let wait = if self.connecting.is_some() {
                std::time::Duration::ZERO
            } else {
                CONNECT_WAIT
            };
            let addr = self.addr.clone();
            let connecting = self
                .connecting
                .get_or_insert_with(|| tokio::spawn(async move { connect_stream(&addr).await }));
            let joined = match timeout(wait, connecting).await {
                Ok(joined) => joined,
                Err(_) => return None,
            };
            self.connecting = None;
            match joined {
                Ok(Ok(stream)) => self.client = Some(AdminClient::from_stream(stream)),
                Ok(Err(err)) => return self.outcome(Err(err.to_string())),
                Err(err) => return self.outcome(Err(err.to_string())),
            }
        }
        let result = self.try_poll().await;
        self.outcome(result)
    }

    async fn try_poll(&mut self) -> Result<Vec<FunctionStatus>, String> {
        let client = self.client.as_mut().expect("connected by poll");
        match timeout(CONNECT_TIMEOUT, client.status()).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("status timed out".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(f: &str, total: u64, running: u64, workers: u64) -> FunctionStatus {
        FunctionStatus {
            function: f.into(),
            total,
            running,
            worker_count: workers,
        }
    }

    #[test]
    fn sums_over_servers_and_skips_missing() {
        let a = vec![row("f", 5, 1, 2), row("g", 1, 0, 0)];
        let b = vec![row("f", 3, 2, 1)];
        let s = StatusSnapshot::from_rows([Some(a.as_slice()), None, Some(b.as_slice())]);
        assert_eq!(s.servers_answered, 2);
        assert_eq!(
            s.get("f"),
            FunctionCounts {
                total: 8,
                running: 3,
                workers: 3
            }
        );
        assert_eq!(s.get("f").waiting(), 5);
        assert_eq!(s.get("missing"), FunctionCounts::default());
    }

    #[test]
    fn keeps_each_servers_rows() {
        let s = StatusSnapshot::from_servers(vec![
            ("a:1".into(), Some(vec![row("f", 5, 1, 2)])),
            ("b:2".into(), None),
        ]);
        assert_eq!(s.get("f").total, 5);
        assert!(s.servers[0].up() && !s.servers[1].up());
        assert_eq!(
            s.servers[0].rows.as_deref(),
            Some(
                &[(
                    "f".to_string(),
                    FunctionCounts {
                        total: 5,
                        running: 1,
                        workers: 2
                    }
                )][..]
            )
        );
    }
}

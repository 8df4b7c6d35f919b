//! Submitting one run: a background job to the first server, in the
//! configured order, that accepts it. Each run opens its own connections
//! (runs come seconds apart at most, and a fresh connection cannot be one
//! that gearmand dropped since the last run), and every step is bounded in
//! time, so a server that hangs costs one timeout before the next is tried.

use std::time::Duration;

use crate::gearman::client::Client;

use super::spec::ScheduleSpec;

/// How long a server may take to answer a submission once connected
/// (connecting has its own limit, [`crate::gearman::CONNECT_TIMEOUT`]).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A server took the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub server: String,
    pub handle: String,
}

/// Submits `spec`'s job with `unique`; on failure, says why for every server.
pub async fn submit(
    servers: &[String],
    spec: &ScheduleSpec,
    unique: &str,
) -> Result<Accepted, String> {
    let mut reasons = Vec::new();
    for server in servers {
        match submit_to(server, spec, unique).await {
            Ok(handle) => {
                return Ok(Accepted {
                    server: server.clone(),
                    handle,
                })
            }
            Err(reason) => reasons.push(format!("{server}: {reason}")),
        }
    }
    Err(format!("no server accepted it ({})", reasons.join("; ")))
}

async fn submit_to(server: &str, spec: &ScheduleSpec, unique: &str) -> Result<String, String> {
    let mut client = Client::connect(server).await.map_err(|e| e.to_string())?;
    let submitted = client.submit_background_as(
        spec.priority.packet_type(),
        &spec.function,
        unique.as_bytes(),
        spec.workload.clone(),
    );
    match tokio::time::timeout(REPLY_TIMEOUT, submitted).await {
        Ok(Ok(handle)) => Ok(String::from_utf8_lossy(&handle).into_owned()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {}s", REPLY_TIMEOUT.as_secs())),
    }
}

//! Standby replay pause: pause WAL replay once no AccessExclusiveLock is held (so dumps see one
//! consistent state), wait until it is really paused (14+), and resume it.

use std::time::Duration;

use tokio::time::Instant;

use super::catalog;
use crate::exit::{ExitStatus, Failure};
use crate::server::ServerVersion;

/// Replay could not be paused or resumed.
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// The pause query failed.
    #[error("could not pause WAL replay: {0}")]
    Pause(#[source] tokio_postgres::Error),
    /// No moment without an AccessExclusiveLock, or replay never reached `paused`, in time.
    #[error("WAL replay could not be paused within {0:?}")]
    Timeout(Duration),
    /// The resume query failed: replay stays paused until someone resumes it.
    #[error("could not resume WAL replay (run SELECT pg_wal_replay_resume() on the standby): {0}")]
    Resume(#[source] tokio_postgres::Error),
}

impl Failure for StandbyError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            StandbyError::Timeout(_) => ExitStatus::Timeout,
            _ => ExitStatus::Server,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            StandbyError::Timeout(_) => {
                Some("raise dump.pause_timeout (-T), or dump from the primary".into())
            }
            _ => None,
        }
    }
}

/// How often the pause is retried while an AccessExclusiveLock is held (pg_back's interval).
const RETRY: Duration = Duration::from_secs(10);
/// The shortest retry interval, for short pause timeouts.
const MIN_RETRY: Duration = Duration::from_millis(500);

/// The retry interval for `timeout`: pg_back's 10 s, but at least three tries within a short
/// timeout (so `-T 3` retries every second instead of trying once).
pub fn retry_interval(timeout: Duration) -> Duration {
    RETRY.min(timeout / 3).max(MIN_RETRY)
}
/// How often the pause state is read while replay is stopping.
const STATE_POLL: Duration = Duration::from_millis(200);

/// Pauses replay; returns once replay is paused (14+: `pg_get_wal_replay_pause_state()` says
/// `paused`), or an error when `timeout` ends first. Before returning an error after a pause
/// was requested, the caller still has to resume.
pub async fn pause_replay(
    client: &tokio_postgres::Client,
    version: ServerVersion,
    timeout: Duration,
) -> Result<(), StandbyError> {
    let deadline = Instant::now() + timeout;
    let retry = retry_interval(timeout);
    while !catalog::request_replay_pause(client, version)
        .await
        .map_err(StandbyError::Pause)?
    {
        tracing::info!(
            "an AccessExclusiveLock is held on the standby: retrying the replay pause in {retry:?}"
        );
        let now = Instant::now();
        if now >= deadline {
            return Err(StandbyError::Timeout(timeout));
        }
        tokio::time::sleep(retry.min(deadline - now)).await;
    }
    if catalog::reports_replay_pause_state(version) {
        while !catalog::replay_is_paused(client)
            .await
            .map_err(StandbyError::Pause)?
        {
            if Instant::now() >= deadline {
                return Err(StandbyError::Timeout(timeout));
            }
            tokio::time::sleep(STATE_POLL).await;
        }
    }
    tracing::info!("WAL replay paused");
    Ok(())
}

/// Resumes replay.
pub async fn resume_replay(
    client: &tokio_postgres::Client,
    version: ServerVersion,
) -> Result<(), StandbyError> {
    catalog::resume_replay(client, version)
        .await
        .map_err(StandbyError::Resume)?;
    tracing::info!("WAL replay resumed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_interval_shrinks_with_the_timeout() {
        assert_eq!(retry_interval(Duration::from_secs(3600)), RETRY);
        assert_eq!(retry_interval(Duration::from_secs(30)), RETRY);
        assert_eq!(
            retry_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(retry_interval(Duration::from_secs(1)), MIN_RETRY);
        assert_eq!(retry_interval(Duration::ZERO), MIN_RETRY);
    }
}

//! How the EC2 and Route 53 waits poll: below create, destroy and dns,
//! which all wait on AWS.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::{Error, Result};

/// Delays for polling: from 1 s, growing to 5 s, with jitter.
pub(crate) fn poll_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(1.5)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Ask `look` at [`poll_delays`] until it answers `Ok(done)`; an answer
/// `Err(last)` says what it saw. Once `limit` has passed, the error
/// `timed_out(seconds waited, last)`. An error from `look` ends the wait.
pub(crate) async fn poll_until<T, F, Fut>(
    limit: Duration,
    mut look: F,
    timed_out: impl FnOnce(u64, String) -> Error,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    let start = Instant::now();
    let mut delays = poll_delays();
    loop {
        let last = match look().await? {
            Ok(done) => return Ok(done),
            Err(last) => last,
        };
        if start.elapsed() > limit {
            return Err(timed_out(start.elapsed().as_secs(), last));
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

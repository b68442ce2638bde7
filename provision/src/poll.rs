//! How the EC2 and Route 53 waits poll: below create, destroy and dns,
//! which all wait on AWS.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

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

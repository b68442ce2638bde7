//! The stack's bring-up as every script that starts it runs it: one at a
//! time under the bring-up lock, imageup (or compose, then IMAGE's warmup)
//! under a time limit, the same words on failure. Bootstrap's stack step,
//! `update`, and the units the upkeep step installs (the stack at boot, the
//! nightly update) all put these in front of their own script.

/// A library (functions only): bring_up_lock, not_healthy_on_image_network.
pub const BRING_UP_LOCK_SH: &str = include_str!("bring-up-lock.sh");
/// A library (functions only, bring-up-lock.sh in front): run_imageup,
/// run_compose_up.
pub const RUN_IMAGEUP_SH: &str = include_str!("run-imageup.sh");
/// Both, in order: what a script that brings the stack up puts in front.
pub const BRING_UP: [&str; 2] = [BRING_UP_LOCK_SH, RUN_IMAGEUP_SH];

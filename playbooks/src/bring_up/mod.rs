//! The stack's bring-up as every script that starts it runs it: one at a
//! time under the bring-up lock, imageup (or compose, then IMAGE's warmup)
//! under a time limit, the same words on failure. Bootstrap's stack step,
//! `update`, and the units the upkeep step installs (the stack at boot, the
//! nightly update) all put these in front of their own script. An update
//! records what ran first and, when the stack is not healthy within its
//! limit, returns to it (stack-record.sh).

/// A library (functions only): bring_up_lock, not_healthy_on_image_network.
pub const BRING_UP_LOCK_SH: &str = include_str!("bring-up-lock.sh");
/// A library (functions only, bring-up-lock.sh in front): run_imageup,
/// run_compose_up.
pub const RUN_IMAGEUP_SH: &str = include_str!("run-imageup.sh");
/// A library (functions only, both above in front): what runs recorded
/// (the clone's commit, each service's image digest), its images kept from
/// the prune timer, the stack restored to a record pinned by digests
/// (stack_rollback), the stack's health waited for. Updates that roll back.
pub const STACK_RECORD_SH: &str = include_str!("stack-record.sh");
/// All three, in order: what a script that brings the stack up puts in front.
pub const BRING_UP: [&str; 3] = [BRING_UP_LOCK_SH, RUN_IMAGEUP_SH, STACK_RECORD_SH];
/// Where the record is kept on the host (root's, 0700).
pub const STACK_RECORD_DIR: &str = "/var/lib/image-provision/stack";
/// The tag that keeps a rollback's images from the prune timer, followed by
/// `:SERVICE`.
pub const KEEP_TAG: &str = "image-provision/rollback";

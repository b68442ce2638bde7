//! The host side of image-provision: facts, steps that close the gap
//! between the facts and what an IMAGE server needs, and the runner that
//! takes a host through them over SSH.
//!
//! Shell with branches lives in scripts/ (bash, checked by shellcheck in the
//! tests), embedded here and fed to the host on stdin with its inputs as
//! environment variables. Functions more than one script calls live once in
//! scripts/lib/, put in front of each of those scripts ([`shlib`]).

pub mod facts;
pub mod image;
pub mod runner;
pub mod shlib;
pub mod steps;
pub mod verify;

pub use facts::{Facts, Sudo};
pub use runner::{Events, Failure, Outcome, Runner, StepReport};
pub use image::{ImageConfig, Profile};
pub use steps::{Action, Config, Family, Plan, Step, scripts};

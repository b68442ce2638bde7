//! The host steps, one folder each: its typed facts (parsed once from the
//! raw facts, from the keys its own facts script prints), its plan, the
//! commands and shell it sends and the templates it renders. A step reads
//! another step's facts only through that step's typed facts.

pub mod apt;
pub mod docker;
pub mod gpu_check;
pub mod health;
pub mod host;
pub mod layout;
pub mod llm;
pub mod nvidia;
pub mod pull;
pub mod ready;
pub mod reboot;
pub mod stack;
pub mod traefik;
pub mod upkeep;
pub mod webui;

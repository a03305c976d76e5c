//! Running jobs: the reactor that supervises them, the runtime that
//! standalone `Sandbox::spawn` uses, and the `Worker` that manages many.

pub(crate) mod reactor;
pub(crate) mod record;
mod registry;
mod runtime;
mod store;

pub use record::{JobRecord, RecoveryIssue, StatusEvent};
pub use registry::{Retention, WhenFull, Worker, WorkerConfig};
pub(crate) use runtime::{stall, Runtime};

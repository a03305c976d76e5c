//! Running jobs: the reactor that supervises them, the runtime that
//! standalone `Sandbox::spawn` uses, and the `Worker` that manages many.

mod config;
mod pool;
pub(crate) mod reactor;
pub(crate) mod record;
mod registry;
mod runtime;
mod store;

pub use config::{Retention, WhenFull, WorkerConfig};
pub(crate) use pool::delay_made_cells;
pub use pool::{Pool, MAX_POOL_CELLS};
pub use record::{JobRecord, RecoveryIssue, StatusEvent};
pub use registry::Worker;
pub(crate) use runtime::{stall, Runtime};

//! v1 `freezer`: kill without fork races (freeze, kill every process, thaw).

use std::path::Path;
use std::time::Duration;

use crate::cgroup::common;

pub(crate) fn kill(dir: &Path) {
    let state = dir.join("freezer.state");
    let frozen = common::write(&state, "FROZEN").is_ok();
    if frozen {
        // FREEZING until every task has stopped; kill anyway if one is slow to.
        common::wait_until(Duration::from_millis(100), || {
            std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN")
        });
    }
    // A frozen task cannot fork; it dies of the SIGKILL once thawed.
    common::kill_listed(dir);
    if frozen {
        let _ = common::write(&state, "THAWED");
    }
}

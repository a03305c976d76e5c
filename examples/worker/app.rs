//! The service's state: the Worker, the per-job data the HTTP layer adds
//! (legacy units, work directories, collected files), and the thread that
//! follows the Worker's events.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use jobcell::{
    Content, JobId, JobRecord, JobSpec, JobState, Rlimit, Sandbox, StatusEvent, Worker, UNLIMITED,
};

use crate::config::Config;
use crate::metrics::{spawn_error_stage, Metrics};
use crate::request::Legacy;
use crate::retention::{self, Retention};

/// What the service keeps about a job beyond the Worker's record, in
/// `state_dir/http/<id>.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Extra {
    #[serde(default, skip_serializing_if = "Legacy::is_empty")]
    pub legacy: Legacy,
    /// Paths to read back when the job ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect: Vec<String>,
    /// The job's host work directory, until its files are collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// What was read back: per path, its size or why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected: Option<BTreeMap<String, Collected>>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.legacy.is_empty() && self.collect.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Collected {
    File { size: u64 },
    Missing { error: String },
}

/// The collected files' content, in `state_dir/http/<id>.files.json`.
pub type CollectedFiles = BTreeMap<String, Content>;

pub struct App {
    pub worker: Worker,
    pub config: Config,
    /// The cell every job starts from.
    pub base: Sandbox,
    pub metrics: Metrics,
    pub retention: Retention,
    extras: Mutex<HashMap<JobId, Extra>>,
    extras_dir: PathBuf,
    work_dir: PathBuf,
    /// Job ids, sent when a job reaches a final state (for `?wait=`).
    pub ended: tokio::sync::broadcast::Sender<JobId>,
    pub stopping: AtomicBool,
    /// The host check's verdict: ready, and the problems when not.
    pub ready: Mutex<(bool, String)>,
    /// Cluster mode (`WORKER_REDIS_URL`): set once, at start.
    #[cfg(feature = "cluster")]
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    #[cfg(debug_assertions)]
    stalls: TestStalls,
}

impl App {
    pub fn new(worker: Worker, config: Config, ready: (bool, String)) -> std::io::Result<Arc<App>> {
        let extras_dir = config.state_dir.join("http");
        let work_dir = config.state_dir.join("work");
        for d in [&extras_dir, &work_dir] {
            std::fs::create_dir_all(d)?;
        }
        let (ended, _) = tokio::sync::broadcast::channel(1024);
        let app = Arc::new(App {
            worker,
            base: base_sandbox(&config),
            retention: Retention::new(config.retain_jobs, config.retain_age),
            config,
            metrics: Metrics::new(),
            extras: Mutex::new(HashMap::new()),
            extras_dir,
            work_dir,
            ended,
            stopping: AtomicBool::new(false),
            ready: Mutex::new(ready),
            #[cfg(feature = "cluster")]
            cluster: std::sync::OnceLock::new(),
            #[cfg(debug_assertions)]
            stalls: TestStalls::from_env()?,
        });
        let records = app.worker.list();
        app.load_extras(&records);
        app.retention.load(&records);
        Ok(app)
    }

    /// Reads every job's extra data back; finishes collections a previous
    /// run left undone; removes what belongs to no job.
    fn load_extras(&self, records: &[JobRecord]) {
        let known: HashMap<String, &JobRecord> =
            records.iter().map(|r| (r.id.to_string(), r)).collect();
        let Ok(entries) = std::fs::read_dir(&self.extras_dir) else {
            return;
        };
        let mut pending = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|id| !id.ends_with(".files"))
            else {
                continue;
            };
            let (Some(rec), Ok(bytes)) = (known.get(id), std::fs::read(e.path())) else {
                let _ = std::fs::remove_file(e.path());
                continue;
            };
            match serde_json::from_slice::<Extra>(&bytes) {
                Ok(x) => {
                    if x.workdir.is_some() {
                        pending.push(rec.id.clone());
                    }
                    self.extras.lock().insert(rec.id.clone(), x);
                }
                Err(err) => {
                    tracing::warn!(path = %e.path().display(), error = %err, "skipped damaged job data")
                }
            }
        }
        for id in pending {
            self.collect(&id);
        }
        // Work directories of jobs that are gone.
        let used: Vec<PathBuf> = self
            .extras
            .lock()
            .values()
            .filter_map(|x| x.workdir.clone())
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.work_dir) {
            for e in entries.flatten() {
                if !used.contains(&e.path()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// A fresh work directory for a job that has files or collect paths.
    pub fn new_workdir(&self) -> std::io::Result<PathBuf> {
        let dir = tempfile::Builder::new()
            .prefix("job-")
            .tempdir_in(&self.work_dir)?;
        Ok(dir.keep())
    }

    /// Remembers what the HTTP layer adds to a job; collects at once when the
    /// job has already ended (the event thread may have seen it end first).
    pub fn register(&self, id: &JobId, spec: &JobSpec, legacy: Legacy, workdir: Option<PathBuf>) {
        let x = Extra {
            legacy,
            collect: spec.collect.clone(),
            workdir,
            collected: None,
        };
        if x.is_empty() && x.workdir.is_none() {
            return;
        }
        self.store_extra(id, &x);
        self.extras.lock().insert(id.clone(), x);
        if self.worker.get(id).is_some_and(|r| r.state.is_final()) {
            self.collect(id);
        }
    }

    fn store_extra(&self, id: &JobId, x: &Extra) {
        let path = self.extras_dir.join(format!("{id}.json"));
        let tmp = self.extras_dir.join(format!(".{id}.json.tmp"));
        let json = serde_json::to_vec(x).expect("job data serializes");
        let r = write_private(&tmp, &json).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::error!(path = %path.display(), error = %e, "cannot write job data");
        }
    }

    /// Reads the job's collect paths back and removes its work directory;
    /// whoever takes the work directory first does it, once.
    pub fn collect(&self, id: &JobId) {
        let (workdir, paths) = {
            let mut g = self.extras.lock();
            let Some(x) = g.get_mut(id) else { return };
            let Some(w) = x.workdir.take() else { return };
            (w, x.collect.clone())
        };
        let mut spec = JobSpec::new("");
        spec.collect = paths;
        let got = spec.collect(&workdir, self.config.collect_max);
        let mut files = CollectedFiles::new();
        let mut summary = BTreeMap::new();
        for (path, r) in got {
            match r {
                Ok(c) => {
                    self.metrics.collected_bytes.inc_by(c.len() as u64);
                    summary.insert(
                        path.clone(),
                        Collected::File {
                            size: c.len() as u64,
                        },
                    );
                    files.insert(path, c);
                }
                Err(e) => {
                    summary.insert(
                        path,
                        Collected::Missing {
                            error: e.to_string(),
                        },
                    );
                }
            }
        }
        if !files.is_empty() {
            let path = self.extras_dir.join(format!("{id}.files.json"));
            let json = serde_json::to_vec(&files).expect("files serialize");
            if let Err(e) = write_private(&path, &json) {
                tracing::error!(path = %path.display(), error = %e, "cannot store collected files");
            }
        }
        let x = {
            let mut g = self.extras.lock();
            let Some(x) = g.get_mut(id) else { return };
            x.collected = Some(summary);
            x.clone()
        };
        self.store_extra(id, &x);
        if let Err(e) = std::fs::remove_dir_all(&workdir) {
            tracing::warn!(path = %workdir.display(), error = %e, "cannot remove a work directory");
        }
    }

    pub fn extra(&self, id: &JobId) -> Option<Extra> {
        self.extras.lock().get(id).cloned()
    }

    /// The collected files of a job.
    pub fn collected_files(&self, id: &JobId) -> CollectedFiles {
        let path = self.extras_dir.join(format!("{id}.files.json"));
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Forgets the HTTP layer's data of a deleted job.
    pub fn forget(&self, id: &JobId) {
        let x = self.extras.lock().remove(id);
        for suffix in ["json", "files.json"] {
            let _ = std::fs::remove_file(self.extras_dir.join(format!("{id}.{suffix}")));
        }
        if let Some(w) = x.and_then(|x| x.workdir) {
            let _ = std::fs::remove_dir_all(w);
        }
    }

    /// A record as the API shows it: limits in the request's units, and
    /// what was collected.
    pub fn present(&self, rec: &JobRecord) -> Value {
        let mut v = serde_json::to_value(rec).expect("a record serializes");
        if let Some(x) = self.extra(&rec.id) {
            let obj = v.as_object_mut().expect("a record is an object");
            if let Some(Value::Object(l)) = obj.get_mut("limits") {
                x.legacy.present(l);
            }
            if let Some(c) = &x.collected {
                obj.insert(
                    "collected".into(),
                    serde_json::to_value(c).expect("serializes"),
                );
            }
        }
        v
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The sandbox a job is submitted with: as built, but in a debug build
    /// started with `WORKER_TEST_STALL_AT` (see [`TestStalls`]).
    pub fn for_submit(&self, sandbox: Sandbox) -> Sandbox {
        #[cfg(debug_assertions)]
        let sandbox = self.stalls.apply(sandbox);
        sandbox
    }
}

/// Debug builds only, for the test suite: `WORKER_TEST_STALL_AT=exec,build_root`
/// makes the setup of each job in turn stall at the next of these stages
/// until the setup timeout kills it (`jobcell::__private::inject`), so that
/// the tests can make spawns fail for real. It is read once, from the
/// service's own environment at start; nothing in a request reaches it,
/// and a release build has no such hook at all.
#[cfg(debug_assertions)]
struct TestStalls {
    stages: Vec<jobcell::Stage>,
    next: std::sync::atomic::AtomicUsize,
}

#[cfg(debug_assertions)]
impl TestStalls {
    const VAR: &str = "WORKER_TEST_STALL_AT";

    fn from_env() -> std::io::Result<TestStalls> {
        let value = std::env::var(Self::VAR).unwrap_or_default();
        let mut stages = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let stage = crate::metrics::STAGES
                .iter()
                .find(|(_, label)| *label == name)
                .ok_or_else(|| {
                    std::io::Error::other(format!("{}: no stage {name:?}", Self::VAR))
                })?;
            stages.push(stage.0);
        }
        if !stages.is_empty() {
            tracing::warn!(
                stages = %value,
                "{} is set: every job's setup is made to stall (a fault injected for tests)",
                Self::VAR
            );
        }
        Ok(TestStalls {
            stages,
            next: Default::default(),
        })
    }

    fn apply(&self, mut sandbox: Sandbox) -> Sandbox {
        if !self.stages.is_empty() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.stages.len();
            use jobcell::__private::{inject, Fault};
            inject(&mut sandbox, Fault::StallAt(self.stages[i]));
        }
        sandbox
    }
}

/// The cell every job starts from: requests come from strangers, so
/// `Sandbox::untrusted()` (its limits are replaced by each job's, which
/// take the service's defaults), with the per-file cap the configuration
/// sets.
fn base_sandbox(config: &Config) -> Sandbox {
    let mut base = Sandbox::untrusted();
    let cap = config.file_size.unwrap_or(UNLIMITED);
    if cap != jobcell::UNTRUSTED_FILE_SIZE {
        // A later setting of a resource replaces the earlier one.
        base.rlimit(Rlimit::FileSize, cap, cap);
    }
    base
}

/// Writes a file only the service's user can read (collected files may be
/// anything a job produced), like the Worker's own records.
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Follows the Worker's events on one thread: logs each state change,
/// feeds the metrics, collects files of jobs that ended, wakes `?wait=`
/// requests and applies the retention policy.
///
/// It holds the app weakly: the events end when the Worker is dropped, and
/// the lines of the last ones are still written then.
pub fn follow_events(app: Weak<App>, events: crossbeam_channel::Receiver<StatusEvent>) {
    let mut starting: HashMap<JobId, Instant> = HashMap::new();
    for e in events {
        let state = e.state.name();
        match &e.state {
            JobState::Failed { reason } => {
                tracing::warn!(id = %e.id, state = %state, reason = %reason, "job state");
            }
            _ => tracing::info!(id = %e.id, state = %state, "job state"),
        }
        let Some(app) = app.upgrade() else { continue };
        match &e.state {
            JobState::Initializing => {
                starting.insert(e.id.clone(), Instant::now());
            }
            JobState::Running => {
                if let Some(t) = starting.remove(&e.id) {
                    app.metrics.spawn_seconds.observe(t.elapsed().as_secs_f64());
                }
            }
            s if s.is_final() => {
                // Failed while starting: it never reached `running`. (The
                // event, not the record: a job's end is published a moment
                // before its record in memory says so.)
                let ran = starting.remove(&e.id).is_none();
                if let Some(stage) = spawn_error_stage(s, ran) {
                    app.metrics
                        .spawn_errors
                        .get_or_create(&vec![("stage", stage.to_string())])
                        .inc();
                }
                app.collect(&e.id);
                let _ = app.ended.send(e.id.clone());
                app.retention.ended(e.id.clone(), e.time);
                retention::apply(&app);
            }
            _ => {}
        }
    }
}

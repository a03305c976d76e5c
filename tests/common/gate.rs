//! A gate for "all at once" jobs: a FIFO bound into the cell at `/gate/fifo`;
//! a job that starts with [`WAIT`] blocks until the host releases it with one
//! line. Shared by tests/scale.rs and benches/worker.rs.

use std::io::Write;

/// The shell prefix that waits for the gate.
pub const WAIT: &str = "exec 3<>/gate/fifo; read x <&3";

pub struct Gate {
    dir: tempfile::TempDir,
    writer: std::fs::File,
}

impl Gate {
    pub fn new() -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid path; mkfifo touches no other memory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        // Read-write: it never blocks, and keeps the FIFO's lines alive for late openers.
        let writer = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        Gate { dir, writer }
    }

    /// Binds the gate into `sandbox`.
    pub fn bind(&self, sandbox: &mut jobcell::Sandbox) {
        sandbox.bind_ro(self.dir.path(), "/gate");
    }

    /// Lets `n` waiting jobs through.
    pub fn release(&mut self, n: usize) {
        self.writer.write_all(&vec![b'\n'; n]).unwrap();
    }
}

//! A private `redis-server` for one test (or benchmark): a free loopback
//! port, a temporary directory, stopped (SIGKILL) and reaped on drop, also
//! when the test fails. Needs the `redis-server` program (Debian package
//! `redis-server`; `.ci/run` installs it).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    aof: bool,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server with no persistence at all.
    pub fn start() -> RedisServer {
        RedisServer::with(false)
    }

    /// A server with an append-only file synced on every write, so that it
    /// can be killed and restarted without losing anything.
    pub fn durable() -> RedisServer {
        RedisServer::with(true)
    }

    /// A server with no persistence and extra settings (`["--name", "value"]`).
    pub fn with_args(args: &[&str]) -> RedisServer {
        RedisServer::make(false, args)
    }

    fn with(aof: bool) -> RedisServer {
        RedisServer::make(aof, &[])
    }

    fn make(aof: bool, extra: &[&str]) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut s = RedisServer {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
            aof,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server (again, on the same port and directory) and waits
    /// until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.args(&self.extra);
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start redis-server ({e}): install it (Debian: apt-get install redis-server)"
            ),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when a server answers PING on `port`.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

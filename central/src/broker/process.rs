//! The Mosquitto child process and its supervisor.
//!
//! One dedicated thread spawns `mosquitto -c CONF`, forwards reloads (SIGHUP), restarts it
//! with a capped backoff when it exits on its own, and stops it (SIGTERM, then SIGKILL) on
//! shutdown. The thread, not a tokio worker, is the child's parent on purpose: the child asks
//! the kernel for SIGTERM when its parent *thread* dies (`PR_SET_PDEATHSIG`), so a `kill -9`
//! of central ends Mosquitto too instead of leaving it holding the port, and a thread that
//! lives exactly as long as the supervision keeps that from firing early.
//!
//! Mosquitto's stderr is read line by line into central's log (warnings as WARN, connection
//! chatter as DEBUG, the rest as INFO); the last lines are kept for start-up error messages.

use super::BrokerError;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Mosquitto's log lines kept for error messages.
const LOG_TAIL: usize = 40;
/// A child that ran this long before exiting restarts without the accumulated backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stopping Mosquitto gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The line Mosquitto logs on SIGHUP, just before it re-reads its files in the same turn of
/// its (single-threaded) event loop, so any connection it reads after that line meets the new
/// accounts.
const RELOAD_LINE: &str = "reloading config";
/// A reload not confirmed by then is signalled again: a SIGHUP that lands while Mosquitto is
/// still re-reading for an earlier one is folded into it and may not see the newest files.
const RELOAD_RESIGNAL: Duration = Duration::from_millis(500);
/// How long a caller waits for a reload to be confirmed before going on without it.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

enum Control {
    Reload,
    Stop,
}

/// What the supervisor shares with the rest of central.
#[derive(Default)]
pub struct State {
    /// The running child's pid, if one runs.
    pub pid: Option<u32>,
    /// How many times a child exited without being asked to.
    pub unexpected_exits: u32,
    pub log_tail: VecDeque<String>,
    /// How many times Mosquitto logged that it is re-reading its files.
    pub reloads_logged: u64,
}

/// A supervised Mosquitto.
pub struct Supervisor {
    control: Mutex<Sender<Control>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

/// `mosquitto` from PATH, else Debian's `/usr/sbin/mosquitto` (not on every user's PATH).
pub fn find_mosquitto() -> Result<PathBuf, BrokerError> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    candidates.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    candidates
        .into_iter()
        .map(|dir| dir.join("mosquitto"))
        .find(|file| is_executable(file))
        .ok_or(BrokerError::NotInstalled)
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Supervisor {
    /// Spawns the first child and the supervising thread.
    pub fn start(binary: PathBuf, conf: PathBuf) -> Result<Supervisor, BrokerError> {
        let state = Arc::new(Mutex::new(State::default()));
        let (control, commands) = channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("mosquitto-supervisor".into())
            .spawn(move || supervise(&binary, &conf, &commands, &thread_state))
            .map_err(|e| BrokerError::Start(format!("cannot start the supervisor thread: {e}")))?;
        Ok(Supervisor {
            control: Mutex::new(control),
            thread: Mutex::new(Some(thread)),
            state,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.state.lock().ok().and_then(|s| s.pid)
    }

    pub fn unexpected_exits(&self) -> u32 {
        self.state.lock().map(|s| s.unexpected_exits).unwrap_or(0)
    }

    /// Mosquitto's last log lines, oldest first.
    pub fn log_tail(&self) -> String {
        self.state
            .lock()
            .map(|s| s.log_tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Asks the running Mosquitto to re-read its password and ACL files.
    fn reload(&self) {
        if let Ok(control) = self.control.lock() {
            let _ = control.send(Control::Reload);
        }
    }

    /// Asks for a reload and blocks (call off the runtime) until Mosquitto logs that it
    /// re-read its files, signalling again every 500 ms; `false` when 5 s pass without that,
    /// e.g. while it is being restarted (a new child reads the current files anyway).
    pub fn reload_and_wait(&self) -> bool {
        let logged = || self.state.lock().map(|s| s.reloads_logged).unwrap_or(0);
        let before = logged();
        let deadline = Instant::now() + RELOAD_WAIT;
        loop {
            self.reload();
            let resignal = (Instant::now() + RELOAD_RESIGNAL).min(deadline);
            while Instant::now() < resignal {
                if logged() > before {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if logged() > before {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Stops Mosquitto and the supervisor; blocks until both are gone (call off the runtime).
    pub fn stop(&self) {
        if let Ok(control) = self.control.lock() {
            let _ = control.send(Control::Stop);
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(1u32 << failures.min(8))
        .min(Duration::from_secs(30))
}

fn supervise(binary: &Path, conf: &Path, commands: &Receiver<Control>, state: &Arc<Mutex<State>>) {
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        match spawn(binary, conf, state) {
            Ok(mut child) => {
                if let Ok(mut s) = state.lock() {
                    s.pid = Some(child.id());
                }
                tracing::info!(pid = child.id(), "mosquitto started");
                let exited = watch(&mut child, commands);
                if let Ok(mut s) = state.lock() {
                    s.pid = None;
                }
                match exited {
                    None => return,
                    Some(status) => {
                        if let Ok(mut s) = state.lock() {
                            s.unexpected_exits += 1;
                        }
                        if started.elapsed() >= HEALTHY_RUN {
                            failures = 0;
                        }
                        let pause = backoff(failures);
                        if failures >= 5 {
                            tracing::error!(%status, restart_in_ms = pause.as_millis() as u64,
                                "mosquitto keeps exiting; agents cannot sync until it stays up (see its log lines above)");
                        } else {
                            tracing::warn!(%status, restart_in_ms = pause.as_millis() as u64,
                                "mosquitto exited unexpectedly; restarting it");
                        }
                        failures = failures.saturating_add(1);
                        if !pause_unless_stopped(commands, pause) {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                let pause = backoff(failures);
                failures = failures.saturating_add(1);
                tracing::error!(error = %e, binary = %binary.display(), "cannot start mosquitto; retrying");
                if let Ok(mut s) = state.lock() {
                    s.unexpected_exits += 1;
                    s.log_tail.push_back(format!("cannot start mosquitto: {e}"));
                }
                if !pause_unless_stopped(commands, pause) {
                    return;
                }
            }
        }
    }
}

/// Waits `pause`; `false` when a stop arrived meanwhile (reloads are moot: a new child reads
/// the current files anyway).
fn pause_unless_stopped(commands: &Receiver<Control>, pause: Duration) -> bool {
    let deadline = Instant::now() + pause;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match commands.recv_timeout(left) {
            Ok(Control::Reload) => {}
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
            Err(RecvTimeoutError::Timeout) => return true,
        }
    }
}

/// Runs until the child exits (`Some(status)`) or a stop is requested (`None`, child ended).
fn watch(child: &mut Child, commands: &Receiver<Control>) -> Option<std::process::ExitStatus> {
    loop {
        match commands.recv_timeout(Duration::from_millis(50)) {
            Ok(Control::Reload) => {
                tracing::debug!(pid = child.id(), "asking mosquitto to reload its accounts");
                signal(child.id(), libc::SIGHUP);
            }
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                terminate(child);
                return None;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot check on mosquitto; stopping it");
                terminate(child);
                return Some(std::process::ExitStatus::default());
            }
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet, so it is still ours.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn terminate(child: &mut Child) {
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            tracing::info!("mosquitto stopped");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("mosquitto did not stop within 5 s of SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn(binary: &Path, conf: &Path, state: &Arc<Mutex<State>>) -> std::io::Result<Child> {
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in central's terminal reaches central, which then
        // stops Mosquitto in order, instead of both at once.
        .process_group(0);
    // SAFETY: getpid is async-signal-safe and called before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Central died between fork and prctl: nobody would signal us later.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("central exited during the start"));
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    if let Some(stderr) = child.stderr.take() {
        let state = state.clone();
        let _ = std::thread::Builder::new()
            .name("mosquitto-log".into())
            .spawn(move || forward_log(stderr, &state));
    }
    Ok(child)
}

fn forward_log(stderr: std::process::ChildStderr, state: &Mutex<State>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        log_line(&line);
        if let Ok(mut s) = state.lock() {
            if s.log_tail.len() >= LOG_TAIL {
                s.log_tail.pop_front();
            }
            if is_reload_line(&line) {
                s.reloads_logged += 1;
            }
            s.log_tail.push_back(line);
        }
    }
}

/// Whether Mosquitto logged a reload; a leading `SECONDS: ` timestamp (its default, though
/// central's config turns it off) is skipped.
fn is_reload_line(line: &str) -> bool {
    let text = match line.split_once(": ") {
        Some((stamp, rest)) if stamp.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    };
    text.to_ascii_lowercase().starts_with(RELOAD_LINE)
}

/// Per-connection lines (a fleet reconnecting writes thousands) go to DEBUG, including TLS
/// failures of single clients; Mosquitto's own errors and warnings to WARN; the rest (start,
/// stop, reloads) to INFO.
fn log_line(line: &str) {
    let lower = line.to_ascii_lowercase();
    if lower.starts_with("new connection")
        || lower.starts_with("new client")
        || lower.starts_with("client ")
        || lower.starts_with("socket error")
        || lower.starts_with("openssl error")
    {
        tracing::debug!(target: "mosquitto", "{line}");
    } else if lower.starts_with("error") || lower.starts_with("warning") {
        tracing::warn!(target: "mosquitto", "{line}");
    } else {
        tracing::info!(target: "mosquitto", "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Mosquitto on a free loopback port with an anonymous listener and no files.
    fn supervised(dir: &Path) -> Supervisor {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "log_dest stderr\nlog_type all\nallow_anonymous true\nlistener {port} 127.0.0.1\n"
            ),
        )
        .unwrap();
        let supervisor = Supervisor::start(find_mosquitto().unwrap(), conf).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{}", supervisor.log_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
        supervisor
    }

    #[test]
    fn a_reload_returns_once_mosquitto_has_reread_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervised(dir.path());
        for round in 1..=3 {
            assert!(supervisor.reload_and_wait(), "{}", supervisor.log_tail());
            let logged = supervisor.state.lock().unwrap().reloads_logged;
            assert!(logged >= round, "round {round}: {logged} reloads logged");
        }
        assert_eq!(
            supervisor.unexpected_exits(),
            0,
            "{}",
            supervisor.log_tail()
        );
    }

    #[test]
    fn reload_lines_are_told_apart_from_client_chatter() {
        assert!(is_reload_line("Reloading config."));
        assert!(is_reload_line("1796150680: Reloading config."));
        assert!(!is_reload_line(
            "New client connected from 127.0.0.1 as reloading config"
        ));
        assert!(!is_reload_line("x: Reloading config."));
    }

    #[test]
    fn a_reload_nobody_answers_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervised(dir.path());
        // A stopped Mosquitto cannot confirm anything.
        signal(supervisor.pid().unwrap(), libc::SIGSTOP);
        let started = Instant::now();
        assert!(!supervisor.reload_and_wait());
        assert!(started.elapsed() >= RELOAD_WAIT);
        signal(supervisor.pid().unwrap(), libc::SIGCONT);
    }
}

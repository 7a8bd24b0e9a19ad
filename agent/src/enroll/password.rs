//! The router password for `enroll`: from `EASYISP_ROUTER_PASSWORD`, or typed at a terminal
//! prompt with echo off. Never from the command line (shell history, `ps`).

use easyisp_protocol::Secret;

/// The router password: `EASYISP_ROUTER_PASSWORD`, else a prompt without echo on a terminal.
pub fn router_password() -> Result<Secret<String>, String> {
    if let Some(value) = std::env::var_os("EASYISP_ROUTER_PASSWORD") {
        return value
            .into_string()
            .map(Secret::new)
            .map_err(|_| "EASYISP_ROUTER_PASSWORD is not valid UTF-8".to_string());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(
            "set EASYISP_ROUTER_PASSWORD to the router user's password (no terminal to ask on)"
                .into(),
        );
    }
    let password =
        prompt_hidden("Router password: ").map_err(|e| format!("reading the password: {e}"))?;
    if password.is_empty() {
        return Err("the router password is empty".into());
    }
    Ok(Secret::new(password))
}

/// Reads one line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    let _echo = EchoOff::new();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(_echo);
    stderr.write_all(b"\n")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns terminal echo off on stdin while alive.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        #[cfg(unix)]
        {
            // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios that tcgetattr fills;
            // on failure nothing is changed and nothing is restored.
            unsafe {
                let mut term: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut term) != 0 {
                    return EchoOff { saved: None };
                }
                let saved = term;
                term.c_lflag &= !libc::ECHO;
                term.c_lflag |= libc::ECHONL;
                if libc::tcsetattr(0, libc::TCSANOW, &term) != 0 {
                    return EchoOff { saved: None };
                }
                EchoOff { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        EchoOff {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved {
            // SAFETY: restores the attributes read from the same fd in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

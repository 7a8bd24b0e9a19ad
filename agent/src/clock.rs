//! Whether the system clock can be trusted to cut customers off.
//!
//! A Raspberry Pi has no battery clock: after a power cut it boots with a stale time until NTP
//! sets it. The kernel knows whether NTP has synchronised the clock (`adjtimex` reports
//! `TIME_ERROR` while it has not); the agent asks it before enforcing expiry.

/// Asks the kernel whether the system clock is NTP-synchronised.
#[cfg(target_os = "linux")]
pub fn kernel_says_synchronised() -> bool {
    // SAFETY: `adjtimex` with `modes = 0` only reads the kernel's time state into the struct we
    // own; a zeroed `timex` is a valid argument.
    let state = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut tx)
    };
    state >= 0 && state != libc::TIME_ERROR
}

#[cfg(not(target_os = "linux"))]
pub fn kernel_says_synchronised() -> bool {
    true
}

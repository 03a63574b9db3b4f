//! The host's side of the control port, as a state machine without I/O.
//!
//! Whatever carries the port (QEMU's socket, spin's emulator imports, a native
//! run) feeds the guest's bytes in with [`ControlSession::feed`] and hands the
//! bytes of [`ControlSession::take_input`] to the guest.

use std::collections::VecDeque;

use crate::{READY, Report, RunSpec};

/// The longest line accepted from the guest; a longer one is a protocol error.
const MAX_LINE: usize = 64 * 1024;

/// One container's conversation on the control port.
#[derive(Debug, Clone)]
pub struct ControlSession {
    spec_line: Option<Vec<u8>>,
    line: Vec<u8>,
    to_guest: VecDeque<u8>,
    ready: bool,
    report: Option<Report>,
}

impl ControlSession {
    /// A session that will send `spec` once the guest is ready.
    pub fn new(spec: &RunSpec) -> ControlSession {
        let mut line = serde_json::to_vec(spec).expect("a run spec always serializes");
        line.push(b'\n');
        ControlSession {
            spec_line: Some(line),
            line: Vec::new(),
            to_guest: VecDeque::new(),
            ready: false,
            report: None,
        }
    }

    /// Takes bytes the guest wrote on the control port.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                } else if self.report.is_none() {
                    self.report = Some(Report::Error("control line too long".into()));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if line.trim() == READY && !self.ready {
                self.ready = true;
                if let Some(spec) = self.spec_line.take() {
                    self.to_guest.extend(spec);
                }
            } else if let Some(report) = Report::parse(&line)
                && self.report.is_none()
            {
                self.report = Some(report);
            }
        }
    }

    /// Moves bytes for the guest into `buf`; returns how many.
    pub fn take_input(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.to_guest.len());
        for (dst, src) in buf.iter_mut().zip(self.to_guest.drain(..n)) {
            *dst = src;
        }
        n
    }

    /// Whether bytes for the guest are waiting.
    pub fn has_input(&self) -> bool {
        !self.to_guest.is_empty()
    }

    /// Whether the guest has booted and asked for its spec.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The guest's final report, once it came.
    pub fn report(&self) -> Option<&Report> {
        self.report.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_spec_after_ready_and_reads_the_report() {
        let spec = RunSpec::command(["true"]);
        let mut s = ControlSession::new(&spec);
        let mut buf = [0u8; 4096];
        assert_eq!(s.take_input(&mut buf), 0, "nothing before ready");
        s.feed(b"rea");
        assert!(!s.is_ready());
        s.feed(b"dy\n");
        assert!(s.is_ready());
        let n = s.take_input(&mut buf);
        let sent: RunSpec = serde_json::from_slice(&buf[..n - 1]).unwrap();
        assert_eq!(sent, spec);
        assert_eq!(buf[n - 1], b'\n');
        s.feed(b"ready\n");
        assert_eq!(s.take_input(&mut buf), 0, "the spec goes once");
        assert!(s.report().is_none());
        s.feed(b"exit 42\n");
        assert_eq!(s.report(), Some(&Report::Exit(42)));
        s.feed(b"exit 1\n");
        assert_eq!(
            s.report(),
            Some(&Report::Exit(42)),
            "the first report stands"
        );
    }

    #[test]
    fn overlong_lines_are_an_error() {
        let mut s = ControlSession::new(&RunSpec::command(["true"]));
        s.feed(&vec![b'x'; MAX_LINE + 1]);
        assert!(matches!(s.report(), Some(Report::Error(_))));
    }
}

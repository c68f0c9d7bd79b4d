//! A probe runner for unit tests: canned answers by program name, and a record of what ran.
use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::Runner;
use crate::supervisor::reaper::{Captured, Ended, RunError};

/// What a program does when run.
#[derive(Clone)]
pub enum Reply {
    Prints {
        code: i32,
        stdout: &'static str,
        stderr: &'static str,
    },
    /// Does not finish within the timeout.
    Hangs,
}

/// Answers by the program's file name; a program without a reply prints `fake 1.2.3`.
#[derive(Default)]
pub struct Fake {
    pub replies: HashMap<&'static str, Reply>,
    /// File names and arguments of what ran, in order.
    pub ran: Mutex<Vec<String>>,
}

impl Fake {
    pub fn with(replies: &[(&'static str, Reply)]) -> Fake {
        Fake {
            replies: replies.iter().cloned().collect(),
            ran: Mutex::default(),
        }
    }

    pub fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }
}

impl Runner for Fake {
    fn run_probe(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> impl Future<Output = Result<Captured, RunError>> + Send {
        let program = std::path::Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.ran
            .lock()
            .unwrap()
            .push(format!("{program} {}", args.join(" ")));
        let reply = self.replies.get(program.as_str()).cloned();
        async move {
            match reply {
                Some(Reply::Hangs) => Err(RunError::Timeout {
                    program,
                    timeout,
                    stderr: Vec::new(),
                }),
                Some(Reply::Prints {
                    code,
                    stdout,
                    stderr,
                }) => Ok(Captured {
                    ended: Ended::Code(code),
                    stdout: stdout.into(),
                    stderr: stderr.into(),
                }),
                None => Ok(Captured {
                    ended: Ended::Code(0),
                    stdout: b"fake 1.2.3\n".to_vec(),
                    stderr: Vec::new(),
                }),
            }
        }
    }
}

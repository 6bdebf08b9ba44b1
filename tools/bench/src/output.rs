//! The functions' output: kept off the terminal (thousands of JSON log lines and EMF documents
//! would flood it, and its speed would enter the figures), with each function's last lines kept
//! to explain a failure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use local_gateway::logs;
use tokio::sync::broadcast::error::RecvError;

/// Lines kept per function.
const KEPT: usize = 20;

static LAST: OnceLock<Mutex<HashMap<String, VecDeque<String>>>> = OnceLock::new();

fn last() -> &'static Mutex<HashMap<String, VecDeque<String>>> {
    LAST.get_or_init(Mutex::default)
}

/// Installs a quiet log sink as the process's and keeps what it receives. Call once, inside the
/// runtime, before any environment starts.
pub fn keep_quietly() {
    logs::set_global(logs::Sink::quiet());
    let mut lines = logs::subscribe();
    tokio::spawn(async move {
        loop {
            match lines.recv().await {
                Ok(line) => {
                    let Some(id) = &line.function else { continue };
                    let Ok(mut kept) = last().lock() else { return };
                    let mine = kept.entry(id.clone()).or_default();
                    if mine.len() == KEPT {
                        mine.pop_front();
                    }
                    mine.push_back(line.text.clone());
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The last lines the function `id` wrote (or Lambda wrote about it).
pub fn last_lines(id: &str) -> Vec<String> {
    last()
        .lock()
        .ok()
        .and_then(|kept| kept.get(id).map(|l| l.iter().cloned().collect()))
        .unwrap_or_default()
}

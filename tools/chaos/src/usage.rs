//! CPU time of each part of the local stack during a run, from `/proc`: moto, the gateway
//! itself, the functions' execution environments (the gateway's children) and the run's own
//! client side. The part that used most of its share of the machine is the bottleneck.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (Linux's `USER_HZ`, 100 on every architecture
/// Linux runs with a stable ABI).
const TICKS: f64 = 100.0;

/// `(utime + stime, cutime + cstime)` of `pid`, in seconds.
fn times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0.0) / TICKS;
    Some((get(11) + get(12), get(13) + get(14)))
}

/// Children of `parent`, from `/proc`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// The process serving `moto` (its `moto_server.py` launcher with the endpoint's port).
fn moto_pid(moto: &str) -> Option<u32> {
    let port = moto.rsplit(':').next()?.trim_end_matches('/').to_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a.ends_with("moto_server.py")) && args.contains(&port)
        })
}

#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    gateway: f64,
    functions: f64,
}

#[derive(Debug, Default)]
struct Totals {
    /// Finished gateways (before restarts).
    done: Sample,
    /// The running gateway's latest sample.
    current: Sample,
    moto_start: Option<f64>,
    moto_now: f64,
}

/// Samples CPU time once a second until [`Usage::finish`].
#[derive(Debug)]
pub struct Usage {
    gateway: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    totals: Arc<Mutex<Totals>>,
    own_start: f64,
}

fn sample(gateway: u32) -> Option<Sample> {
    let (own, reaped) = times(gateway)?;
    let live: f64 = children(gateway)
        .into_iter()
        .filter_map(times)
        .map(|(own, reaped)| own + reaped)
        .sum();
    Some(Sample {
        gateway: own,
        functions: reaped + live,
    })
}

impl Usage {
    /// Starts sampling the moto at `moto` and the gateway `gateway`.
    pub fn start(moto: &str, gateway: u32) -> Self {
        let moto = moto_pid(moto);
        let totals = Arc::new(Mutex::new(Totals {
            moto_start: moto.and_then(times).map(|(own, reaped)| own + reaped),
            current: sample(gateway).unwrap_or_default(),
            ..Totals::default()
        }));
        // What the gateway used before the run (provisioning, start-up) is not the run's.
        {
            let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
            t.done = Sample {
                gateway: -t.current.gateway,
                functions: -t.current.functions,
            };
        }
        let (pid, stop) = (
            Arc::new(AtomicU32::new(gateway)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s, t) = (pid.clone(), stop.clone(), totals.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = sample(p.load(Ordering::Relaxed));
                let m = moto.and_then(times).map(|(own, reaped)| own + reaped);
                let mut totals = t.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(now) = now {
                    totals.current = now;
                }
                if let Some(m) = m {
                    totals.moto_now = m;
                }
                drop(totals);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Self {
            gateway: pid,
            stop,
            totals,
            own_start: times(std::process::id()).map(|(o, _)| o).unwrap_or(0.0),
        }
    }

    /// The gateway was restarted as `pid`: what the old one used (up to its last sample)
    /// is kept.
    pub fn gateway_restarted(&self, pid: u32) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        t.done.gateway += t.current.gateway;
        t.done.functions += t.current.functions;
        t.current = Sample::default();
        self.gateway.store(pid, Ordering::Relaxed);
    }

    /// Stops sampling; CPU seconds by part: `moto`, `gateway`, `functions`, `client`.
    pub fn finish(&self, gateway: u32) -> BTreeMap<String, f64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(now) = sample(gateway) {
            t.current = now;
        }
        let own = times(std::process::id()).map(|(o, _)| o).unwrap_or(0.0);
        let mut out = BTreeMap::new();
        out.insert("gateway".into(), t.done.gateway + t.current.gateway);
        out.insert("functions".into(), t.done.functions + t.current.functions);
        if let Some(start) = t.moto_start {
            out.insert("moto".into(), t.moto_now - start);
        }
        out.insert("client".into(), own - self.own_start);
        out
    }
}

//! CPU time from `/proc` (Linux): the whole process's, for CPU-per-GiB figures, and that of the
//! threads of one runtime, for CPU per message of one side of a benchmark.

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU seconds of this process (all threads), or 0 where `/proc` is absent.
pub(crate) fn process_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0.0, |stat| stat_cpu_secs(&stat))
}

/// User plus system CPU seconds of process `pid` (all its threads), or 0 where `/proc` is
/// absent or the process is gone.
pub(crate) fn pid_cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |stat| stat_cpu_secs(&stat))
}

/// User plus system CPU seconds of the threads of this process named `name` (a runtime's
/// workers share a name), or 0 where `/proc` is absent.
pub(crate) fn threads_cpu_secs(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|stat| stat_cpu_secs(&stat))
        .sum()
}

/// utime + stime of one `/proc/.../stat` line, in seconds.
fn stat_cpu_secs(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::process_cpu_secs();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(super::process_cpu_secs() >= before);
        assert!(super::pid_cpu_secs(std::process::id()) >= before);
        // This test's thread is named after the test; a name nobody has counts nothing.
        assert_eq!(super::threads_cpu_secs("no-such-thread-name"), 0.0);
    }
}

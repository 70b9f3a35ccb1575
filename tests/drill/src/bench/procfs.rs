//! What `/proc` says about a process: its CPU time (`utime + stime` of
//! `/proc/PID/stat`, in clock ticks), its parent and state, its memory
//! (`VmRSS`, `VmHWM` of `/proc/PID/status`, KiB) and its open files.

use crate::harness::Abort;
use std::process::Command;

/// The fields of `/proc/PID/stat` a benchmark reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    /// User plus system CPU time, in clock ticks.
    pub ticks: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself, so the fields are counted
/// from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).copied();
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    Some(Stat {
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        ticks: utime + stime,
    })
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU ticks of `pid` so far (0 when it is gone).
pub fn ticks(pid: u32) -> u64 {
    stat(pid).map_or(0, |s| s.ticks)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// `VmRSS`, `VmHWM`, ... of `pid` in KiB (0 when it is gone).
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| parse_status_kib(&t, key))
        .unwrap_or(0)
}

/// The open files of `pid` (mostly connections, for a proxy).
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether `pid` is a child of `parent` that has not exited (a zombie has
/// exited: it only waits to be reaped).
pub fn is_running_child(pid: u32, parent: u32) -> bool {
    stat(pid).is_some_and(|s| s.ppid == parent && s.state != 'Z')
}

/// The running children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_running_child(*pid, parent))
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of [`Stat::ticks`].
pub fn clock_ticks_per_second() -> Result<u64, Abort> {
    let out = crate::harness::command_output(Command::new("getconf").arg("CLK_TCK"))?;
    out.trim()
        .parse()
        .map_err(|_| Abort(format!("getconf CLK_TCK printed {out:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/PID/stat` of an HAProxy after a second of wrk.
    const HAPROXY_STAT: &str = "11136 (haproxy) S 11132 11132 17031 0 -1 4194304 1459 0 0 0 41 270 0 0 20 0 1 0 1193104 102817792 3881 18446744073709551615 94290141384704 94290143334761 140721465748976 0 0 0 0 6146 7348741 1 0 0 17 1 0 0 0 0 0 94290144053984 94290144198632 94290678996992 140721465756168 140721465756189 140721465756189 140721465757670 0\n";

    #[test]
    fn cpu_ticks_are_user_plus_system_time() {
        let stat = parse_stat(HAPROXY_STAT).expect("parses");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 11132,
                ticks: 41 + 270
            }
        );
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let odd = HAPROXY_STAT.replace("(haproxy)", "(a (b) c)");
        assert_eq!(parse_stat(&odd).map(|s| s.ticks), Some(311));
        let zombie = HAPROXY_STAT.replace(") S ", ") Z ");
        assert_eq!(parse_stat(&zombie).map(|s| s.state), Some('Z'));
        assert_eq!(parse_stat("11136 (haproxy) S 1"), None, "truncated");
    }

    #[test]
    fn memory_lines_of_proc_status_are_read_in_kib() {
        let status = "Name:\thaproxy\nVmPeak:\t  100412 kB\nVmHWM:\t   15524 kB\nVmRSS:\t   15524 kB\nRssAnon:\t    2060 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(15524));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(15524));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib(status, "Vm"), None, "names match whole");
    }

    #[test]
    fn this_process_is_running_and_not_its_own_child() {
        let me = std::process::id();
        let stat = stat(me).expect("/proc/self");
        assert!(stat.state != 'Z' && stat.ticks < 1 << 40);
        assert!(!is_running_child(me, me));
        assert!(open_files(me) > 0);
        assert!(status_kib(me, "VmRSS") > 0);
    }
}

//! Parsing `strace -f -y -o LOG` output into calls, merging `<unfinished ...>` / `resumed>`.

use std::collections::HashMap;

/// One completed system call.
#[derive(Debug, Clone)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    pub args: String,
    pub ret: String,
    pub injected: bool,
}

/// All calls in the log, in completion order.
pub fn parse(log: &str) -> Vec<Call> {
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let full = if rest.starts_with("<... ") {
            let Some(i) = rest.find("resumed>") else {
                continue;
            };
            let head = pending.remove(&pid).unwrap_or_default();
            format!("{head}{}", &rest[i + "resumed>".len()..])
        } else if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        } else {
            rest.to_string()
        };
        let Some(open) = full.find('(') else { continue };
        let name = full[..open].to_string();
        // strace pads the return value into a column: `call(args)      = ret`.
        let (body, ret) = match full.rfind(" = ") {
            Some(eq) => {
                let close = full[..eq].rfind(')').filter(|&c| c > open).unwrap_or(eq);
                (&full[open + 1..close], full[eq + 3..].trim().to_string())
            }
            None => (&full[open + 1..], String::new()),
        };
        out.push(Call {
            pid,
            name,
            args: body.to_string(),
            injected: ret.contains("(INJECTED)"),
            ret,
        });
    }
    out
}

/// The calls made by the traced program's main thread (the first pid in the log).
pub fn main_thread(calls: &[Call]) -> Vec<Call> {
    let Some(first) = calls.first() else {
        return Vec::new();
    };
    calls
        .iter()
        .filter(|c| c.pid == first.pid)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_unfinished_calls() {
        let log = "10 execve(\"x\", [], 0x0 /* 1 vars */) = 0\n\
                   10 fsync(6</d/#1 (deleted)> <unfinished ...>\n\
                   11 gettid() = 11\n\
                   10 <... fsync resumed>)      = -1 EIO (Input/output error) (INJECTED)\n\
                   10 +++ exited with 1 +++\n";
        let c = parse(log);
        let m = main_thread(&c);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].name, "fsync");
        assert!(m[1].injected);
        assert!(m[1].args.starts_with("6</d/"));
    }
}

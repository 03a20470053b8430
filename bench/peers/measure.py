"""Runs a command and measures it: wall time, CPU seconds (user + system) of the process and of
every process it starts (Flink's JVM, ...), and peak resident memory of the whole process tree.

Usage: measure.py OUT.json [--timeout S] -- COMMAND ARGS...

CPU: the exact figure from wait4() (the process plus the children it waited for), or, when
larger, the sum over the tree of each process's last /proc sample (children that are never
waited for, or that outlive their parent, are only seen this way). Peak RSS: the largest sum of
VmRSS over the tree seen in 50 ms samples, or wait4()'s ru_maxrss (largest single process) if
larger. Everything goes to OUT.json; the command's exit status is passed on.
"""
import json, os, signal, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def sample(pid):
    """{pid: (cpu seconds, rss bytes)} for pid and its descendants."""
    kids = children_map()
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            # fields[11], [12] = utime, stime (stat fields 14, 15); [21] = rss pages (field 24)
            out[p] = ((int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE)
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(kids.get(p, []))
    return out


def main():
    argv = sys.argv[1:]
    out_path = argv.pop(0)
    timeout = None
    if argv[0] == "--timeout":
        timeout = float(argv[1])
        argv = argv[2:]
    assert argv[0] == "--"
    cmd = argv[1:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True)
    last_cpu, peak_rss, timed_out = {}, 0, False
    while True:
        try:
            wpid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == proc.pid:
            break
        snap = sample(proc.pid)
        for p, (cpu, _) in snap.items():
            last_cpu[p] = max(cpu, last_cpu.get(p, 0.0))
        peak_rss = max(peak_rss, sum(r for _, r in snap.values()))
        if timeout and time.monotonic() - start > timeout and not timed_out:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(3)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    wall = time.monotonic() - start
    # Leftovers of the tree (a JVM outliving its launcher): counted above, now stopped.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    waited = ru.ru_utime + ru.ru_stime
    sampled = sum(last_cpu.values())
    code = os.waitstatus_to_exitcode(status)
    res = {
        "cmd": cmd,
        "wall_s": round(wall, 3),
        "cpu_s": round(max(waited, sampled), 3),
        "cpu_waited_s": round(waited, 3),
        "cpu_sampled_s": round(sampled, 3),
        "peak_rss_mib": round(max(peak_rss, ru.ru_maxrss * 1024) / 2**20, 1),
        "processes": len(last_cpu),
        "exit_code": code,
        "timed_out": timed_out,
    }
    with open(out_path, "w") as f:
        json.dump(res, f)
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()

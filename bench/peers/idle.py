"""What a long-running process costs while it has nothing to do: starts a command, lets it settle,
then counts its CPU time (user + system, all threads) and its threads' context switches over a span,
and stops it with SIGTERM.

Usage: idle.py OUT.json [--settle S] [--span S] -- COMMAND ARGS...

For `streamctl run` on inputs it has already read to their end (its checkpoints are there), so the
job starts, finds nothing new and waits: what it does meanwhile (polls, requests to the broker) is its
idle cost. Writes {"cpu_ms_per_s", "switches_per_s", "settle_s", "span_s", "cmd", "exit"} to OUT.json.
"""
import json, os, signal, subprocess, sys, time

from measure import sample


def cpu_s(pid):
    """CPU seconds of the process and its descendants, as measure.py counts them."""
    return sum(cpu for cpu, _ in sample(pid).values())


def switches(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def main():
    args = sys.argv[1:]
    out, settle, span = args.pop(0), 8.0, 10.0
    while args and args[0] != "--":
        flag, value = args.pop(0), float(args.pop(0))
        if flag == "--settle":
            settle = value
        elif flag == "--span":
            span = value
        else:
            sys.exit(f"idle.py: unknown option {flag}")
    cmd = args[1:]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    time.sleep(settle)
    if p.poll() is not None:
        sys.exit(f"idle.py: the command ended before it was measured (exit {p.returncode})")
    c0, s0, t0 = cpu_s(p.pid), switches(p.pid), time.monotonic()
    time.sleep(span)
    c1, s1, t1 = cpu_s(p.pid), switches(p.pid), time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    elapsed = t1 - t0
    result = {
        "cpu_ms_per_s": round(1000 * (c1 - c0) / elapsed, 1),
        "switches_per_s": round((s1 - s0) / elapsed),
        "settle_s": settle,
        "span_s": round(elapsed, 1),
        "cmd": cmd,
        "exit": code,
    }
    with open(out, "w") as f:
        json.dump(result, f)
    sys.exit(code)


if __name__ == "__main__":
    main()

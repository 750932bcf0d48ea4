"""VM exit reasons of a KVM guest, counted from the ``kvm:kvm_exit`` tracepoint.

KVM's statistics (QMP ``query-stats``) count exits by a few kinds; the tracepoint
gives the hardware's own exit reason (VMX basic exit reason or SVM exit code) for
every exit. Each guest's trials are traced in a tracefs instance of the guest's own
on its host (``instances/hvbench-PID-XXXX``), filtered to the guest's vCPU threads,
so they neither see nor disturb any other tracing: with a histogram trigger where the
kernel has them (exact counts kept in the kernel, cheap), else by recording the
events in the instance's buffer and counting them on the host (events lost to a
full buffer are counted and said). The instance is made at the guest's first traced
trial and removed when the guest is destroyed: making and removing one allocates and
frees ring buffers, ~60 ms each in a nested lab, twice per trial otherwise; the
histogram trigger is added at each trial's start and removed at its end. Reason
names come from the tracepoint's own format, as the running kernel prints them. It
needs root and a mounted tracefs; where either is missing, the figures say so.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Any

from ..collect import Collector, Scripted, Unavailable
from ..errors import TrialError
from ..hosts.base import Host
from ..scripts import Reply, Script

#: runs on the host with $1 = action, $2 = the guest's token, $3 = pidfile (fixed
#: text; no guest or config text is ever part of it; the filter is built from numeric
#: tids). The instance is named after the guest's pid, so one never released (hvbench
#: killed) is swept once that guest is gone; "release" removes the token's instances.
_SCRIPT = r"""
T=/sys/kernel/tracing
[ -d "$T/events" ] || { echo "tracefs is not mounted at $T"; exit 3; }
spec="hist:keys=exit_reason,isa:size=512"
# builtins only where a process per line or thread would do (each costs milliseconds
# in a nested lab, and this runs twice per trial)
hist_trigger() {  # sets t: the hist trigger as the kernel lists it (filter included)
    t=
    while IFS= read -r line; do
        case "$line" in hist*) t=${line% \[active\]}; return 0;; esac
    done < "$1/trigger"
    return 1
}
untrigger() {  # remove the hist trigger exactly as the kernel lists it
    hist_trigger "$1" 2>/dev/null && echo "!$t" > "$1/trigger"
}
remove() {  # an instance, whatever it was left doing
    untrigger "$1/events/kvm/kvm_exit" 2>/dev/null
    echo 0 > "$1/events/kvm/kvm_exit/enable" 2>/dev/null
    rmdir "$1" 2>/dev/null
}
if [ "$1" = release ]; then
    for old in "$T"/instances/hvbench-*-"$2"; do [ -d "$old" ] && remove "$old"; done
    exit 0
fi
read -r p < "$3" || [ -n "$p" ] || { echo "no pid in $3"; exit 3; }
case "$p" in *[!0-9]*|"") echo "no pid in $3"; exit 3;; esac
d="$T/instances/hvbench-$p-$2"
e="$d/events/kvm/kvm_exit"
case "$1" in
start)
    [ -d "$T/events/kvm/kvm_exit" ] || {
        echo "no kvm:kvm_exit tracepoint (kvm not loaded)"; exit 3; }
    for old in "$T"/instances/hvbench-*; do  # of a guest that is gone
        [ -d "$old" ] || continue
        q=${old##*/hvbench-}; q=${q%%-*}
        [ -d "/proc/$q" ] || remove "$old"
    done
    made=
    [ -d "$d" ] || { mkdir "$d" || exit 3; made=1; }
    f=""
    for t in /proc/$p/task/*; do
        read -r c < "$t/comm" 2>/dev/null || continue
        case "$c" in "CPU "*) f="$f${f:+ || }common_pid == ${t##*/}";; esac
    done
    if [ -z "$f" ]; then  # no vCPU-named threads: every thread of the process
        for t in /proc/$p/task/*; do f="$f${f:+ || }common_pid == ${t##*/}"; done
    fi
    if [ -e "$e/hist" ]; then
        untrigger "$e"  # of a trial that never stopped (hvbench killed)
        echo "$spec if $f" > "$e/trigger" || { [ -z "$made" ] || rmdir "$d"; exit 3; }
        echo mode=hist
    else
        [ -z "$made" ] || echo 16384 > "$d/buffer_size_kb"
        echo 0 > "$e/enable"
        : > "$d/trace"  # the events of earlier trials
        echo "$f" > "$e/filter" && echo 1 > "$e/enable" || {
            [ -z "$made" ] || rmdir "$d"; exit 3; }
        echo mode=buffer
    fi
    ;;
stop)
    if [ -e "$e/hist" ] && hist_trigger "$e" 2>/dev/null; then
        cat "$e/hist"
        # removed, not kept and cleared for the next trial: the kernel clears an
        # active histogram while its events may still insert into it, and a nested
        # guest froze for 87 s in a run that cleared
        untrigger "$e"
    else
        echo 0 > "$e/enable"
        sed -n 's/.*kvm_exit: vcpu [0-9]* reason \(.*\) rip 0x.*/\1/p' "$d/trace" |
            sort | uniq -c | sed 's/^ */count /'
        cat "$d"/per_cpu/cpu*/stats 2>/dev/null | sed -n 's/^overrun: /overrun /p'
    fi
    ;;
esac
"""

_HIST_LINE = re.compile(r"\{\s*exit_reason:\s*(\d+),\s*isa:\s*(\d+)\s*\}\s*hitcount:\s*(\d+)")
_SYMBOL = re.compile(r'\{\s*(0x[0-9a-fA-F]+|-?\d+)(?:\s*\+\s*(\d+))?\s*,\s*"([^"]+)"\s*\}')


def reason_names(format_text: str) -> dict[tuple[int, int], str]:
    """(isa, exit reason) -> name, from the kvm_exit format's print fmt: its first
    symbol table is VMX's (isa 1), its second SVM's (isa 2)."""
    start = format_text.find("print fmt:")
    tables = format_text[start:].split("__print_symbolic(")[1:3]
    names: dict[tuple[int, int], str] = {}
    for isa, table in zip((1, 2), tables, strict=False):
        for base, offset, name in _SYMBOL.findall(table):
            names[(isa, (int(base, 0) + int(offset or 0)) & 0xFFFFFFFF)] = name
    return names


def parse_counts(text: str, names: dict[tuple[int, int], str]) -> tuple[dict[str, int], int]:
    """Counts by reason name from the stop action's output, and events lost."""
    counts: dict[str, int] = {}
    lost = 0
    for line in text.splitlines():
        hist = _HIST_LINE.search(line)
        if hist:
            reason, isa, hits = (int(g) for g in hist.groups())
            key = reason & 0xFFFF if isa == 1 else reason
            name = names.get((isa, key), f"reason {reason:#x}")
            counts[name] = counts.get(name, 0) + hits
        elif line.startswith("count "):
            number, _, name = line[6:].partition(" ")
            if number.isdigit() and name:
                counts[name] = counts.get(name, 0) + int(number)
        elif line.startswith("overrun ") and line[8:].strip().isdigit():
            lost += int(line[8:])
    return counts, lost


class KvmExitReasons(Scripted):
    """Exits of the guest's vCPU threads during the trial, by hardware exit reason."""

    name = "kvm_exit_reasons"

    def __init__(self, host: Host, pidfile: str, names: dict[tuple[int, int], str],
                 token: str):
        self.host = host
        self.pidfile = pidfile
        self._token = token  # the guest's: its instance is kept from trial to trial
        self._mode = ""
        self._names = names  # from the host's kvm_exit format, read once per guest

    def _checked(self, reply: Reply) -> str:
        if reply.exit_code != 0:
            raise TrialError(f"exit reasons not traced on {self.host.label}: "
                             f"{reply.output.strip()[:200] or 'no tracefs'}")
        return reply.output

    # the script reads the guest's pid itself: no command of its own for that
    def begin(self) -> Script:
        return Script(_SCRIPT, ("start", self._token, self.pidfile))

    def began(self, reply: Reply) -> None:
        modes = [line[5:] for line in self._checked(reply).splitlines()
                 if line.startswith("mode=")]
        if not modes:
            raise TrialError(f"exit reasons not traced on {self.host.label}: "
                             f"{reply.output.strip()[:200] or 'the script said nothing'}")
        self._mode = modes[-1]

    def end(self) -> Script:
        return Script(_SCRIPT, ("stop", self._token, self.pidfile))

    def ended(self, reply: Reply) -> dict[str, Any]:
        if not self._mode:
            raise ValueError("stopped before it was started")
        counts, lost = parse_counts(self._checked(reply), self._names)
        found: dict[str, Any] = {"counts": dict(sorted(counts.items(),
                                                       key=lambda kv: -kv[1])),
                                 "method": "histogram trigger" if self._mode == "hist"
                                 else "trace buffer"}
        if lost:
            found["lost"] = lost  # a full buffer: the counts are a lower bound
        return found


class ExitTracing:
    """One guest's exit-reason tracing on its host: whether it can trace (asked once),
    a collector per trial, all in one tracefs instance per QEMU process, removed by
    ``release`` when the guest is destroyed."""

    def __init__(self, host: Host):
        self.host = host
        self.token = secrets.token_hex(4)
        self._setup: tuple[dict[tuple[int, int], str], str] | None = None
        self._used = False

    def collector(self, pidfile: str) -> Collector:
        """The trial's collector for the QEMU whose pid is in ``pidfile``, or why not."""
        if self._setup is None:  # root and tracefs
            self._setup = trace_setup(self.host)
        names, why_not = self._setup
        if why_not:
            return Unavailable("kvm_exit_reasons", why_not)
        self._used = True
        return KvmExitReasons(self.host, pidfile, names, self.token)

    def release(self) -> None:
        """Remove the guest's instances (best effort: the host may be gone; one left
        is swept by the next guest traced there once its QEMU is gone)."""
        if self._used:
            with contextlib.suppress(TrialError):
                self.host.run(["sh", "-c", _SCRIPT, "sh", "release", self.token], timeout=60)
            self._used = False


def trace_setup(host: Host) -> tuple[dict[tuple[int, int], str], str]:
    """The exit reasons' names on the host (its kvm_exit format), and why exit reasons
    cannot be traced there ('' when they can)."""
    if host.run(["id", "-u"], timeout=30).stdout.strip() != "0":
        return {}, "tracing the kvm_exit tracepoint needs root on the host"
    text = host.native().read_file("/sys/kernel/tracing/events/kvm/kvm_exit/format")
    if text is None:
        return {}, ("tracefs is not mounted at /sys/kernel/tracing, or kvm has no kvm_exit "
                    "tracepoint (mount -t tracefs nodev /sys/kernel/tracing)")
    return reason_names(text), ""

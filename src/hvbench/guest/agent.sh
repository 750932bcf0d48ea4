#!/bin/sh
# hvbench guest agent (busybox sh): serves the host's requests on a port.
# Usage: agent.sh PORT SCRATCH-STATE WORK-DIR   (runs in the directory commands use)
#
# Protocol (one request at a time, lines of ASCII; host side: agent.py):
#   host -> guest:  @@REQ <id> <RUN|PUT> <timeout-s> <nlines> <sha256> <arg>
#                   followed by <nlines> lines of base64 payload
#     RUN payload: the argv, NUL-separated; executed as an argv, never as shell text
#     RUN <arg> "K": the kernel's counters (/proc/uptime, /proc/stat) are read just
#                   before and just after the command and sent with the reply, so a
#                   trial's accounting costs no request of its own
#     PUT payload: file content; <arg> is the destination path in base64
#   guest -> host:  @@HVB-READY <guest-ns> <uptime-s> <scratch-state>   (once)
#                   @@HVB-BEGIN <id> <rc> <elapsed-ns> <stdout-bytes> <stderr-bytes> <sha256> [<kernel-bytes>]
#                   base64 lines of stdout, stderr, then (RUN K) the counters
#                   before, a line "--", the counters after
#                   @@HVB-END <id>
#   rc 124 with a TIMEOUT note on stderr: the command was killed at its time limit.
port=$1
scratch=$2
w=$3
export w  # the command wrappers below run in child shells

# Each process costs milliseconds in a nested guest (tens of them per request once),
# so values are read with builtins: a helper sets a variable, never $(...).
now_ns() {  # sets ns: CLOCK_MONOTONIC, from the "now at N nsecs" line near the top
    ns=
    while read -r a b c _; do
        [ "$a $b" = "now at" ] && { ns=$c; return; }
    done < /proc/timer_list
}

stty -F "$port" raw -echo 2>/dev/null

exec 3<>"$port"
now_ns
read -r up _ < /proc/uptime
printf '@@HVB-READY %s %s %s\n' "$ns" "$up" "$scratch" >&3

digest() {  # sets got: the SHA-256 of file $1
    sha256sum < "$1" > $w/hvb.sum
    read -r got _ < $w/hvb.sum
}

reply() {  # id rc elapsed [kernel counters file]
    cat $w/hvb.out $w/hvb.err $4 > $w/hvb.payload
    digest $w/hvb.payload
    wc -c $w/hvb.out $w/hvb.err $4 > $w/hvb.sizes  # a line each, then a total
    { read -r out _; read -r err _; read -r counted _; } < $w/hvb.sizes
    {
        printf '@@HVB-BEGIN %s %s %s %s %s %s%s\n' "$1" "$2" "$3" "$out" "$err" "$got" \
            "${4:+ $counted}"
        base64 < $w/hvb.payload
        printf '@@HVB-END %s\n' "$1"
    } >&3
}

while read -r tag id kind limit nlines sum arg <&3; do
    [ "$tag" = "@@REQ" ] || continue
    : > $w/hvb.req
    i=0
    while [ "$i" -lt "$nlines" ] && read -r line <&3; do
        echo "$line" >> $w/hvb.req
        i=$((i + 1))
    done
    : > $w/hvb.out
    base64 -d < $w/hvb.req > $w/hvb.body 2>$w/hvb.err
    digest $w/hvb.body
    if [ "$got" != "$sum" ]; then
        echo "hvbench-agent: request $id arrived corrupted" > $w/hvb.err
        reply "$id" 125 0
        continue
    fi
    case "$kind" in
    RUN)
        rm -f $w/hvb.rc $w/hvb.expired
        kernel=
        if [ "$arg" = K ]; then
            kernel=$w/hvb.kernel
            cat /proc/uptime /proc/stat > $kernel
        fi
        now_ns
        start=$ns
        # A new session, so a time-out kills the command with all its children.
        setsid sh -c 'xargs -0 sh -c '"'"'"$@" < /dev/null; echo $? > $w/hvb.rc'"'"' sh < $w/hvb.body' \
            < /dev/null > $w/hvb.out 2> $w/hvb.err &
        pid=$!
        ( sleep "$limit"; : > $w/hvb.expired; kill -9 -- "-$pid" 2>/dev/null ) &
        watchdog=$!
        wait "$pid"
        status=$?
        kill "$watchdog" 2>/dev/null
        now_ns
        end=$ns
        if [ -n "$kernel" ]; then
            echo -- >> $kernel
            cat /proc/uptime /proc/stat >> $kernel
        fi
        if [ -s $w/hvb.rc ]; then
            read -r rc < $w/hvb.rc
        elif [ -e $w/hvb.expired ]; then
            rc=124
            echo "hvbench-agent: TIMEOUT after $limit s" >> $w/hvb.err
        else  # the wrapper itself died (a signal): say so, never call it a time-out
            rc=$status
            echo "hvbench-agent: DIED with wait status $status" >> $w/hvb.err
        fi
        reply "$id" "$rc" "$((end - start))" $kernel
        ;;
    PUT)
        path=$(echo "$arg" | base64 -d)
        : > $w/hvb.err
        if cp $w/hvb.body "$path" 2>$w/hvb.err; then rc=0; else rc=1; fi
        reply "$id" "$rc" 0
        ;;
    *)
        echo "hvbench-agent: unknown request kind $kind" > $w/hvb.err
        reply "$id" 126 0
        ;;
    esac
done

#!/bin/sh
# hvbench guest init and agent (busybox sh). PID 1 of the appliance.
#
# Brings the system up, then serves requests from the host on the agent port.
# Protocol (one request at a time, lines of ASCII; see agent.py):
#   host -> guest:  @@REQ <id> <RUN|PUT> <timeout-s> <nlines> <sha256> <arg>
#                   followed by <nlines> lines of base64 payload
#     RUN payload: the argv, NUL-separated; executed as an argv, never as shell text
#     PUT payload: file content; <arg> is the destination path in base64
#   guest -> host:  @@HVB-BEGIN <id> <rc> <elapsed-ns> <stdout-bytes> <stderr-bytes> <sha256>
#                   base64 lines of stdout followed by stderr
#                   @@HVB-END <id>
#   rc 124 with a TIMEOUT note on stderr: the command was killed at its time limit.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

now_ns() { sed -n 's/^now at \([0-9]*\) nsecs$/\1/p;/^now at/q' /proc/timer_list; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /run /scratch /root /var/tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
echo "hvbench-init $(now_ns)" > /dev/console

# Options from the kernel command line: hvbench.KEY=VALUE
opt() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^hvbench\.$1=//p" | tail -n 1; }

if [ "$(opt panic)" = "1" ]; then  # used by the tests: a guest whose init crashes
    echo c > /proc/sysrq-trigger
fi

while read -r module; do
    [ -n "$module" ] && insmod "/lib/modules/$module" 2>/dev/console
done < /etc/hvbench/modules

ip link set lo up
net=$(opt net)  # ADDRESS/PREFIX,GATEWAY
if [ -n "$net" ] && [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add "${net%,*}" dev eth0
    ip route add default via "${net#*,}"
fi

disk=$(opt disk)
scratch=tmpfs
if [ -n "$disk" ] && [ -b "/dev/$disk" ]; then
    if mount -t ext4 "/dev/$disk" /scratch 2>/dev/console \
        || { mke2fs -q "/dev/$disk" && mount "/dev/$disk" /scratch; }; then
        scratch="$disk"
    fi
fi
echo "hvbench-scratch: $scratch" > /dev/console
mkdir -p /scratch/hvbench

port=""
want=$(opt port)
for entry in /sys/class/virtio-ports/*; do
    [ -e "$entry/name" ] && [ "$(cat "$entry/name")" = "$want" ] && port="/dev/${entry##*/}"
done
[ -z "$port" ] && [ -e "/dev/$want" ] && port="/dev/$want"
if [ -z "$port" ]; then
    echo "hvbench-agent: no port $want" > /dev/console
    echo o > /proc/sysrq-trigger
fi
stty -F "$port" raw -echo 2>/dev/null

exec 3<>"$port"
cd /scratch/hvbench || exit 1
printf '@@HVB-READY %s %s %s\n' "$(now_ns)" "$(cut -d' ' -f1 /proc/uptime)" "$scratch" >&3

reply() {  # id rc elapsed
    cat /tmp/hvb.out /tmp/hvb.err > /tmp/hvb.payload
    sum=$(sha256sum < /tmp/hvb.payload | cut -d' ' -f1)
    {
        printf '@@HVB-BEGIN %s %s %s %s %s %s\n' "$1" "$2" "$3" \
            "$(wc -c < /tmp/hvb.out)" "$(wc -c < /tmp/hvb.err)" "$sum"
        base64 < /tmp/hvb.payload
        printf '@@HVB-END %s\n' "$1"
    } >&3
}

while read -r tag id kind limit nlines sum arg <&3; do
    [ "$tag" = "@@REQ" ] || continue
    : > /tmp/hvb.req
    i=0
    while [ "$i" -lt "$nlines" ] && read -r line <&3; do
        echo "$line" >> /tmp/hvb.req
        i=$((i + 1))
    done
    : > /tmp/hvb.out
    base64 -d < /tmp/hvb.req > /tmp/hvb.body 2>/tmp/hvb.err
    if [ "$(sha256sum < /tmp/hvb.body | cut -d' ' -f1)" != "$sum" ]; then
        echo "hvbench-agent: request $id arrived corrupted" > /tmp/hvb.err
        reply "$id" 125 0
        continue
    fi
    case "$kind" in
    RUN)
        rm -f /tmp/hvb.rc
        start=$(now_ns)
        # A new session, so a time-out kills the command with all its children.
        setsid sh -c 'xargs -0 sh -c '"'"'"$@" < /dev/null; echo $? > /tmp/hvb.rc'"'"' sh < /tmp/hvb.body' \
            < /dev/null > /tmp/hvb.out 2> /tmp/hvb.err &
        pid=$!
        ( sleep "$limit"; kill -9 -- "-$pid" 2>/dev/null ) &
        watchdog=$!
        wait "$pid"
        kill "$watchdog" 2>/dev/null
        end=$(now_ns)
        if [ -s /tmp/hvb.rc ]; then
            rc=$(cat /tmp/hvb.rc)
        else
            rc=124
            echo "hvbench-agent: TIMEOUT after $limit s" >> /tmp/hvb.err
        fi
        reply "$id" "$rc" "$((end - start))"
        ;;
    PUT)
        path=$(echo "$arg" | base64 -d)
        : > /tmp/hvb.err
        if cp /tmp/hvb.body "$path" 2>/tmp/hvb.err; then rc=0; else rc=1; fi
        reply "$id" "$rc" 0
        ;;
    *)
        echo "hvbench-agent: unknown request kind $kind" > /tmp/hvb.err
        reply "$id" 126 0
        ;;
    esac
done
echo "hvbench-agent: port closed" > /dev/console
echo o > /proc/sysrq-trigger

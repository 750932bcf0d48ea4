#!/bin/sh
# hvbench guest init (busybox sh), PID 1 of the appliance: brings the system up
# (filesystems, modules, network, scratch disk), then runs the agent on its port.
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
net=$(opt net)  # ADDRESS/PREFIX,GATEWAY (or "+" for ",": Xen's module list splits at commas)
if [ -n "$net" ] && [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add "${net%%[,+]*}" dev eth0
    ip route add default via "${net##*[,+]}"
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

# A lab host (a nested hypervisor host) serves SSH instead of running the agent.
[ -x /etc/hvbench/lab.sh ] && exec /etc/hvbench/lab.sh

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
cd /scratch/hvbench || exit 1
sh /etc/hvbench/agent.sh "$port" "$scratch" /tmp
echo "hvbench-agent: port closed" > /dev/console
echo o > /proc/sysrq-trigger

#!/bin/sh
# hvbench lab host (busybox sh, PID 1 after init.sh): a nested hypervisor host that
# hvbench reaches over SSH like any other host. Kernel modules, network and the
# scratch tmpfs are set up by init.sh; this starts the SSH server and stays up.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
hostname "$(cat /etc/hostname)"
mkdir -p /run/sshd /var/empty /root/.local/share /scratch/data /scratch/cache
# hvbench's files on this host (guest disks, images) live on the lab's disk
ln -s /scratch/data /root/.local/share/hvbench
ln -s /scratch/cache /root/.cache
chmod 0755 /run/sshd
rm -rf /var/run; ln -s /run /var/run
mkdir -p /var/log /run/lock; ln -sfn /run/lock /var/lock
[ -e /dev/kvm ] && chmod 0660 /dev/kvm
# tracefs: hvbench counts a KVM guest's exit reasons from the kvm:kvm_exit tracepoint
mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
# the outer host's guest images, read-only (hosts/lab.py: SHARE_TAG, SHARE_MOUNT); without
# it hvbench copies images in over SSH. Images are named by their content and never
# change, so the page cache may keep them (cache=loose): without it each page xl maps
# is a 9p round trip (a 41 MiB ramdisk took 4 s longer) and every boot reads again
mkdir -p /mnt/hvbench-images
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hvimages \
    /mnt/hvbench-images \
    2>/dev/null || rmdir /mnt/hvbench-images
if [ -f /etc/hvbench/xen-dom0 ]; then  # the Xen lab: dom0's toolstack
    xen=/usr/lib/xen-4.17/bin
    ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
    mount -t xenfs xenfs /proc/xen
    mkdir -p /run/xen /run/xenstored /var/log/xen/console /var/lib/xen
    export XENSTORED_ROOTDIR=/run/xenstored
    $xen/xenstored --pid-file /run/xenstore.pid
    i=0
    while ! xenstore-read -s / >/dev/null 2>&1 && [ $i -lt 300 ]; do i=$((i+1)); sleep 0.1; done
    $xen/xen-init-dom0 > /var/log/xen/init-dom0.log 2>&1
    $xen/xenconsoled --pid-file /run/xenconsoled.pid --log=guest \
        --log-dir=/var/log/xen/console
fi
# a bridge for the guests' network, no uplink: the lab host and its guests (Xen's
# vifs; QEMU's taps with network = 'bridge', vhost-net among them; hosts/lab.py)
if read -r bridge address < /etc/hvbench/guest-bridge; then
    ip link add "$bridge" type bridge && ip addr add "$address" dev "$bridge" \
        && ip link set "$bridge" up
fi
if /usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log; then
    echo "hvbench-lab-ready $(cat /etc/hostname) kvm=$([ -e /dev/kvm ] && echo yes || echo no)" > /dev/console
else
    echo "hvbench-lab-failed: sshd did not start" > /dev/console
    cat /var/log/sshd.log > /dev/console 2>/dev/null
    echo o > /proc/sysrq-trigger
fi
while :; do sleep 3600; done

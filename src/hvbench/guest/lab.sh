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
mkdir -p /var/run /var/log
[ -e /dev/kvm ] && chmod 0660 /dev/kvm
if /usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log; then
    echo "hvbench-lab-ready $(cat /etc/hostname) kvm=$([ -e /dev/kvm ] && echo yes || echo no)" > /dev/console
else
    echo "hvbench-lab-failed: sshd did not start" > /dev/console
    cat /var/log/sshd.log > /dev/console 2>/dev/null
    echo o > /proc/sysrq-trigger
fi
while :; do sleep 3600; done

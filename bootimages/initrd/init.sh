#!/bin/sh
# SystemImager autoinstall /init (PID 1, busybox sh): set up the basics, run
# si-autoinstall, and never exit: whatever happens, a shell stays on the console.
export PATH=/usr/sbin:/usr/bin
export SI_DIR=/tmp/si SI_LOG=/tmp/si/install.log
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /mnt "$SI_DIR"
mount -t devpts devpts /dev/pts
echo 4 > /proc/sys/kernel/printk   # warnings only, so our messages stay readable
ln -sf /proc/self/mounts /etc/mtab

. /usr/lib/systemimager/functions.sh
# The kernel passes unknown VAR=value words to init's environment and the
# shell may preset HOSTNAME; configuration comes only from si_collect_config.
for v in $SI_CFG_VARS; do unset "$v"; done
si_say "autoinstall environment $(cat /etc/systemimager/build 2>/dev/null), kernel $(uname -r)"

si-autoinstall
rc=$?

while :; do
    if [ "$rc" = 0 ]; then
        echo "SystemImager: the install script finished. Type 'reboot' to boot the installed system."
    else
        echo "SystemImager: the autoinstall did not complete; see above. Type 'si-autoinstall' to retry."
    fi
    setsid cttyhack sh -l
    rc=1
done

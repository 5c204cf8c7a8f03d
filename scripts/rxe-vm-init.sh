#!/bin/busybox sh
# shellcheck shell=dash
# rxe-vm-init.sh — /init of the initramfs that scripts/rxe-vm.sh boots.
# Runs in the QEMU guest as PID 1 under busybox; not meant to be run by hand.
#
# It loads the modules listed in /modules.load (virtio + 9p + soft-RoCE, in
# dependency order, resolved on the host from modules.dep); mounts the host's
# / read-only (9p tag host0), fresh tmpfs on /tmp, /var/tmp, /run and
# /dev/shm, the caller's working directory writable over the same path (tag
# pxcwd) and the per-run control directory (tag pxrun, /run/px in the
# chroot); keeps the unpacked tools (the path in /px/keep) visible even when
# they lie under /tmp; brings up rxe0 on dummy0 with 10.200.0.1; runs
# /run/px/cmd.sh in a chroot into the host's root, records its exit status in
# /run/px/status and powers off. A failure before the command runs is written
# to /run/px/error (the host then exits 125 and shows the console log).
#
# The command's stdout/stderr go to the serial ports ttyS1 and ttyS2 (through
# pipes unless the host's end is a terminal), which the host copies to its
# own stdout and stderr; ttyS0 is the kernel console (a log file on the host).

/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot
NET_ADDR=10.200.0.1/24
px_up=
P9=trans=virtio,version=9p2000.L,msize=262144

say() { echo "rxe-vm-init: [$(cut -d' ' -f1 /proc/uptime)] $*" >/dev/console; }

halt_now() {
    say "powering off"
    sync
    umount "$R/run/px" 2>/dev/null
    umount /px 2>/dev/null
    poweroff -f
    sleep 10
    exit 1 # PID 1 exiting panics the kernel; panic=-1 + -no-reboot ends QEMU
}

fail() {
    say "FAILED: $*"
    [ -n "$px_up" ] && echo "$*" >/px/error
    halt_now
}

mount_base() {
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
}

load_modules() {
    while read -r m; do
        [ -n "$m" ] || continue
        insmod "/$m" || fail "insmod $m"
    done </modules.load
}

mount_shares() {
    mount -t 9p -o "$P9,cache=mmap" pxrun /px || fail "mounting the run share (9p pxrun)"
    px_up=1
    mount -t 9p -o "$P9,ro,cache=loose" host0 "$R" || fail "mounting the host's / (9p host0)"
    # the unpacked tools may lie under /tmp, which gets a tmpfs: keep them
    keep=$(cat /px/keep 2>/dev/null)
    if [ -n "$keep" ] && [ -d "$R$keep" ]; then mount -o bind "$R$keep" /keep; else keep=; fi
    mount -t tmpfs -o mode=1777 tmpfs "$R/tmp" || fail "tmpfs on /tmp"
    mount -t tmpfs -o mode=755 tmpfs "$R/run" || fail "tmpfs on /run"
    if [ -d "$R/var/tmp" ]; then mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp"; fi
    mount -t proc proc "$R/proc" || fail "proc in the chroot"
    mount -t sysfs sysfs "$R/sys" || fail "sysfs in the chroot"
    mount -t devtmpfs devtmpfs "$R/dev" || fail "devtmpfs in the chroot"
    mkdir -p "$R/dev/shm" "$R/dev/pts" "$R/run/px"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || fail "tmpfs on /dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
    # what udev/systemd would make: bash's process substitution needs /dev/fd
    ln -sfn /proc/self/fd "$R/dev/fd"
    ln -sfn /proc/self/fd/0 "$R/dev/stdin"
    ln -sfn /proc/self/fd/1 "$R/dev/stdout"
    ln -sfn /proc/self/fd/2 "$R/dev/stderr"
    mount -o bind /px "$R/run/px" || fail "bind-mounting the run share"
    if [ -n "$keep" ]; then
        mkdir -p "$R$keep" 2>/dev/null
        mount -o move /keep "$R$keep" || fail "moving $keep back into place"
    fi
    cwd=$(cat /px/cwd)
    mkdir -p "$R$cwd" 2>/dev/null
    mount -t 9p -o "$P9,cache=mmap" pxcwd "$R$cwd" ||
        fail "mounting the working directory $cwd writable (9p pxcwd)"
}

# mknod_from_sysfs SYSFS_DEV_FILE NODE — create NODE if devtmpfs did not
mknod_from_sysfs() {
    [ -e "$2" ] && return 0
    [ -r "$1" ] || return 1
    mkdir -p "${2%/*}"
    mknod -m 666 "$2" c "$(cut -d: -f1 "$1")" "$(cut -d: -f2 "$1")"
}

bring_up_rxe() {
    [ -n "$(cat "$R/etc/hostname" 2>/dev/null)" ] && hostname "$(cat "$R/etc/hostname")"
    ip link set lo up || fail "ip link set lo up"
    ip link set dummy0 up || fail "ip link set dummy0 up (dummy module loaded?)"
    ip addr add "$NET_ADDR" dev dummy0 || fail "ip addr add $NET_ADDR dev dummy0"
    [ -x "$R/usr/bin/rdma" ] || [ -x "$R/sbin/rdma" ] ||
        fail "the host has no rdma tool (apt-get install iproute2)"
    chroot "$R" rdma link add rxe0 type rxe netdev dummy0 >/dev/console 2>&1 ||
        fail "rdma link add rxe0 type rxe netdev dummy0"
    [ -d /sys/class/infiniband/rxe0 ] || fail "rxe0 missing from /sys/class/infiniband"
    mknod_from_sysfs /sys/class/infiniband_verbs/uverbs0/dev "$R/dev/infiniband/uverbs0" ||
        fail "no /dev/infiniband/uverbs0"
    mknod_from_sysfs /sys/class/misc/rdma_cm/dev "$R/dev/infiniband/rdma_cm" ||
        fail "no /dev/infiniband/rdma_cm"
    say "rxe0 up on dummy0 ($NET_ADDR)"
}

# wait_gone PID SECONDS — wait for PID to exit, kill it after SECONDS
wait_gone() {
    n=0
    while kill -0 "$1" 2>/dev/null; do
        [ "$n" -ge "$(($2 * 10))" ] && { kill "$1" 2>/dev/null; break; }
        usleep 100000
        n=$((n + 1))
    done
}

# stream N — set $to and $pid for the command's output to ttySN: the port
# itself when the host's end is a terminal (/px/ttyN), else a pipe into it,
# as when the command's output is piped on the host
stream() {
    stty -F "/dev/ttyS$1" raw -echo || fail "stty ttyS$1"
    to=/dev/ttyS$1 pid=
    [ -e "/px/tty$1" ] && return 0
    mkfifo "/pipe$1" || fail "mkfifo /pipe$1"
    cat "/pipe$1" >"/dev/ttyS$1" &
    to=/pipe$1 pid=$!
}

run_command() {
    stream 1
    out=$to out_pid=$pid
    stream 2
    err=$to err_pid=$pid
    ulimit -l unlimited
    say "running the command"
    chroot "$R" /bin/bash /run/px/cmd.sh </dev/null >"$out" 2>"$err"
    rc=$?
    say "command exited with status $rc"
    # a daemon the command left behind may still hold the pipes
    [ -n "$out_pid" ] && wait_gone "$out_pid" 3
    [ -n "$err_pid" ] && wait_gone "$err_pid" 1
    echo "$rc" >/px/status
}

mount_base
exec </dev/console >/dev/console 2>&1
say "loading modules"
load_modules
mount_shares
bring_up_rxe
run_command
halt_now

#!/bin/busybox sh
# The init of rxe-vm.sh's guest (busybox, in the initramfs): reach the
# host's files over 9p, bring up soft-RoCE on a dummy interface, run the
# job in a chroot of the host's /, leave its exit status on the writable
# share, power off. 125 is left when anything before the job fails.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev

for x in $(cat /proc/cmdline); do
    case $x in
    pxjob=*) job=${x#pxjob=} ;;
    pxstatus=*) status=${x#pxstatus=} ;;
    pxrw=*) rw=${x#pxrw=} ;;
    esac
done

die() {
    echo "rxe-vm guest: $*" >/dev/console
    [ -n "$rw" ] && mountpoint -q "/host$rw" && echo 125 >"/host$status"
    sync
    poweroff -f
}

for m in $(cat /mods/9p.list); do insmod "/mods/$m.ko" || die "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro,msize=262144 host0 /host ||
    die "cannot mount the host's / over 9p"
# A fresh /tmp first: the writable share may lie under it.
mount -t tmpfs -o mode=1777 tmp /host/tmp
mkdir -p "/host$rw" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 rw0 "/host$rw" ||
    die "cannot mount $rw writable over 9p"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/shm /host/dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 shm /host/dev/shm
mount -t devpts devpts /host/dev/pts

for m in $(cat /mods/rxe.list); do insmod "/mods/$m.ko" || die "insmod $m failed"; done
ip link set lo up
ip link set dummy0 up || die "no dummy0"
ip addr add 10.200.0.1/24 dev dummy0
chroot /host rdma link add rxe0 type rxe netdev dummy0 || die "rdma link add rxe0 failed"
i=0
while [ ! -e /host/dev/infiniband/rdma_cm ] || [ ! -e /host/dev/infiniband/uverbs0 ]; do
    i=$((i + 1))
    [ $i -gt 50 ] && die "no /dev/infiniband/{rdma_cm,uverbs0} after rxe came up"
    sleep 0.1
done

chroot /host /bin/sh "$job" </dev/null >/dev/console 2>&1
echo $? >"/host$status"
sync
poweroff -f

# --- The install's shell library (appliance/autoinstall/templates/install-functions.sh) ---
# The same in every image's script: the image's own parts (its disks, file systems,
# network and boot loader settings) are above and below it. It reads DISK_VARS,
# TAR_EXTRACT_OPTIONS, BOOT_DISK_VAR, BOOT_LABEL, BIOS_BOOT_PART and EFI_DIR from them.

# --- Helpers -----------------------------------------------------------------
SI_TMP=${SI_TMP:-/tmp/si-install.$$}
SI_SYSFS=${SI_SYSFS:-/sys}
mkdir -p "$SI_TMP"
MOUNTED=""

# The initrd's si-log/si-fail print to the console too; run by hand, echo instead.
log() { if command -v si-log >/dev/null 2>&1; then si-log "$*"; else echo "si: $*"; fi; }
fail() {
    if command -v si-fail >/dev/null 2>&1; then si-fail "$*"; else echo "si: FAILED: $*" >&2; fi
    exit 1
}

# run CMD...: run it, keep its output in the log; on failure stop with the output's tail.
run() {
    if "$@" >"$SI_TMP/out" 2>&1; then
        [ -s "$SI_TMP/out" ] && si-log "$(tail -n 20 "$SI_TMP/out")"
        return 0
    fi
    fail "$* failed: $(tail -n 5 "$SI_TMP/out" | tr '\n' ' ')"
}

# part DISK N: the device node of partition N of a disk, given the disk's node
# or the name of its variable (part DISK0 2): /dev/vda2, /dev/sda2, /dev/nvme0n1p2, /dev/loop0p2.
part() {
    _d=$1
    case "$_d" in /*) ;; *) eval "_d=\$$_d" ;; esac
    case "$_d" in
        *[0-9]) echo "${_d}p$2" ;;
        *) echo "$_d$2" ;;
    esac
}

# realtool NAME: the first NAME on PATH that is not busybox (busybox sh prefers its
# applets, and busybox mkswap cannot set a UUID); prints nothing if there is none.
realtool() {
    _save=$IFS; IFS=:
    for _dir in $PATH; do
        if [ -x "$_dir/$1" ] && [ ! -d "$_dir/$1" ]; then
            case "$(readlink -f "$_dir/$1")" in
                */busybox*) ;;
                *) IFS=$_save; echo "$_dir/$1"; return 0 ;;
            esac
        fi
    done
    IFS=$_save
    return 1
}

new_uuid() { cat /proc/sys/kernel/random/uuid; }

# fs_uuid DEV EXPECTED: the UUID the file system got (blkid when present).
fs_uuid() {
    _blkid=$(realtool blkid) || { echo "$2"; return; }
    _u=$("$_blkid" -c /dev/null -s UUID -o value "$1" 2>/dev/null)
    echo "${_u:-$2}"
}

# disk_sectors DISK: its size in its own logical sectors.
disk_sectors() {
    _n=${1##*/}
    [ -r "$SI_SYSFS/class/block/$_n/size" ] || { echo "disk $1 not found (no $SI_SYSFS/class/block/$_n): set ${2:-DISKn} at the top of this script"; return 1; }
    _ss=$(cat "$SI_SYSFS/class/block/$_n/queue/logical_block_size" 2>/dev/null || echo 512)
    echo $(( $(cat "$SI_SYSFS/class/block/$_n/size") * 512 / _ss ))
}

# layout DISK GROW MIN_GROW GOLDEN_SECTOR_SIZE VARNAME GPT_TAIL < table: the sfdisk script for this disk.
# The table holds the golden layout ("N start size kind attrs"); the GROW partition
# takes the difference in disk size (shrinking no lower than MIN_GROW sectors),
# partitions after it move by the same amount.
layout() {
    _total=$(disk_sectors "$1" "$5") || { echo "$_total"; return 1; }
    _ss=$(cat "$SI_SYSFS/class/block/${1##*/}/queue/logical_block_size" 2>/dev/null || echo 512)
    [ "$_ss" = "$4" ] || { echo "disk $1 has $_ss-byte sectors, the golden client's had $4: write its layout by hand"; return 1; }
    awk -v total="$_total" -v grow="$2" -v mingrow="$3" -v prefix="$(part "$1" "")" -v disk="$1" \
        -v ss="$4" -v tail="$6" '
        function mib(s) { return sprintf("%.0f MiB", s * ss / 1048576) }
        /^[0-9]/ { n++; num[n] = $1; start[n] = $2; size[n] = $3; kind[n] = $4
                   a = $0 " "; for (i = 1; i <= 4; i++) sub(/^[^ ]+ +/, "", a)
                   sub(/ +$/, "", a); attrs[n] = a
                   if ($1 == grow) g = n
                   next }
        { header = header $0 "\n" }
        END {
            need = 0
            for (i = 1; i <= n; i++) if (start[i] + size[i] > need) need = start[i] + size[i]
            need += tail
            extra = total - need
            if (extra >= 0) extra = int(extra / 2048) * 2048
            else extra = -int((-extra + 2047) / 2048) * 2048
            if (extra < 0 && (g == 0 || size[g] + extra < mingrow)) {
                printf "disk %s is %s, too small for this image: it needs at least %s", disk, mib(total), mib(need - (g ? size[g] - mingrow : 0))
                exit 1
            }
            if (g == 0) extra = 0
            printf "%s", header
            for (i = 1; i <= n; i++) {
                s = start[i]; z = size[i]
                if (g && i != g && s > start[g]) s += extra
                if (g && i == g) z += extra
                if (g && kind[i] == "extended" && start[g] >= start[i] && start[g] < start[i] + size[i]) z += extra
                printf "%s%s : start=%.0f, size=%.0f%s%s\n", prefix, num[i], s, z, (attrs[i] != "" ? ", " : ""), attrs[i]
            }
        }'
}

# map_disks: a golden disk name this machine lacks (and nobody set) maps to the
# next fixed, writable disk it has, in name order: a golden /dev/sda installs onto /dev/vda.
map_disks() {
    _taken=""
    for _v in $DISK_VARS; do
        eval "_dev=\$$_v"
        [ -e "$SI_SYSFS/class/block/${_dev##*/}" ] && _taken="$_taken $_dev "
    done
    for _v in $DISK_VARS; do
        eval "_dev=\$$_v; _given=\$${_v}_GIVEN"
        [ -e "$SI_SYSFS/class/block/${_dev##*/}" ] && continue
        [ -n "$_given" ] && fail "$_v=$_dev: there is no such disk on this machine"
        _pick=""
        for _d in $(ls "$SI_SYSFS/block" 2>/dev/null); do
            case "$_d" in loop*|ram*|zram*|sr*|fd*|md*|dm-*|nbd*|mtd*) continue ;; esac
            case "$_taken" in *" /dev/$_d "*) continue ;; esac
            # never the USB stick or CD this machine may have booted from
            [ "$(cat "$SI_SYSFS/block/$_d/removable" 2>/dev/null)" = 1 ] && continue
            [ "$(cat "$SI_SYSFS/block/$_d/ro" 2>/dev/null)" = 1 ] && continue
            _pick=/dev/$_d
            break
        done
        [ -n "$_pick" ] || fail "$_v: the golden client's $_dev is not on this machine and no other disk is left (set $_v=)"
        log "$_v: the golden client's $_dev is not on this machine; using $_pick (set $_v= to choose)"
        eval "$_v=\$_pick"
        _taken="$_taken $_pick "
    done
}

# wait_for DISK DEV...: partition nodes appear shortly after sfdisk re-reads the
# table; a kernel without that partition-table parser needs partx to add them.
wait_for() {
    _disk=$1; shift
    for _dev in "$@"; do
        _i=0
        while [ ! -b "$_dev" ]; do
            _i=$((_i + 1))
            if [ $_i = 10 ] && _partx=$(realtool partx); then
                "$_partx" -a "$_disk" >/dev/null 2>&1 || "$_partx" -u "$_disk" >/dev/null 2>&1
            fi
            [ $_i -gt 100 ] && fail "partition $_dev did not appear after partitioning $_disk"
            sleep 0.1
        done
    done
}

mount_fs() {  # mount_fs DEV MOUNTPOINT TYPE
    mkdir -p "$TARGET$2" || fail "cannot create $TARGET$2"
    _opts=""
    [ "$3" = vfat ] && _opts="-o quiet"   # rsync's chown/chmod on FAT must not count as errors
    mount -t "$3" $_opts "$1" "$TARGET$2" || fail "cannot mount $1 ($3) on $TARGET$2"
    MOUNTED="$TARGET$2 $MOUNTED"
    # rsync --delete must not try to remove a mount point the image lacks (an image
    # taken without /boot/efi: rmdir says EBUSY and the install failed)
    [ "$2" = / ] || echo "P $2/" >>"$SI_TMP/keep.rules"
}

umount_all() {
    for _m in $MOUNTED; do umount "$_m" 2>/dev/null || umount -l "$_m" 2>/dev/null; done
    MOUNTED=""
}

post_state() {  # post_state STATE: tell the appliance (the install's final word)
    if [ "$1" = succeeded ] && command -v si-done >/dev/null 2>&1; then
        si-done "installed $IMAGENAME"   # the initrd's own command (it then posts nothing more)
        return
    fi
    _url="http://$IMAGESERVER:$SI_HTTP_PORT/api/installs/$HOSTNAME"
    _body="{\"phase\": \"done\", \"percent\": 100, \"state\": \"$1\"}"
    if _curl=$(realtool curl); then
        "$_curl" -fsS -m 20 -H 'Content-Type: application/json' -d "$_body" "$_url" >/dev/null
    else
        # (not wget -T: Debian's busybox-static 1.35 wget segfaults with it)
        timeout 20 wget -q -O /dev/null --header 'Content-Type: application/json' --post-data "$_body" "$_url"
    fi
}

# --- 4. Copy the image -------------------------------------------------------
# A transport brings the image's stream (one tar.zst) and unpacks it into $TARGET;
# the rsync pass that always follows makes the tree exact: after a good stream it
# moves almost nothing, after a bad one it repairs, alone it copies everything.
# One function per transport, pull_<name>; TRANSPORT chooses (empty: the appliance
# says which, per image and host group, in /api/fleet/<image>/<host>).
TRANSPORT=${SI_TRANSPORT:-}
STREAM_DIR=$TARGET/.si-stream                # the download lives on the target disk

# fleet_plan KEY: a value of the appliance's answer for this host (parsed as data).
fleet_plan() {
    sed -n "s/^$1=\([A-Za-z0-9._:/ ,()-]*\)\$/\1/p" "$SI_TMP/fleet.plan" | head -n 1
}

fetch_fleet_plan() {
    : >"$SI_TMP/fleet.plan"
    timeout 30 wget -q -O "$SI_TMP/fleet.plan" \
        "http://$IMAGESERVER:$SI_HTTP_PORT/api/fleet/$IMAGENAME/${HOSTNAME:-unknown}${TRANSPORT:+?transport=$TRANSPORT}" \
        2>/dev/null || : >"$SI_TMP/fleet.plan"
}

# unpack_stream < stream: extract into $TARGET with GNU tar (busybox tar keeps no ACLs or
# xattrs); fails on a damaged stream.
unpack_stream() {
    _tar=$(realtool tar) || { echo "no GNU tar in this initrd" >"$SI_TMP/unpack.err"; return 1; }
    eval "set -- $TAR_EXTRACT_OPTIONS"          # shell words, quoted as the header wrote them
    zstd -d -q -c | "$_tar" "$@" -C "$TARGET" 2>"$SI_TMP/unpack.err"
}

# bt_start TORRENT: start a BitTorrent client in the background (SEEDER: its pid) that
# downloads into $STREAM_DIR/image.tar.zst, touches $SI_TMP/bt.done when complete and
# then seeds. ctorrent is the initrd's (1.3 MiB with its library; aria2c with its
# libraries adds 19 MiB that every machine would fetch: si mkbootimage --with aria2).
# A private swarm of the install network: no DHT, no peer exchange, no local discovery.
# SI_BT_CLIENT=aria2c|ctorrent picks one when the initrd has both.
bt_start() {
    rm -f "$SI_TMP/bt.done"
    _client=${SI_BT_CLIENT:-ctorrent}
    command -v "$_client" >/dev/null 2>&1 || _client=ctorrent
    if [ "$_client" = ctorrent ] && command -v ctorrent >/dev/null 2>&1; then
        ctorrent -e 24 -C 32 -M 30 -s "$STREAM_DIR/image.tar.zst" -b "$SI_TMP/image.bf" \
            -X "touch $SI_TMP/bt.done" "$1" </dev/null >"$SI_TMP/bt.out" 2>&1 &
    elif command -v aria2c >/dev/null 2>&1; then
        printf '#!/bin/sh\ntouch %s\n' "$SI_TMP/bt.done" >"$SI_TMP/bt-done.sh"
        chmod +x "$SI_TMP/bt-done.sh"
        aria2c --dir="$STREAM_DIR" --out=image.tar.zst --seed-ratio=0.0 \
            --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
            --file-allocation=none --allow-overwrite=true --auto-save-interval=0 --summary-interval=1 \
            --console-log-level=warn --on-bt-download-complete="$SI_TMP/bt-done.sh" \
            "$1" </dev/null >"$SI_TMP/bt.out" 2>&1 &
    else
        echo "neither ctorrent nor aria2c is in this initrd"; return 1
    fi
    SEEDER=$!
}

# bt_percent: how much the client has, from its last status line (ctorrent "[have/total/..]",
# aria2c "(NN%)").
bt_percent() {
    tr '\r' '\n' <"$SI_TMP/bt.out" | sed -n -e 's/.*(\([0-9]*\)%).*/\1/p' \
        -e 's#^. [0-9]*/[0-9]*/[0-9]* \[\([0-9]*\)/\([0-9]*\)/.*#\1 \2#p' | tail -n 1 |
        awk 'NF == 2 { if ($2 > 0) print int($1 * 100 / $2); next } { print }'
}

# pull_bittorrent: fetch the stream from the swarm (the appliance seeds, every peer shares
# what it has), unpack it, and go on seeding in the background until finish.
pull_bittorrent() {
    _torrent=$(fleet_plan torrent)
    [ -n "$_torrent" ] || { echo "the appliance sent no torrent for $IMAGENAME"; return 1; }
    mkdir -p "$STREAM_DIR"
    rm -f "$SI_TMP/bt.split"
    timeout 30 wget -q -O "$SI_TMP/image.torrent" "http://$IMAGESERVER:$SI_HTTP_PORT$_torrent" ||
        { echo "cannot fetch $_torrent"; return 1; }
    bt_start "$SI_TMP/image.torrent" || return 1
    _size=$(fleet_plan stream_bytes)
    _wait=$(fleet_plan join_timeout)
    _last=-1 _still=0
    while [ ! -f "$SI_TMP/bt.done" ]; do
        kill -0 "$SEEDER" 2>/dev/null ||
            { echo "the BitTorrent client stopped: $(tail -n 3 "$SI_TMP/bt.out" | tr '\r\n' '  ')"; SEEDER=""; return 1; }
        _p=$(bt_percent)
        if [ -n "$_p" ] && [ "$_p" != "$_last" ]; then
            si-progress bittorrent $((15 + _p * 60 / 100)) $((${_size:-0} / 100 * _p))
            _last=$_p _still=0
        else
            _still=$((_still + 1))
            [ "$_still" -lt "${_wait:-60}" ] ||
                { echo "no progress from the swarm in ${_wait:-60} s (at ${_last}%)"; return 1; }
        fi
        sleep 1
    done
    # what of it the appliance sent (the kernel's count of its seeder's connections to us);
    # the rest came from the other machines
    _appl=$(timeout 10 wget -q -O - \
        "http://$IMAGESERVER:$SI_HTTP_PORT/api/fleet/$IMAGENAME/$(fleet_plan version)/sent-to-me" 2>/dev/null |
        sed -n 's/^bytes=\([0-9][0-9]*\)$/\1/p')
    if [ -n "$_appl" ] && [ -n "$_size" ]; then
        [ "$_appl" -gt "$_size" ] && _appl=$_size
        echo "$_size bytes of stream: at least $_appl from the appliance, the rest ($((_size - _appl))) from peers" \
            >"$SI_TMP/bt.split"
    fi
    si-progress unpack 75 "$_size"
    unpack_stream <"$STREAM_DIR/image.tar.zst" ||
        { echo "unpacking failed: $(tail -n 3 "$SI_TMP/unpack.err" | tr '\n' ' ')"; return 1; }
    TRANSPORT_BYTES=$_size
}

# pull_multicast: join the appliance's udpcast session for this image and unpack as it
# arrives (nothing is stored; a late machine waits for the next session).
pull_multicast() {
    command -v udp-receiver >/dev/null 2>&1 || { echo "no udp-receiver in this initrd"; return 1; }
    _port=$(fleet_plan portbase)
    [ -n "$_port" ] || { echo "the appliance opened no multicast session"; return 1; }
    si-progress multicast 15 0
    ( udp-receiver --interface "${DEVICE:-eth0}" --portbase "$_port" --nokbd \
        --start-timeout "$(fleet_plan join_timeout || echo 60)" --receive-timeout 30 2>"$SI_TMP/udp.err"
      echo $? >"$SI_TMP/udp.rc" ) | unpack_stream || { echo "unpacking failed: $(tail -n 3 "$SI_TMP/unpack.err" | tr '\n' ' ')"; return 1; }
    [ "$(cat "$SI_TMP/udp.rc" 2>/dev/null)" = 0 ] || { echo "udp-receiver failed: $(tail -n 3 "$SI_TMP/udp.err" | tr '\r\n' '  ')"; return 1; }
    TRANSPORT_BYTES=$(fleet_plan stream_bytes)
}

# pull_rsync [PHASE]: copy (or, after a stream, check and repair) the tree from the rsync daemon.
# Progress from rsync's --info=progress2 lines ("1,234,567  45%  10MB/s ...") maps to 15-90 %.
pull_rsync() {
    _phase=${1:-rsync}
    _from=15 _base=0
    # a repair pass after a stream: the run's bytes are the stream's and then what rsync adds
    [ "$_phase" = rsync ] || { _from=80; _base=${TRANSPORT_BYTES:-0}; }
    si-progress "$_phase" $_from $_base
    log "rsync from $IMAGESERVER::$IMAGENAME${1:+ (checking what $TRANSPORT brought)}"
    touch "$SI_TMP/keep.rules"
    ( rsync -aHAX --numeric-ids --no-inc-recursive \
        --delete --filter='P lost+found/' --filter="merge $SI_TMP/keep.rules" --exclude=/.si-stream --info=progress2,stats2 $RSYNC_CHECK \
        --port="$RSYNC_PORT" "$IMAGESERVER::$IMAGENAME/" "$TARGET/" 2>"$SI_TMP/rsync.err"
      echo $? >"$SI_TMP/rsync.rc" ) | tr '\r' '\n' | tee "$SI_TMP/rsync.out" | {
        _last=-1
        while read -r _bytes _pct _rest; do
            case "$_pct" in
                *%) _p=${_pct%\%}
                    case "$_p" in ''|*[!0-9]*) continue ;; esac
                    if [ "$_p" != "$_last" ]; then
                        si-progress "$_phase" $((_from + _p * (90 - _from) / 100)) $((_base + ${_bytes//,/}))
                        _last=$_p
                    fi ;;
            esac
        done
    }
    _rc=$(cat "$SI_TMP/rsync.rc" 2>/dev/null || echo 1)
    case "$_rc" in
        0|24) ;;   # 24: a file vanished on the server side, harmless
        *) fail "rsync of $IMAGENAME from $IMAGESERVER failed (exit $_rc): $(tail -n 5 "$SI_TMP/rsync.err" | tr '\n' ' ')" ;;
    esac
    RSYNC_BYTES=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$SI_TMP/rsync.out" | tr -d ,)
    si-progress "$_phase" 90
}

pull_image() {
    fetch_fleet_plan   # asks for $TRANSPORT when set; the answer says what is possible now
    TRANSPORT=$(fleet_plan transport)
    TRANSPORT=${TRANSPORT:-${SI_TRANSPORT:-rsync}}
    if [ "$TRANSPORT" = rsync ]; then
        [ -n "$(fleet_plan detail)" ] && log "transport rsync: $(fleet_plan detail)"
        pull_rsync
        log "transport rsync: ${RSYNC_BYTES:-?} bytes from the appliance"
        return
    fi
    if ! type "pull_$TRANSPORT" >/dev/null 2>&1; then
        log "transport $TRANSPORT is unknown to this script: using rsync"
        TRANSPORT=rsync; pull_rsync; return
    fi
    log "transport $TRANSPORT: $(fleet_plan detail)"
    if "pull_$TRANSPORT" >"$SI_TMP/transport.why" 2>&1; then
        log "transport $TRANSPORT: ${TRANSPORT_BYTES:-?} bytes of stream unpacked"
        [ -s "$SI_TMP/bt.split" ] && log "transport $TRANSPORT: $(cat "$SI_TMP/bt.split")"
        pull_rsync "repair"
        log "transport $TRANSPORT then rsync: ${RSYNC_BYTES:-?} bytes repaired from the appliance"
    else
        log "transport $TRANSPORT failed, falling back to rsync: $(tail -n 3 "$SI_TMP/transport.why" | tr '\n' ' ')"
        stop_seeding now
        # A damaged stream may have left files of the right size and time but wrong bytes.
        RSYNC_CHECK=--checksum
        pull_rsync
        log "transport rsync (fallback from $TRANSPORT): ${RSYNC_BYTES:-?} bytes from the appliance"
    fi
}

# stop_seeding [now]: the install is over (or its transport failed); after the seed time
# the appliance asks for (not when "now"), end aria2c and drop the stream from the disk.
stop_seeding() {
    if [ -n "$SEEDER" ]; then
        _secs=$(fleet_plan seed_seconds)
        case "$1:$_secs" in
            now:*|*:|*:*[!0-9]*) ;;
            *) [ "$_secs" -gt 0 ] && { log "seeding for $_secs s more"; sleep "$_secs"; } ;;
        esac
        # ctorrent, told to stop, says goodbye to the tracker and its peers and took 75 s
        # over it in the lab: 3 s of grace, then it is killed (the reboot would anyway).
        kill "$SEEDER" 2>/dev/null
        _i=0
        while kill -0 "$SEEDER" 2>/dev/null && [ $_i -lt 30 ]; do sleep 0.1; _i=$((_i + 1)); done
        kill -9 "$SEEDER" 2>/dev/null
        wait "$SEEDER" 2>/dev/null
        SEEDER=""
    fi
    rm -rf "$STREAM_DIR"
}

# --- 5. Configure the installed system (what SystemConfigurator did) -------------
configure_fstab() {
    [ -f "$TARGET/etc/fstab" ] || { log "no /etc/fstab in the image; not rewritten"; return; }
    [ -s "$SI_TMP/fstab.map" ] || return 0
    # Each entry this script created now names its file system by UUID.
    awk 'BEGIN { OFS = "\t" }
         NR == FNR { map[$1] = $2; next }
         /^[ \t]*#/ || NF < 2 { print; next }
         ($1 in map) { $1 = map[$1]; print; next }
         { print }' "$SI_TMP/fstab.map" "$TARGET/etc/fstab" >"$TARGET/etc/fstab.si-new" &&
        mv "$TARGET/etc/fstab.si-new" "$TARGET/etc/fstab" || fail "cannot rewrite /etc/fstab"
    log "fstab: file systems by UUID"
}

configure_hostname() {
    # replicant: "don't mess with the network settings": the name is one of them (a backup
    # or a clone of the golden client keeps its identity)
    if [ "$IP_METHOD" = replicant ]; then
        log "hostname: replicant, /etc/hostname and /etc/hosts are left as the image has them"
        return
    fi
    _fqdn=$HOSTNAME
    [ -n "$DOMAINNAME" ] && _fqdn="$HOSTNAME.$DOMAINNAME"
    echo "$HOSTNAME" >"$TARGET/etc/hostname"
    _addr=127.0.1.1
    [ "$IP_METHOD" = static ] && [ -n "$IPADDR" ] && _addr=$IPADDR
    touch "$TARGET/etc/hosts"
    # Drop the golden client's own name and the old 127.0.1.1 line, then add ours.
    awk -v old="$GOLDEN_HOSTNAME" -v addr="$_addr" -v ours="$HOSTNAME" '
        /^[ \t]*#/ { print; next }
        $1 == "127.0.1.1" || $1 == addr { next }
        { for (i = 2; i <= NF; i++) { split($i, p, "."); if (old != "" && p[1] == old) next; if ($i == ours) next } print }
    ' "$TARGET/etc/hosts" >"$SI_TMP/hosts" || fail "cannot rewrite /etc/hosts"
    printf '%s\t%s %s\n' "$_addr" "$_fqdn" "$HOSTNAME" >>"$SI_TMP/hosts"
    cat "$SI_TMP/hosts" >"$TARGET/etc/hosts"
    log "hostname: $_fqdn ($_addr)"
}

mask2prefix() {
    _bits=0
    _save=$IFS; IFS=.
    for _o in $1; do
        case "$_o" in
            255) _bits=$((_bits + 8)) ;; 254) _bits=$((_bits + 7)) ;; 252) _bits=$((_bits + 6)) ;;
            248) _bits=$((_bits + 5)) ;; 240) _bits=$((_bits + 4)) ;; 224) _bits=$((_bits + 3)) ;;
            192) _bits=$((_bits + 2)) ;; 128) _bits=$((_bits + 1)) ;;
        esac
    done
    IFS=$_save
    echo $_bits
}

# --- 6. Boot loader, installed from inside the image --------------------------
chroot_mounts() {
    for _f in dev proc sys; do
        mkdir -p "$TARGET/$_f"
        mount --bind "/$_f" "$TARGET/$_f" || fail "cannot bind-mount /$_f into $TARGET"
        MOUNTED="$TARGET/$_f $MOUNTED"
    done
}

install_bootloader() {
    si-progress bootloader 94
    eval "BOOT_DISK=\${BOOT_DISK:-\$$BOOT_DISK_VAR}"
    if [ -x "$TARGET/usr/sbin/grub-install" ] || [ -x "$TARGET/usr/sbin/grub2-install" ]; then
        _gi=grub-install; _gm=grub-mkconfig; _cfg=/boot/grub/grub.cfg
        [ -x "$TARGET/usr/sbin/grub-install" ] || { _gi=grub2-install; _gm=grub2-mkconfig; _cfg=/boot/grub2/grub.cfg; }
        chroot_mounts
        _any=""
        if [ -d "$TARGET/usr/lib/grub/i386-pc" ] && [ "$BIOS_BOOT_PART" = yes ]; then
            run chroot "$TARGET" $_gi --target=i386-pc --recheck "$BOOT_DISK"
            _any="$_any BIOS"
        fi
        if [ -n "$EFI_DIR" ] && [ -d "$TARGET/usr/lib/grub/x86_64-efi" ]; then
            # Debian's signed shim and GRUB, when the image has them, so the disk boots with
            # Secure Boot on (grub-install uses them by default only if this system booted so).
            _sb=""
            [ -d "$TARGET/usr/lib/grub/x86_64-efi-signed" ] && [ -f "$TARGET/usr/lib/shim/shimx64.efi.signed" ] &&
                _sb=--uefi-secure-boot
            run chroot "$TARGET" $_gi --target=x86_64-efi --efi-directory="$EFI_DIR" --removable --no-nvram $_sb
            _any="$_any UEFI${_sb:+ (signed shim and GRUB: Secure Boot ready)}"
        fi
        [ -n "$_any" ] || fail "boot loader: the image has GRUB but neither i386-pc (with an MBR or a BIOS boot partition) nor x86_64-efi (with an EFI system partition) fits this disk"
        if [ -x "$TARGET/usr/sbin/update-grub" ]; then
            run chroot "$TARGET" update-grub
        else
            run chroot "$TARGET" $_gm -o $_cfg
        fi
        log "boot loader: GRUB installed for$_any on $BOOT_DISK"
    elif _ext=$(for _p in usr/bin/extlinux sbin/extlinux usr/sbin/extlinux; do [ -x "$TARGET/$_p" ] && echo "/$_p" && break; done); [ -n "$_ext" ]; then
        _dir=/boot/extlinux
        [ -f "$TARGET/boot/syslinux/syslinux.cfg" ] || [ -f "$TARGET/boot/syslinux/extlinux.conf" ] && _dir=/boot/syslinux
        chroot_mounts
        mkdir -p "$TARGET$_dir"
        run chroot "$TARGET" "$_ext" --install "$_dir"
        _mbr=mbr.bin
        [ "$BOOT_LABEL" = gpt ] && _mbr=gptmbr.bin
        for _m in usr/lib/syslinux/mbr usr/lib/EXTLINUX usr/share/syslinux usr/lib/syslinux; do
            if [ -f "$TARGET/$_m/$_mbr" ]; then
                run dd if="$TARGET/$_m/$_mbr" of="$BOOT_DISK" bs=440 count=1 conv=notrunc
                break
            fi
        done
        log "boot loader: extlinux installed in $_dir on $BOOT_DISK"
    else
        log "boot loader: skipped, the image has neither GRUB (grub-install) nor extlinux"
    fi
}

# --- The client tools: updateclient on the installed system's PATH -------------
# The manual's Example 13 fetched updateclient from the image server by hand; the install
# puts it in place, so 'si pushupdate' works on a freshly installed machine. It needs
# python3 (and rsync) in the image; without them the install says so and goes on.
# updateclient's own excludes keep these files (the image does not have them).
install_client_tools() {
    if [ ! -x "$TARGET/usr/bin/python3" ]; then
        log "client tools: skipped, the image has no /usr/bin/python3 (updateclient needs it)"
        return 0
    fi
    _lib="$TARGET/usr/local/lib/systemimager"
    mkdir -p "$_lib" "$TARGET/usr/local/sbin"
    if timeout 30 wget -q -O "$_lib/siclient.py.new" "http://$IMAGESERVER:$SI_HTTP_PORT/client/siclient.py"; then
        chmod 755 "$_lib/siclient.py.new"
        mv "$_lib/siclient.py.new" "$_lib/siclient.py"
        for _c in updateclient prepareclient; do
            ln -sfn ../lib/systemimager/siclient.py "$TARGET/usr/local/sbin/$_c"
        done
        log "client tools: updateclient and prepareclient in /usr/local/sbin"
    else
        rm -f "$_lib/siclient.py.new"
        log "client tools: could not fetch siclient.py from $IMAGESERVER; updateclient is not installed"
    fi
}

# --- 7. Finish ----------------------------------------------------------------
finish() {
    stop_seeding
    sync
    umount_all
    log "installed $IMAGENAME on $HOSTNAME; post-install action: $POST_INSTALL"
    si-progress done 100
    # The last word: anything posted after it would open a new install record.
    post_state succeeded || echo "si: could not post the final state to $IMAGESERVER:$SI_HTTP_PORT" >&2
    case "$POST_INSTALL" in
        reboot) sleep 2; reboot -f ;;
        shutdown) sleep 2; poweroff -f ;;
        beep) while :; do printf '\a'; sleep 1; done ;;
        none) ;;
        *) log "unknown post-install action '$POST_INSTALL'; doing nothing" ;;
    esac
}

# SystemImager autoinstall: shell functions shared by /init, si-autoinstall,
# the si-* commands and the tests (busybox sh). Nothing here runs on load.

SI_DIR=${SI_DIR:-/tmp/si}
SI_LOG=${SI_LOG:-$SI_DIR/install.log}
# Variables a kernel command line or local.cfg may set (SystemImager's, plus ours).
SI_CFG_VARS="HOSTNAME DOMAINNAME DEVICE BOOTIF IPADDR NETMASK NETWORK BROADCAST GATEWAY IMAGESERVER IMAGENAME SI_HTTP_PORT SI_SITE_OPTION SI_LINK_WAIT SI_LOCALCFG"

si_uptime() {
    read -r up _ < /proc/uptime 2>/dev/null || up="?"
    echo "$up"
}

# Console and log. Inside the install script stdout is already teed to the
# log (SI_TEED=1), so only echo there.
si_say() {
    msg="[$(si_uptime)] SystemImager: $*"
    echo "$msg"
    if [ -z "$SI_TEED" ]; then
        mkdir -p "$SI_DIR" && echo "$msg" >> "$SI_LOG"
    fi
}

# --- configuration -------------------------------------------------------

si_cfg_var_ok() {
    case " $SI_CFG_VARS " in *" $1 "*) return 0 ;; esac
    return 1
}

# si_parse_cfg FILE: print the NAME=value lines of a local.cfg (or of a
# kernel command line, one token a line) that set a known variable.
# The file is data: never sourced, no expansion, quotes stripped.
si_parse_cfg() {
    tr -d '\r' < "$1" | while IFS= read -r line || [ -n "$line" ]; do
        line=${line#"${line%%[! 	]*}"}
        line=${line%"${line##*[! 	]}"}
        case "$line" in ''|'#'*) continue ;; esac
        line=${line#export }
        name=${line%%=*}
        [ "$name" = "$line" ] && continue
        si_cfg_var_ok "$name" || continue
        value=${line#*=}
        case "$value" in
            \"*\") value=${value#\"}; value=${value%\"} ;;
            \'*\') value=${value#\'}; value=${value%\'} ;;
        esac
        printf '%s=%s\n' "$name" "$value"
    done
}

# si_apply_cfg FILE: export what si_parse_cfg finds in FILE.
si_apply_cfg() {
    si_parse_cfg "$1" > "$SI_DIR/cfg.parsed"
    while IFS= read -r kv; do
        export "$kv"
    done < "$SI_DIR/cfg.parsed"
}

# si_collect_config CMDLINE [hd:FILE|removable:FILE]...
# Precedence, lowest first: defaults, kernel command line, local.cfg from a
# hard disk, local.cfg from removable media (floppy/USB/CD overrides disk, as
# the manual says; a local.cfg overrides the command line).
si_collect_config() {
    mkdir -p "$SI_DIR"
    : "${SI_HTTP_PORT:=8080}" "${SI_SITE_OPTION:=224}" "${SI_LINK_WAIT:=20}"
    export SI_HTTP_PORT SI_SITE_OPTION SI_LINK_WAIT
    set -f
    # shellcheck disable=SC2046
    printf '%s\n' $(cat "$1") > "$SI_DIR/cmdline.cfg"
    set +f
    si_apply_cfg "$SI_DIR/cmdline.cfg"
    shift
    for kind in hd removable; do
        for item in "$@"; do
            case "$item" in
                "$kind":*) si_say "using ${item#*:} ($kind)"; si_apply_cfg "${item#*:}" ;;
            esac
        done
    done
}

# si_block_devices: "kind name" for each disk or partition worth probing for
# a local.cfg; kind is removable (floppy, CD, USB, removable flag) or hd.
si_block_devices() {
    for sys in /sys/class/block/*; do
        [ -e "$sys" ] || continue
        name=${sys##*/}
        case "$name" in loop*|ram*|zram*|dm-*|md*|nbd*) continue ;; esac
        [ "$(cat "$sys/size" 2>/dev/null)" = 0 ] && continue   # empty drive
        if [ -e "$sys/partition" ]; then
            disk=$(basename "$(dirname "$(readlink -f "$sys")")")
        else
            disk=$name
            # a partitioned disk is probed through its partitions
            ls -d "$sys/$name"* >/dev/null 2>&1 && continue
        fi
        kind=hd
        case "$disk" in sr*|fd*) kind=removable ;; esac
        [ "$(cat "/sys/block/$disk/removable" 2>/dev/null)" = 1 ] && kind=removable
        case "$(readlink -f "/sys/block/$disk")" in */usb*) kind=removable ;; esac
        echo "$kind $name"
    done
}

# si_wait_usb: give USB sticks time to enumerate and show their disks
# (usb-storage waits a second before scanning); at most SI_USB_WAIT seconds.
si_wait_usb() {
    ls -d /sys/bus/usb/devices/usb* >/dev/null 2>&1 || return 0
    ticks=0; stable=0; prev=""
    while [ "$ticks" -lt $((${SI_USB_WAIT:-10} * 4)) ]; do
        pending=0
        for intf in /sys/bus/usb/devices/*:*; do
            [ "$(cat "$intf/bInterfaceClass" 2>/dev/null)" = 08 ] || continue
            ls -d "$intf"/host*/target*/*/block/* >/dev/null 2>&1 || pending=1
        done
        cur=$(ls /sys/bus/usb/devices | tr '\n' ' ')
        if [ "$cur" = "$prev" ]; then stable=$((stable + 1)); else stable=0; fi
        prev=$cur
        [ "$pending" = 0 ] && [ "$stable" -ge 4 ] && return 0
        usleep 250000
        ticks=$((ticks + 1))
    done
}

# si_find_local_cfgs: mount each candidate read-only and copy any local.cfg;
# prints kind:path items for si_collect_config.
si_find_local_cfgs() {
    mkdir -p /mnt/probe
    si_block_devices | while read -r kind name; do
        if mount -r "/dev/$name" /mnt/probe 2>/dev/null; then
            if [ -f /mnt/probe/local.cfg ]; then
                cp /mnt/probe/local.cfg "$SI_DIR/local.cfg.$name" && echo "$kind:$SI_DIR/local.cfg.$name"
            fi
            umount /mnt/probe
        fi
    done
}

# --- the hosts file ------------------------------------------------------

# si_hosts_lookup IP FILE: print "short fqdn" from the first line whose
# address field is exactly IP (string equality: .2 never matches .21).
si_hosts_lookup() {
    tr -d '\r' < "$2" | awk -v ip="$1" '
        { sub(/#.*/, "") }
        NF >= 2 && ($1 "") == (ip "") {
            fqdn = $2; short = (NF >= 3) ? $3 : $2
            sub(/\..*/, "", short)
            print short, fqdn
            exit
        }'
}

# A host name we can put in a URL and a file name: letters, digits, '-', '.'.
si_valid_hostname() {
    case "$1" in
        ''|.*|-*|*..*|*[!A-Za-z0-9.-]*) return 1 ;;
    esac
    [ "${#1}" -le 253 ]
}

# --- network -------------------------------------------------------------

si_nics() {
    for dev in /sys/class/net/*; do
        [ -e "$dev/device" ] && echo "${dev##*/}"
    done
}

# si_bootif_mac BOOTIF: the MAC in a boot loader's BOOTIF (pxelinux and iPXE
# "01-aa-bb-cc-dd-ee-ff", GRUB "01-aa:bb:cc:dd:ee:ff"; 01 is Ethernet), lower case.
si_bootif_mac() {
    mac=$(echo "${1#01-}" | tr 'A-F-' 'a-f:')
    case "$mac" in
        [0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]) echo "$mac" ;;
        *) return 1 ;;
    esac
}

# si_nic_by_mac MAC: the interface with that address (the one the machine
# network-booted from, when MAC came from BOOTIF).
si_nic_by_mac() {
    for dev in "${SI_SYS_NET:-/sys/class/net}"/*; do
        [ "$(cat "$dev/address" 2>/dev/null)" = "$1" ] && echo "${dev##*/}" && return 0
    done
    return 1
}

# si_pick_nic: bring NICs up and print DEVICE (if given) or the first one
# with link, waiting up to SI_LINK_WAIT seconds.
si_pick_nic() {
    for n in $(si_nics); do ip link set "$n" up 2>/dev/null; done
    waited=0
    while :; do
        for n in ${DEVICE:-$(si_nics)}; do
            if [ "$(cat "/sys/class/net/$n/carrier" 2>/dev/null)" = 1 ]; then
                echo "$n"
                return 0
            fi
        done
        [ "$waited" -ge $((SI_LINK_WAIT * 4)) ] && return 1
        usleep 250000
        waited=$((waited + 1))
    done
}

si_hex_ip() {
    case "$1" in
        [0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F])
            printf '%d.%d.%d.%d\n' $(echo "$1" | sed 's/../0x& /g') ;;
        *) return 1 ;;
    esac
}

si_is_ip() {
    echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$'
}

# si_image_server: IMAGESERVER given > DHCP option 100 > site option > next-server.
si_image_server() {
    if [ -n "$IMAGESERVER" ]; then echo "$IMAGESERVER"; return 0; fi
    for v in "$DHCP_OPT100" "$DHCP_SITE"; do
        if si_is_ip "$v"; then echo "$v"; return 0; fi
    done
    if si_is_ip "$DHCP_SIADDR" && [ "$DHCP_SIADDR" != 0.0.0.0 ]; then
        echo "$DHCP_SIADDR"; return 0
    fi
    return 1
}

# --- talking to the appliance --------------------------------------------

si_url() {
    echo "http://$IMAGESERVER:$SI_HTTP_PORT$1"
}

# si_fetch PATH FILE: GET with retries (busybox wget; its -T crashes, so timeout).
si_fetch() {
    tries=0
    while [ "$tries" -lt 4 ]; do
        if timeout 60 wget -q -O "$2.part" "$(si_url "$1")" 2>"$SI_DIR/wget.err"; then
            mv "$2.part" "$2"
            return 0
        fi
        tries=$((tries + 1))
        sleep "$tries"
    done
    rm -f "$2.part"
    return 1
}

# Escape stdin as the inside of a JSON string (control characters dropped).
si_json_escape() {
    tr '\t' ' ' | tr -d '\000-\010\013-\037\177' |
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/$/\\n/' | tr -d '\n'
}

# A phase is a short label: the appliance refuses one longer than 200 characters, and
# a failure's phase is its whole message (an rsync error runs past that), so cut it;
# printable ASCII only, so the cut never splits a character. The full text is in the log.
si_phase_label() {
    LC_ALL=C tr -c '\040-\176' ' ' | head -c 200
}

si_number() {
    case "$1" in ''|*[!0-9]*) echo "${2:-0}" ;; *) echo "$1" ;; esac
}

# si_post_final STATE PHASE [PERCENT]: the run's last word (succeeded or failed). The
# appliance may be restarting right then, and until it hears of the success the host
# stays marked for install (its next network boot would install it again): so keep
# trying, SI_FINAL_TRIES times SI_FINAL_WAIT seconds apart (5 minutes by default).
si_post_final() {
    _tries=$(si_number "$SI_FINAL_TRIES" 60)
    while ! si_post "$@"; do
        _tries=$((_tries - 1))
        [ "$_tries" -gt 0 ] || return 1
        si_say "the appliance does not answer; reporting again in $(si_number "$SI_FINAL_WAIT" 5) s"
        sleep "$(si_number "$SI_FINAL_WAIT" 5)"
    done
}

# si_post STATE PHASE [PERCENT] [BYTES]: POST progress JSON with the log text (a
# missing number goes as null, so the appliance keeps what it had)
# written since the last successful post. Best effort: returns 1 on failure.
si_post() {
    [ -n "$IMAGESERVER" ] && [ -n "$HOSTNAME" ] || return 1
    mkdir -p "$SI_DIR"
    touch "$SI_LOG"
    sent=$(cat "$SI_DIR/log.sent" 2>/dev/null || echo 0)
    size=$(wc -c < "$SI_LOG")
    [ "$size" -lt "$sent" ] && sent=0
    {
        printf '{"state": "%s", "phase": "' "$1"
        printf '%s' "$2" | si_phase_label | si_json_escape | sed 's/\\n$//'
        printf '", "percent": %s, "bytes": %s, "log": "' "$(si_number "$3" null)" "$(si_number "$4" null)"
        tail -c +$((sent + 1)) "$SI_LOG" | head -c "$((size - sent))" | si_json_escape
        printf '"}\n'
    } > "$SI_DIR/post.json"
    if timeout 30 wget -q -O /dev/null --header "Content-Type: application/json" \
            --post-file "$SI_DIR/post.json" "$(si_url "/api/installs/$HOSTNAME")" 2>/dev/null; then
        echo "$size" > "$SI_DIR/log.sent"
        return 0
    fi
    return 1
}

#!/bin/bash
#
# plugin.sh - devstack plugin for cinder-asyncmig
#
# Adds an asynchronous migration target backend (AsyncMigrationRBDDriver)
# on the Ceph cluster of devstack-plugin-ceph, and the plugin's volume
# manager, to Cinder. Every setting comes from "cinder-asyncmig-config"
# (cinder_asyncmig/settings.py), which the sandbox's end-to-end tests use
# as well; the sources only the sandbox has (a second Ceph cluster, an NFS
# share mounted in place) are not part of it.

# Save trace setting
_XTRACE_ASYNCMIG=$(set +o | grep xtrace)
set -o xtrace

# asyncmig_settings - print the "section key value" lines for cinder.conf
function asyncmig_settings {
    local args=(--format iniset --backend target
        --ceph-conf "$CEPH_CONF_FILE" --rbd-user "$CINDER_CEPH_USER"
        --secret-uuid "$CINDER_CEPH_UUID" --state-dir "$ASYNCMIG_STATE_DIR")
    if [[ -n "$ASYNCMIG_BACKEND_NAME" ]]; then
        args+=(--name "$ASYNCMIG_BACKEND_NAME")
    fi
    if [[ -n "$ASYNCMIG_CEPH_POOL" ]]; then
        args+=(--pool "$ASYNCMIG_CEPH_POOL")
    fi
    if [[ -n "$ASYNCMIG_VOLUME_MANAGER" ]]; then
        args+=(--volume-manager "$ASYNCMIG_VOLUME_MANAGER")
    fi
    "$(get_python_exec_prefix)/cinder-asyncmig-config" "${args[@]}"
}

# asyncmig_setting <key> - the value of one backend setting
function asyncmig_setting {
    asyncmig_settings | awk -v key="$1" '$2 == key { print $3; exit }'
}

# asyncmig_backend_name - the section (and volume_backend_name) of the target
function asyncmig_backend_name {
    asyncmig_settings | awk '$2 == "volume_driver" { print $1; exit }'
}

function install_asyncmig {
    setup_develop "$ASYNCMIG_DIR"
}

# asyncmig_user_caps <mon|osd> - the caps of Cinder's Ceph user
function asyncmig_user_caps {
    sudo ceph -c "$CEPH_CONF_FILE" auth get "client.$CINDER_CEPH_USER" |
        awk -F '"' -v kind="$1" '$1 ~ "caps " kind " = " { print $2 }'
}

# configure_asyncmig_ceph - the target pool, open to Cinder's Ceph user
function configure_asyncmig_ceph {
    local pool osd_caps mon_caps
    pool=$(asyncmig_setting rbd_pool)
    sudo ceph -c "$CEPH_CONF_FILE" osd pool create "$pool" \
        "$ASYNCMIG_CEPH_POOL_PG" "$ASYNCMIG_CEPH_POOL_PG"
    sudo rbd -c "$CEPH_CONF_FILE" pool init "$pool"
    # the user devstack-plugin-ceph created keeps its caps; a linked
    # migration opens the source image, so it needs both pools
    osd_caps=$(asyncmig_user_caps osd)
    mon_caps=$(asyncmig_user_caps mon)
    if [[ "$osd_caps" != *"pool=$pool"* ]]; then
        sudo ceph -c "$CEPH_CONF_FILE" auth caps "client.$CINDER_CEPH_USER" \
            mon "$mon_caps" osd "$osd_caps, allow rwx pool=$pool"
    fi
}

# configure_asyncmig_cinder - the target backend and the volume manager
function configure_asyncmig_cinder {
    local section key value name backends
    while read -r section key value; do
        iniset "$CINDER_CONF" "$section" "$key" "$value"
    done < <(asyncmig_settings)
    name=$(asyncmig_backend_name)
    backends=$(iniget "$CINDER_CONF" DEFAULT enabled_backends)
    if [[ ",$backends," != *",$name,"* ]]; then
        iniset "$CINDER_CONF" DEFAULT enabled_backends \
            "${backends:+$backends,}$name"
    fi
    sudo install -d -o "$STACK_USER" "$ASYNCMIG_STATE_DIR"
    configure_asyncmig_api
}

# configure_asyncmig_api - cinder-api loads Cinder's extensions and the
# plugin's (the text of its user messages)
function configure_asyncmig_api {
    local extensions
    mapfile -t extensions < <(
        "$(get_python_exec_prefix)/cinder-asyncmig-config" --api |
            awk '$2 == "osapi_volume_extension" { print $3 }')
    iniset_multiline "$CINDER_CONF" DEFAULT osapi_volume_extension \
        "${extensions[@]}"
}

# create_asyncmig_volume_type - a volume type pinned to the target backend
function create_asyncmig_volume_type {
    local name
    name=$(asyncmig_backend_name)
    if ! openstack --os-cloud devstack-admin volume type show "$name" \
            >/dev/null 2>&1; then
        openstack --os-cloud devstack-admin volume type create \
            --property volume_backend_name="$name" "$name"
    fi
}

# stop_asyncmig_workers - stop background copies that outlived cinder-volume
function stop_asyncmig_workers {
    local status pid
    for status in "$ASYNCMIG_STATE_DIR"/*.json; do
        [[ -f "$status" ]] || continue
        pid=$(grep -o '"pid": *[0-9]*' "$status" | grep -o '[0-9]*$')
        # a pid reused by another program is not ours to stop
        [[ -n "$pid" ]] || continue
        if grep -qs cinder_asyncmig.engine.worker "/proc/$pid/cmdline"; then
            sudo kill "$pid" || true
        fi
    done
}

function cleanup_asyncmig {
    sudo rm -rf "$ASYNCMIG_STATE_DIR"
}

if is_service_enabled cinder-asyncmig; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing cinder-asyncmig"
        install_asyncmig
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring Cinder for asynchronous migration"
        configure_asyncmig_ceph
        configure_asyncmig_cinder
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Creating the asynchronous migration volume type"
        create_asyncmig_volume_type
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_asyncmig_workers
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_asyncmig
    fi
fi

# Restore xtrace
$_XTRACE_ASYNCMIG

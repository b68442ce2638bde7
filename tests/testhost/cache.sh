#!/bin/bash
# Sourced, not run: the cache of tests/testhost's build scripts (build-root.sh,
# build-archive.sh, registry/build-registry.sh, vm/build-image.sh), the
# directory each takes from IMAGE_PROVISION_TESTHOST_CACHE.

# reuse_or_lock CACHE DIR PATH: when DIR holds a finished build (DIR/ok),
# print PATH and end the script. Otherwise take CACHE's lock (fd 9, held
# until the script ends) and look again, since another process may have
# finished DIR while this one waited. Returns only when this script must
# build DIR.
reuse_or_lock() {
    local cache=$1 dir=$2 path=$3 attempt
    for attempt in first locked; do
        if [ -e "$dir/ok" ]; then
            echo "$path"
            exit 0
        fi
        [ "$attempt" = first ] || return 0
        mkdir -p "$cache"
        exec 9>"$cache/lock"
        flock 9
    done
}

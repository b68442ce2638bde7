#!/bin/bash
# The CUDA each GPU image needs against the CUDA the NVIDIA driver serves.
# NVIDIA's container toolkit refuses to start an image whose
# NVIDIA_REQUIRE_CUDA the driver does not meet ("unsatisfied condition:
# cuda>=12.8"), an error that surfaces deep inside compose; this says it
# first, naming the image and the driver branch to pick.
#
# The GPU images: the services of each compose project in PROJECT_DIRS that
# reserve a GPU (a device with the nvidia driver or the gpu capability), as
# compose resolves them. What an image needs: NVIDIA_REQUIRE_CUDA's
# cuda>=X.Y, else its CUDA_VERSION (X.Y of X.Y.Z), else unknown: an image
# that says neither is reported as such, never as met. The driver's CUDA is
# the one nvidia-smi's table header prints.
#
# Run by the gpu-check step (DEFER_UNPULLED=yes: an image not pulled yet is
# checked once it is, by the stack step) and by the stack step before its
# bring-up (DEFER_UNPULLED=pull: an image still missing, the background
# pull cut short by the reboot or not done, is pulled now, as the bring-up
# would next, so that the check reads it before anything starts). Prints "result: ..." for the summary; exits 1 when an image needs
# more than the driver serves.
# Inputs: PROJECT_DIRS (space-separated; one without a compose file is
# skipped); DEFER_UNPULLED (yes, pull or no: reported as unknown); BRANCHES ("BRANCH:CUDA ..." lowest
# first, the branches to pick from: the lowest that serves the need is
# picked); FAMILY (ubuntu or debian: how to get another branch).
set -euo pipefail

# Whether version $1 is below version $2 (sort -V).
below() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }
# What to do when the driver is too old: pick BRANCH (empty: none of
# BRANCHES serves NEED).
pick() { # BRANCH NEED
    if [ -z "$1" ]; then
        local newest=${BRANCHES##* }
        echo "no driver branch image-provision knows serves CUDA $2 (the newest it knows: ${newest%%:*}):" \
            "pick one that does (nvidia-smi's header says a driver's CUDA) and pass it with --nvidia-driver"
    elif [ "$FAMILY" = debian ]; then
        echo "Debian packages one driver branch, nvidia-driver: use Ubuntu 22.04 or 24.04 with --nvidia-driver $1" \
            "(CUDA $2 or later)"
    else
        echo "pick the driver branch $1 (CUDA $2 or later): \`image-provision update --upgrade-driver" \
            "--nvidia-driver $1\` moves this server to it, with the reboot it needs (bootstrap leaves a working" \
            "driver alone); a new server gets it with --nvidia-driver $1"
    fi
}
# The arguments joined by ", ".
joined() { local IFS=$'\x1f'; local s="$*"; printf '%s' "${s//$'\x1f'/, }"; }

header=$(timeout 30 nvidia-smi 2>/dev/null | grep -m 1 'CUDA Version:' || true)
driver_cuda=$(sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' <<<"$header")
driver=$(sed -n 's/.*Driver Version: *\([0-9][0-9.]*\).*/\1/p' <<<"$header")
if [ -z "$driver_cuda" ]; then
    echo "nvidia-smi does not say the driver's CUDA version; run \`nvidia-smi\` on the host" >&2
    exit 1
fi

images='' errors=$(mktemp) deferred_projects=()
trap 'rm -f "$errors"' EXIT
for dir in $PROJECT_DIRS; do
    [ -f "$dir/docker-compose.yml" ] || [ -f "$dir/compose.yaml" ] || [ -f "$dir/compose.yml" ] ||
        [ -f "$dir/docker-compose.yaml" ] || continue
    env_file=()
    [ ! -f "$dir/.env" ] || env_file=(--env-file "$dir/.env")
    if ! config=$(docker compose --project-directory "$dir" "${env_file[@]}" config --format json 2>"$errors"); then
        # Before the steps that write it (the LLM's key, its settings), a
        # project may not resolve yet: the stack step checks it after them.
        if [ "$DEFER_UNPULLED" = yes ]; then
            deferred_projects+=("$dir")
            continue
        fi
        echo "docker compose config failed in $dir: $(tail -n 3 "$errors")" >&2
        exit 1
    fi
    images+=$(jq -r '
        .services[]
        | select([.deploy.resources.reservations.devices // [] | .[]
                  | select(.driver == "nvidia" or ((.capabilities // []) | flatten | index("gpu")))] | length > 0)
        | .image' <<<"$config")$'\n'
done
images=$(sort -u <<<"$images" | sed '/^$/d')
if [ -z "$images" ]; then
    echo "result: driver ${driver:-?} (CUDA $driver_cuda); no GPU images to check"
    exit 0
fi

highest='' needs='' met=() unknown=() pending=()
while read -r image; do
    inspect() { docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" 2>/dev/null; }
    if ! env=$(inspect); then
        if [ "$DEFER_UNPULLED" = pull ]; then
            echo "pulling $image to read the CUDA it needs"
            docker pull -q "$image" >/dev/null 2>"$errors" || echo "docker pull $image: $(tail -n 1 "$errors")" >&2
        fi
        if [ "$DEFER_UNPULLED" = yes ]; then
            pending+=("$image")
            continue
        elif ! env=$(inspect); then
            unknown+=("$image (not pulled)")
            continue
        fi
    fi
    required=$(sed -n 's/^NVIDIA_REQUIRE_CUDA=.*cuda>=\([0-9][0-9.]*\).*/\1/p' <<<"$env" | head -n 1)
    if [ -z "$required" ]; then
        required=$(sed -n 's/^CUDA_VERSION=\([0-9]*\.[0-9]*\).*/\1/p' <<<"$env" | head -n 1)
    fi
    if [ -z "$required" ]; then
        unknown+=("$image (neither NVIDIA_REQUIRE_CUDA nor CUDA_VERSION)")
        continue
    fi
    met+=("$image cuda>=$required")
    if [ -z "$highest" ] || below "$highest" "$required"; then
        highest=$required needs=$image
    fi
done <<<"$images"

if [ -n "$highest" ] && below "$driver_cuda" "$highest"; then
    branch=''
    for entry in $BRANCHES; do
        if ! below "${entry#*:}" "$highest"; then
            branch=${entry%%:*}
            break
        fi
    done
    echo "the NVIDIA driver ${driver:-?} serves CUDA $driver_cuda, but $needs needs cuda>=$highest: NVIDIA's container toolkit will not start it" >&2
    pick "$branch" "$highest" >&2
    exit 1
fi

said="driver ${driver:-?} (CUDA $driver_cuda)"
[ ${#met[@]} -eq 0 ] || said+=" meets $(joined "${met[@]}")"
[ ${#unknown[@]} -eq 0 ] || said+="; CUDA needed unknown: $(joined "${unknown[@]}")"
[ ${#pending[@]} -eq 0 ] || said+="; not pulled yet, checked by the stack step: $(joined "${pending[@]}")"
[ ${#deferred_projects[@]} -eq 0 ] || said+="; not resolvable yet, checked by the stack step: $(joined "${deferred_projects[@]}")"
echo "result: $said"

#!/bin/bash
# Before the stack starts, once its images are pulled: the NVIDIA driver
# supports the CUDA its GPU services' images were built for. NVIDIA's
# container toolkit refuses to start an image whose NVIDIA_REQUIRE_CUDA the
# driver does not meet ("unsatisfied condition: cuda>=12.8"), an error that
# surfaces deep inside imageup; this says it first, naming the image and the
# branch to install. The driver's CUDA version is the one nvidia-smi's table
# header prints. Prints "result: ..." for the summary.
# Inputs: BASE_DIR; SUGGEST (what to install, e.g. nvidia-driver-570-server).
set -euo pipefail
compose=(docker compose --project-directory "$BASE_DIR" --env-file "$BASE_DIR/.env")

# One call: its table's header says both.
header=$(timeout 30 nvidia-smi 2>/dev/null | grep -m 1 'CUDA Version:' || true)
driver_cuda=$(sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' <<<"$header")
driver=$(sed -n 's/.*Driver Version: *\([0-9][0-9.]*\).*/\1/p' <<<"$header")
if [ -z "$driver_cuda" ]; then
    echo "nvidia-smi does not say the driver's CUDA version; run \`nvidia-smi\` on the host" >&2
    exit 1
fi

# The images of the services that ask for a GPU (a device reservation with
# the nvidia driver or the gpu capability), as compose resolves them.
images=$("${compose[@]}" config --format json 2>/dev/null | jq -r '
    .services[]
    | select([.deploy.resources.reservations.devices // [] | .[]
              | select(.driver == "nvidia" or ((.capabilities // []) | flatten | index("gpu")))] | length > 0)
    | .image' | sort -u)

highest='' needs=''
for image in $images; do
    # An image not pulled cannot be read; the pull came first, so it is rare.
    required=$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" 2>/dev/null |
        sed -n 's/^NVIDIA_REQUIRE_CUDA=.*cuda>=\([0-9][0-9.]*\).*/\1/p' | head -n 1 || true)
    [ -n "$required" ] || continue
    if [ -z "$highest" ] || [ "$(printf '%s\n%s\n' "$highest" "$required" | sort -V | tail -n 1)" = "$required" ] &&
        [ "$required" != "$highest" ]; then
        highest=$required needs=$image
    fi
done
if [ -z "$highest" ]; then
    echo "result: driver ${driver:-?} (CUDA $driver_cuda); no GPU image states the CUDA it needs"
    exit 0
fi
if [ "$(printf '%s\n%s\n' "$driver_cuda" "$highest" | sort -V | head -n 1)" != "$highest" ] &&
    [ "$driver_cuda" != "$highest" ]; then
    echo "the NVIDIA driver ${driver:-?} supports CUDA $driver_cuda, but $needs needs cuda>=$highest (its NVIDIA_REQUIRE_CUDA): NVIDIA's container toolkit will not start it" >&2
    echo "install $SUGGEST on the host (sudo apt-get install, then reboot: a working driver is never replaced by bootstrap) and run again" >&2
    exit 1
fi
echo "result: driver ${driver:-?} (CUDA $driver_cuda) meets the GPU images' cuda>=$highest ($needs)"

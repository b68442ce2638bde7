#!/usr/bin/env python3
"""Build the stand-in IMAGE service images as OCI image layouts.

Usage: oci-images.py OUT BUSYBOX NAME...

For each NAME (an image's repository name below ghcr.io/shared-reality-lab,
e.g. image-orchestrator) writes OUT/NAME, an OCI image layout tagged
"latest", that build-registry.sh copies into a real registry with skopeo:
one layer holding a static busybox and /standin/service, the service's
entry point. ghcr.io's real images cannot be fetched here, so these stand in
for them: small, started and stopped by real dockerd and compose like the
real ones. image-orchestrator serves GET /health on port 8080 (the stack's
health check asks it with wget); every service exits at once on SIGTERM, as
`compose down` expects.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

SERVICE = """#!/bin/sh
# image-provision test stand-in for an IMAGE service ($STANDIN_SERVICE).
trap 'exit 0' TERM INT
echo "$STANDIN_SERVICE (test stand-in) started"
if [ "$STANDIN_SERVICE" = image-orchestrator ]; then
    httpd -p 8080 -h /www
fi
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


def image(out, name, uncompressed, compressed):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layer_digest, layer_size = blob(out, compressed)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "/standin/service"],
            "Env": ["PATH=/bin", "STANDIN_SERVICE=" + name],
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
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: oci-images.py OUT BUSYBOX NAME...")
    out, busybox_path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(busybox_path, "rb") as f:
        busybox = f.read()
    uncompressed, compressed = layer(busybox)
    for name in names:
        image(os.path.join(out, name), name, uncompressed, compressed)


if __name__ == "__main__":
    main()

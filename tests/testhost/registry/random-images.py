#!/usr/bin/env python3
"""Images of random, incompressible layers, for the pull benchmark
(benches/pull.rs), written straight into a registry's filesystem storage
(what Debian's docker-registry serves; TestHost::enable_extra_registry).

Usage: random-images.py STORAGE COUNT LAYERS MIB

Writes bench/image-1 .. bench/image-COUNT, each tagged "latest", each of
LAYERS layers holding one file of MIB MiB from os.urandom: no two layers
alike, so every pull downloads every layer. The layers are gzip streams of
stored (level 0) blocks, as large as their content: what a pull of a
registry's compressed layers costs, without the time gzip would spend
making them here.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MIB = 1 << 20


def put_blob(storage, data):
    digest = hashlib.sha256(data).hexdigest()
    d = os.path.join(storage, "docker/registry/v2/blobs/sha256", digest[:2], digest)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "data"), "wb") as f:
        f.write(data)
    return digest


def link(storage, repo, *path_and_digest):
    *parts, digest = path_and_digest
    d = os.path.join(storage, "docker/registry/v2/repositories", repo, *parts)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "link"), "w") as f:
        f.write("sha256:" + digest)


def random_layer(mib):
    content = io.BytesIO()
    with tarfile.open(fileobj=content, mode="w") as tar:
        info = tarfile.TarInfo("payload")
        info.size = mib * MIB
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    tar_bytes = content.getvalue()
    return hashlib.sha256(tar_bytes).hexdigest(), gzip.compress(tar_bytes, compresslevel=0, mtime=0)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: random-images.py STORAGE COUNT LAYERS MIB")
    storage, count, layers, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    for n in range(1, count + 1):
        repo = "bench/image-%d" % n
        diff_ids, descriptors = [], []
        for _ in range(layers):
            diff_id, gz = random_layer(mib)
            digest = put_blob(storage, gz)
            link(storage, repo, "_layers", "sha256", digest, digest)
            diff_ids.append("sha256:" + diff_id)
            descriptors.append(
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + digest, "size": len(gz)}
            )
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/payload"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            },
            sort_keys=True,
        ).encode()
        config_digest = put_blob(storage, config)
        link(storage, repo, "_layers", "sha256", config_digest, config_digest)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:" + config_digest,
                    "size": len(config),
                },
                "layers": descriptors,
            },
            sort_keys=True,
        ).encode()
        manifest_digest = put_blob(storage, manifest)
        link(storage, repo, "_manifests", "revisions", "sha256", manifest_digest, manifest_digest)
        link(storage, repo, "_manifests", "tags", "latest", "current", manifest_digest)
        link(storage, repo, "_manifests", "tags", "latest", "index", "sha256", manifest_digest, manifest_digest)


if __name__ == "__main__":
    main()

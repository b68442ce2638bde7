#!/usr/bin/env python3
"""A new version of one of the test registry's images, written straight into
a registry's filesystem storage (a host's own copy: TestHost::publish_image):
what a push of a newer `latest` to ghcr.io does, for the tests of `update`.

Usage: republish.py STORAGE REPO TAG ENV...

REPO (e.g. shared-reality-lab/image-preprocessor-nominatim) at TAG gets a
new manifest: the same layers, its config's Env with each ENV (NAME=VALUE)
added or replacing that NAME, so the image differs (another config, another
digest) and behaves as ENV says: STANDIN_HEALTH=never gives a version that
runs but never answers its health check (standin-service.py), a "broken"
release. Prints the new manifest's digest (sha256:...). Every file it
changes is replaced (written beside, then renamed), never written in place.
"""
import hashlib
import json
import os
import sys

V2 = "docker/registry/v2"


def blob_path(storage, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(storage, V2, "blobs/sha256", hexd[:2], hexd, "data")


def replace(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def put_blob(storage, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    replace(blob_path(storage, digest), data)
    return digest


def link(storage, repo, parts, digest):
    replace(os.path.join(storage, V2, "repositories", repo, *parts, "link"), digest.encode())


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: republish.py STORAGE REPO TAG ENV...")
    storage, repo, tag, env = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    tags = os.path.join(storage, V2, "repositories", repo, "_manifests/tags", tag)
    with open(os.path.join(tags, "current/link")) as f:
        current = f.read().strip()
    with open(blob_path(storage, current), "rb") as f:
        manifest = json.load(f)
    with open(blob_path(storage, manifest["config"]["digest"]), "rb") as f:
        config = json.load(f)
    names = {e.split("=", 1)[0] for e in env}
    kept = [e for e in config["config"].get("Env", []) if e.split("=", 1)[0] not in names]
    config["config"]["Env"] = kept + env
    data = json.dumps(config, sort_keys=True).encode()
    config_digest = put_blob(storage, data)
    link(storage, repo, ["_layers", "sha256", config_digest.split(":")[1]], config_digest)
    manifest["config"] = dict(manifest["config"], digest=config_digest, size=len(data))
    data = json.dumps(manifest, sort_keys=True).encode()
    digest = put_blob(storage, data)
    hexd = digest.split(":")[1]
    link(storage, repo, ["_manifests", "revisions", "sha256", hexd], digest)
    link(storage, repo, ["_manifests", "tags", tag, "index", "sha256", hexd], digest)
    link(storage, repo, ["_manifests", "tags", tag, "current"], digest)
    print(digest)


if __name__ == "__main__":
    main()

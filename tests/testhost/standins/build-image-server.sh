#!/bin/bash
# Builds the stand-in IMAGE-server repository the test host clones instead of
# GitHub's: OUTDIR/Shared-Reality-Lab/IMAGE-server.git, a bare repository with
# branch main (the files under image-server/: scripts/imageup, warmup,
# healthcheck and imagelogs, config/express-common.env, docker-compose.yml,
# ec2-docker-compose.yml) and branch schemas, the content of the `schemas`
# submodule, whose URL in .gitmodules is the SSH form, as in the real one.
# Runs on the test machine (its git); the host reaches the repository
# through the git-remote-https stand-in.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: build-image-server.sh OUTDIR" >&2; exit 2; }
bare=$1/Shared-Reality-Lab/IMAGE-server.git
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=tests GIT_AUTHOR_EMAIL=tests@image-provision.invalid
export GIT_COMMITTER_NAME=tests GIT_COMMITTER_EMAIL=tests@image-provision.invalid
export GIT_CONFIG_NOSYSTEM=1 HOME=$work
g() { git -C "$work/repo" "$@"; }

rm -rf "$bare"
mkdir -p "$bare"
git init -q --bare --initial-branch=main "$bare"
git init -q --initial-branch=schemas "$work/repo"
cat >"$work/repo/request.schema.json" <<'SCHEMA'
{
  "$schema": "http://json-schema.org/draft-07/schema",
  "title": "request (test stand-in)"
}
SCHEMA
g add -A
g commit -q -m "schemas (test stand-in)"
schemas=$(g rev-parse HEAD)
g push -q "$bare" schemas

g checkout -q --orphan main
g rm -q -rf .
cp -a "$here/image-server/." "$work/repo/"
cat >"$work/repo/.gitmodules" <<'GITMODULES'
[submodule "schemas"]
	path = schemas
	url = git@github.com:Shared-Reality-Lab/IMAGE-server.git
	branch = schemas
GITMODULES
g add -A
g update-index --add --cacheinfo "160000,$schemas,schemas"
g commit -q -m "IMAGE-server (test stand-in)"
g push -q "$bare" main
echo "$bare"

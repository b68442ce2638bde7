# shellcheck shell=bash
# The generated files' facts (playbooks/src/template): the sha256, mode and
# owner of each file a step writes, as `file.PATH=SHA256 MODE OWNER` (or
# `absent`), so a step uploads only what differs. As root: files_facts runs in
# run_root_facts.
# Inputs: FILES, the space-separated paths.

root_facts_env+=(FILES)
files_facts() {
    local present=() sum m f
    local -A mode=() owner=()
    for f in ${FILES:-}; do
        if [ -f "$f" ]; then present+=("$f"); else kv "file.$f" absent; fi
    done
    if [ ${#present[@]} -gt 0 ]; then
        local u
        while read -r m u f; do mode[$f]=$m owner[$f]=$u; done < <(stat -c '%a %U %n' -- "${present[@]}")
        while read -r sum f; do kv "file.$f" "$sum ${mode[$f]:-} ${owner[$f]:-}"; done < <(sha256sum -- "${present[@]}")
    fi
}

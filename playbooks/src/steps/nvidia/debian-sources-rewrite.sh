# shellcheck shell=bash
# A library, not a script: the nvidia step (mod.rs beside this file) puts it
# in front of debian-components.sh, which writes what it prints, and of its
# facts script, which compares what it prints with each file to tell whether
# debian-components.sh would change anything
# (nvidia.debian_components_lacking). One rewrite, so the two always agree.

debian_sources_rewrite() { # FILE CODENAME COMPONENTS: the file as it should be, on stdout
    local format=list
    case $1 in *.sources) format=sources ;; esac
    awk -v format="$format" -v codename="$2" -v want="$3" '
        function has(list, word,   n, a, i) { n = split(list, a, /[ \t]+/); for (i = 1; i <= n; i++) if (a[i] == word) return 1; return 0 }
        function debian_suite(list,   n, a, i) { n = split(list, a, /[ \t]+/); for (i = 1; i <= n; i++) if (a[i] == codename || index(a[i], codename "-") == 1) return 1; return 0 }
        function missing(comps,   n, w, i, out) { n = split(want, w, " "); out = ""; for (i = 1; i <= n; i++) if (!has(comps, w[i]) && !has(out, w[i])) out = out " " w[i]; return out }
        function rtrim(s) { sub(/[ \t]+$/, "", s); return s }
        function flush(   i, m) {
            if (comps_at && enabled != "no" && debian_suite(suites) && has(comps, "main") && (m = missing(comps)) != "")
                stanza[comps_at] = rtrim(stanza[comps_at]) m
            for (i = 1; i <= lines; i++) print stanza[i]
            lines = 0; comps_at = 0; suites = ""; comps = ""; enabled = ""
        }
        format == "list" {
            line = $0; comment = ""
            c = index(line, "#")
            if (c) { comment = substr(line, c); line = substr(line, 1, c - 1) }
            fields = line
            sub(/^[ \t]+/, "", fields); sub(/\[[^]]*\]/, "", fields)
            n = split(fields, f, /[ \t]+/)
            if ((f[1] != "deb" && f[1] != "deb-src") || n < 4 || !debian_suite(f[3])) { print; next }
            comps = ""
            for (i = 4; i <= n; i++) comps = comps " " f[i]
            if (!has(comps, "main") || (m = missing(comps)) == "") { print; next }
            print rtrim(line) m (comment == "" ? "" : " " comment)
            next
        }
        /^[ \t]*$/ { flush(); print; next }
        {
            stanza[++lines] = $0
            if ($0 ~ /^[A-Za-z][A-Za-z-]*:/) {
                name = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
                if (name == "suites") suites = value
                else if (name == "components") { comps = value; comps_at = lines }
                else if (name == "enabled") { enabled = value; gsub(/[ \t]/, "", enabled) }
            }
        }
        END { if (format == "sources") flush() }
    ' "$1"
}

#!/bin/sh
# Checks a running `vaultctl serve` against docs/openapi.json with schemathesis: every route
# under /api/v1 but /jobs/events (a stream of an hour), every check, a fixed seed and a
# bounded number of examples, at most 10 minutes. Exits non-zero when schemathesis finds a
# failure (or cannot run).
#
#   scripts/api-spec-check.sh PORT TOKEN_FILE
#
# Needs python3 and schemathesis, tested with 4.32.5:
#   python3 -m pip install schemathesis==4.32.5
#
# It WRITES to the repository the server serves: it starts backups, deletes, undeletes and
# purges points and applies retention. Point it at a scratch repository only.
#
# Before the run it reads the vaults, servers, points, disks, filesystems and a few paths
# the server has and gives them to schemathesis as fuzz dictionaries, so that most generated
# path parameters name things that exist (otherwise nearly every call is a 404), with a
# dictionary of edge-case Range headers.
# SCHEMATHESIS_ARGS adds options (e.g. "--max-examples 100" or "--report junit --report-dir /tmp/r").
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 PORT TOKEN_FILE" >&2
    exit 2
fi
port=$1
token_file=$2
case $port in '' | *[!0-9]*) echo "$0: bad port '$port'" >&2; exit 2 ;; esac
[ -r "$token_file" ] || { echo "$0: cannot read the token file $token_file" >&2; exit 2; }
# Through python3 -m, so a pip install without a shim on the PATH (pyenv) still runs.
python3 -m schemathesis.cli --version >/dev/null 2>&1 || {
    echo "$0: schemathesis is not installed: python3 -m pip install schemathesis==4.32.5" >&2
    exit 2
}

here=$(cd "$(dirname "$0")/.." && pwd)
spec=$here/docs/openapi.json
base=http://127.0.0.1:$port/api/v1
token=$(tr -d '\r\n' <"$token_file")
work=$(mktemp -d "${TMPDIR:-/tmp}/api-spec-check.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# Fuzz dictionaries from what the server has (a failure here is fatal: the server must answer).
API_BASE=$base API_TOKEN=$token python3 - "$work/schemathesis.toml" <<'EOF'
import json, os, sys, urllib.parse, urllib.request

base, token = os.environ["API_BASE"], os.environ["API_TOKEN"]

def get(path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError:
        return None

vaults = [v["vault"] for v in get("/vaults")]
servers = [s["server"] for s in get("/servers")]
# Readable points first (active, not deleted), then a few others (failed, deleted, purged).
points, disks, volumes, paths = [], set(), set(), {"/"}
for p in get("/points?limit=30")["points"] + get("/history?limit=10")["points"]:
    if p["id"] not in points:
        points.append(p["id"])
    disks.update(d["name"] for d in p["disks"])
for point in points[:5]:
    for disk in get("/points/%s/volumes" % point) or []:
        for volume in disk["contents"]["volumes"]:
            volumes.add(volume["name"])
            if not volume["shown"]:
                continue
            listing = get("/points/%s/files/%s?path=/" % (point, urllib.parse.quote(volume["name"])))
            for entry in (listing or {}).get("entries", [])[:20]:
                paths.add("/" + entry["name"])
                if entry["kind"] != "directory":
                    continue
                inner = get("/points/%s/files/%s?path=%s" % (point, urllib.parse.quote(volume["name"]),
                                                            urllib.parse.quote("/" + entry["name"])))
                for file in (inner or {}).get("entries", [])[:10]:
                    paths.add("/%s/%s" % (entry["name"], file["name"]))

def values(items):
    return json.dumps(sorted(items) or ["none"])

with open(sys.argv[1], "w") as config:
    config.write("[dictionaries.vaults]\nvalues = %s\n" % values(vaults))
    config.write("[dictionaries.servers]\nvalues = %s\n" % values(servers))
    config.write("[dictionaries.points]\nvalues = %s\n" % values(points + [p[:8] for p in points[:3]]))
    config.write("[dictionaries.disks]\nvalues = %s\n" % values(disks))
    config.write("[dictionaries.volumes]\nvalues = %s\n" % values(volumes))
    config.write("[dictionaries.paths]\nvalues = %s\n" % values(paths))
    # Ranges a download reads, the edges among them: generated strings are nearly never one.
    ranges = ["bytes=0-0", "bytes=0-", "bytes=1-2", "bytes=-1", "bytes=-5", "bytes=-0", "bytes=5-2",
              "bytes=4096-8191", "bytes=0-9223372036854775806", "bytes=0-9223372036854775807",
              "bytes=9223372036854775807-", "bytes=-9223372036854775807", "bytes=0-1,4-5"]
    config.write("[dictionaries.ranges]\nvalues = %s\n" % json.dumps(ranges))
    # A valid range that starts past the end is answered 416, as it must be.
    config.write('\n[checks.positive_data_acceptance]\n'
                 'expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "416", "429", "5xx"]\n')
    config.write("\n[parameters]\n")
    config.write('"header.Range" = { dictionary = "ranges", probability = 0.7 }\n')
    for name, dictionary, probability in [
            ("path.vault", "vaults", 0.5), ("path.server", "servers", 0.5), ("path.point", "points", 0.7),
            ("path.disk", "disks", 0.7), ("path.volume", "volumes", 0.7), ("query.path", "paths", 0.7)]:
        config.write('"%s" = { dictionary = "%s", probability = %s }\n' % (name, dictionary, probability))
print("dictionaries: %d vaults, %d servers, %d points, %d disks, %d filesystems, %d paths"
      % (len(vaults), len(servers), len(points), len(disks), len(volumes), len(paths)))
EOF

# Run in the scratch folder: schemathesis and hypothesis leave caches in the current one.
# (A report asked for in SCHEMATHESIS_ARGS needs an absolute --report-dir.)
cd "$work"
# The operations run one at a time (-w 1): the server does real work (backups, verify,
# image downloads) and this must not swamp a small machine.
# shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is split on purpose.
timeout 600 python3 -m schemathesis.cli --config-file "$work/schemathesis.toml" run "$spec" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --exclude-path /jobs/events \
    --max-examples 50 \
    --seed 20261206 \
    --generation-database none \
    --workers 1 \
    --request-timeout 120 \
    --no-color \
    ${SCHEMATHESIS_ARGS:-}

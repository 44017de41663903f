#!/usr/bin/env python3
"""vaultfs against borg and restic, side by side in one run, on the benchmark corpus.

Every figure is the median of BENCH_RUNS runs (default 3) or more (at least 5 for the cheap
paired rows) with its min and max. BENCH_ONLY=restore measures only the restores, BENCH_ONLY=rbd only the Ceph RBD
disk rows, BENCH_ONLY=nbd only the qemu NBD disk rows, BENCH_ONLY=copy only the copy to a bucket, BENCH_ONLY=web only the web console. BENCH_ONLY=against with BENCH_AGAINST=DIR (a folder holding
another build's vaultctl and vaultfs, e.g. the previous commit's) measures this build against
that one instead, side by side in one run: backups, cold read, peak RSS, fio, export. Prints Markdown tables and writes the same figures to
WORK/results.json. Run through scripts/bench.sh, which installs the tools, builds vaultfs as
`make release` does and makes the corpus. Needs root: it drops the page cache and mounts.
"""
import json, os, random, shutil, signal, statistics, subprocess, sys, time, uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "bench-work")
# The release binaries `make install` and the .deb ship (the Swift runtime linked in).
BIN = os.path.join(TOP, ".build-static", "release")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CORPUS = os.path.join(WORK, "corpus")
RUN = os.path.join(WORK, "run")
DISK = os.path.join(RUN, "disk.img")
MNT = os.path.join(RUN, "mnt")
VAULTCTL, VAULTFS = os.path.join(BIN, "vaultctl"), os.path.join(BIN, "vaultfs")
ENV = dict(os.environ, VAULT_REPO=os.path.join(RUN, "vaultfs-repo"), RESTIC_REPOSITORY=os.path.join(RUN, "restic-repo"),
           RESTIC_PASSWORD="bench", BORG_REPO=os.path.join(RUN, "borg-repo"),
           BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
           # The servers' host configuration (disks, hooks): the bench's own, never /etc/vaultfs.
           VAULT_CONFIG_DIR=os.path.join(WORK, "etc"),
           # Instant restores the bench starts: its own folder, never /var/lib/vaultfs.
           VAULT_RESTORE_DIR=os.path.join(WORK, "restores"))
# The VM the instant rows boot (scripts/vm-kit.sh; the tests keep the same one).
VMKIT = "/var/cache/vaultfs-tests/vmkit"
PASSPHRASE = "bench passphrase"
SLOT = {1: "2030-01-01T00:00Z", 2: "2030-01-01T01:00Z", 3: "2030-01-01T02:00Z"}
POINT = {1: "20300101T000000Z", 2: "20300101T010000Z", 3: "20300101T020000Z"}

samples = {}          # (measurement, tool) -> [values]
units = {}            # measurement -> unit


def log(text):
    print(text, file=sys.stderr, flush=True)


def record(name, tool, value, unit="s"):
    samples.setdefault((name, tool), []).append(value)
    units[name] = unit
    log(f"  {name:<36} {tool:<17} {value:10.3f} {unit}")


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def drop_caches():
    """An empty page cache over memory the host backs. This machine is a VM whose balloon
    reports free pages to the host (virtio-balloon free page reporting), which takes them
    back: after drop_caches, each page the next command touches first costs a fault in the
    host, about 2 s for a 3 GiB read, varying with the host's load and the same for every
    tool (borg's cold read took 7.2-7.8 s, 5.4-5.5 s with this). So right after dropping
    the cache, up to 4 GiB are touched and freed again, before anything is timed."""
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
    touched = b"\x01" * min(4 << 30, available // 2)
    del touched


def timed(*args, cold=True, env=None):
    if cold:
        drop_caches()
    start = time.monotonic()
    done = subprocess.run(list(args), env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed


def in_turn(r, pair):
    """`pair` in order on even runs and reversed on odd ones, so neither side always goes first."""
    return pair[::-1] if r % 2 else pair


def use_version(v):
    subprocess.run(["cp", "--sparse=always", os.path.join(CORPUS, f"disk-v{v}.img"), DISK], check=True)


def du(path):
    return int(subprocess.run(["du", "-sb", path], stdout=subprocess.PIPE, text=True).stdout.split()[0])


def unmount(path):
    if subprocess.run(["mountpoint", "-q", path]).returncode == 0:
        subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL)
        if subprocess.run(["mountpoint", "-q", path]).returncode == 0:
            subprocess.run(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)


def wait_for(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class VaultfsMount:
    """A fresh vaultfs daemon in the foreground (so its pid and peak RSS are known)."""

    def __init__(self, repo, path, options="", passphrase="", binary=None):
        os.makedirs(path, exist_ok=True)
        args = [binary or VAULTFS, repo, path, "-f"] + (["-o", options] if options else [])
        env = dict(ENV, VAULT_PASSPHRASE=passphrase)
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.path = path
        if not wait_for(lambda: subprocess.run(["mountpoint", "-q", path]).returncode == 0, 30):
            raise SystemExit("bench: vaultfs did not mount")

    def peak_rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))

    def close(self):
        unmount(self.path)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def fio(path, name, rw, bs, jobs=1, size=None, runtime=15):
    """fio on one file; returns (IOPS, MB/s, p50, p99, p99.9 in ms)."""
    args = ["fio", "--name", name, "--filename", path, "--readonly", "--rw", rw, "--bs", bs, "--ioengine", "psync",
            "--numjobs", str(jobs), "--group_reporting", "--output-format=json", "--invalidate=1"]
    if rw == "randread":
        args += ["--time_based", "--runtime", str(runtime), "--randrepeat=0", "--norandommap"]
    if size:
        args += ["--size", size]
    out = subprocess.run(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench: fio failed: {out.stderr}")
    job = json.loads(out.stdout)["jobs"][0]["read"]
    pct = job["clat_ns"].get("percentile", {})
    ms = lambda key: pct.get(key, 0) / 1e6
    return job["iops"], job["bw_bytes"] / 1e6, ms("50.000000"), ms("99.000000"), ms("99.900000")


def data_extent(path):
    """Bytes from the start of the image that hold most of its data (fio stays there)."""
    allocated = os.stat(path).st_blocks * 512
    return f"{max(64, allocated // (1 << 20))}M"


def prepare_vaultfs(run, *init, ctl=None):
    """A new vaultfs repository (`init` arguments) with the bench vault, policy and server."""
    ctl = ctl or VAULTCTL
    run(ctl, "init", *init)
    run(ctl, "vault", "create", "bench")
    run(ctl, "policy", "set", "bench", "--start", "00:00", "--every", "1h", "--incrementals", "10", "--keep-fulls", "2",
        "--now", "2030-01-01T00:00Z")
    run(ctl, "server", "add", "web", "--vault", "bench", "--disk", f"root={DISK}")


def fresh_repositories():
    """An empty run folder with a new repository of each tool (vaultfs's with the bench's vault and server)."""
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(MNT)
    prepare_vaultfs(sh, ENV["VAULT_REPO"])
    sh("restic", "init")
    sh("borg", "init", "-e", "none")


def one_run(r):
    log(f"== run {r + 1} of {RUNS}")
    fresh_repositories()
    for v, name in [(1, "full backup (v1)"), (2, "incremental backup (v2)"), (3, "incremental backup (v3)")]:
        use_version(v)
        record(name, "vaultfs", timed(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v]))
        record(name, "restic", timed("restic", "backup", "--quiet", DISK))
        record(name, "borg", timed("borg", "create", f"::v{v}", DISK))
    record("repository size", "vaultfs", du(ENV["VAULT_REPO"]) / 1e6, "MB")
    record("repository size", "restic", du(ENV["RESTIC_REPOSITORY"]) / 1e6, "MB")
    record("repository size", "borg", du(ENV["BORG_REPO"]) / 1e6, "MB")

    v2 = os.path.join(CORPUS, "disk-v2.img")
    image = lambda m: os.path.join(m.path, "bench", "web", POINT[2], "root.img")
    # Cold sequential read of the whole image through each tool's mount; vaultfs's is cheap,
    # so it reads twice, each from a fresh daemon.
    for k in range(2):
        m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        record("cold read of the image (dd 1M)", "vaultfs", timed("dd", f"if={image(m)}", "of=/dev/null", "bs=1M"))
        if k == 0:
            record("daemon peak RSS after a cold read", "vaultfs", m.peak_rss_kib() / 1024, "MiB")
            record("warm re-read of the image", "vaultfs", timed("dd", f"if={image(m)}", "of=/dev/null", "bs=1M", cold=False))
            if subprocess.run(["cmp", image(m), v2]).returncode != 0:
                raise SystemExit("bench: the vaultfs image differs from disk-v2.img")
        m.close()
    for tool, mount_args in [("restic", ["restic", "mount"]), ("borg", ["borg", "mount", "-f", "::v2"])]:
        path = os.path.join(MNT, tool)
        os.makedirs(path, exist_ok=True)
        p = subprocess.Popen(mount_args + [path], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = path + DISK
        if tool == "restic":
            wait_for(lambda: os.path.isdir(os.path.join(path, "snapshots")), 60)
            snaps = sorted(d for d in os.listdir(os.path.join(path, "snapshots")) if d != "latest")
            target = os.path.join(path, "snapshots", snaps[1]) + DISK
        wait_for(lambda: os.path.exists(target), 60)
        record("cold read of the image (dd 1M)", tool, timed("dd", f"if={target}", "of=/dev/null", "bs=1M"))
        with open(f"/proc/{p.pid}/status") as f:
            record("daemon peak RSS after a cold read", tool, next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024, "MiB")
        unmount(path)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)

    # fio on the vaultfs image, each from a fresh daemon and an empty page cache.
    extent = data_extent(v2)
    for label, rw, bs, jobs in [("fio 4K random QD1", "randread", "4k", 1), ("fio 4K random 4 jobs", "randread", "4k", 4),
                                ("fio 1M sequential", "read", "1m", 1)]:
        m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        drop_caches()
        iops, mbs, p50, p99, p999 = fio(image(m), label.replace(" ", "-"), rw, bs, jobs, size=extent if rw == "randread" else None)
        if rw == "randread":
            record(f"{label} IOPS", "vaultfs", iops, "IOPS")
            record(f"{label} p50", "vaultfs", p50, "ms")
            record(f"{label} p99", "vaultfs", p99, "ms")
            record(f"{label} p99.9", "vaultfs", p999, "ms")
        else:
            record(f"{label} throughput", "vaultfs", mbs, "MB/s")
        m.close()

    # Export against borg extract, to a fresh file each.
    out = os.path.join(RUN, "export.img")
    record("export of the image", "vaultfs", timed(VAULTCTL, "export", f"web/{POINT[2]}", "-o", out))
    os.unlink(out)
    extract = os.path.join(RUN, "extract")
    os.makedirs(extract)
    drop_caches()
    start = time.monotonic()
    subprocess.run(["borg", "extract", "--sparse", "::v2"], cwd=extract, env=ENV, check=True)
    record("export of the image", "borg", time.monotonic() - start)
    # The same extract is borg's full restore; restic restores the same image.
    record("restore onto a new file", "borg", time.monotonic() - start)
    shutil.rmtree(extract)
    restore_rows()


def restore_run(r):
    """BENCH_ONLY=restore: the three versions backed up by each tool, then the restore rows."""
    log(f"== restore run {r + 1} of {RUNS}")
    fresh_repositories()
    for v in (1, 2, 3):
        use_version(v)
        sh(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v])
        sh("restic", "backup", "--quiet", DISK)
        sh("borg", "create", f"::v{v}", DISK)
    extract = os.path.join(RUN, "extract")
    os.makedirs(extract)
    drop_caches()
    start = time.monotonic()
    subprocess.run(["borg", "extract", "--sparse", "::v2"], cwd=extract, env=ENV, check=True)
    record("restore onto a new file", "borg", time.monotonic() - start)
    shutil.rmtree(extract)
    restore_rows()


def restore_rows():
    """vaultctl restore: onto a new file (against restic restore and borg extract), onto that
    file after 1% of its chunks changed, and from point v2 to v3 with --from-point."""
    out = os.path.join(RUN, "restore.img")
    record("restore onto a new file", "vaultfs", timed(VAULTCTL, "restore", f"web/{POINT[2]}", "--to", out))
    target = os.path.join(RUN, "restic-restore")
    snaps = json.loads(sh("restic", "snapshots", "--json").stdout)
    drop_caches()
    start = time.monotonic()
    sh("restic", "restore", "--quiet", snaps[1]["short_id"], "--target", target)
    record("restore onto a new file", "restic", time.monotonic() - start)
    shutil.rmtree(target)
    with open(os.path.join(ENV["VAULT_REPO"], "repository.json")) as f:
        chunk = json.load(f)["chunkSize"]
    size = os.path.getsize(out)
    rng = random.Random(7)
    with open(out, "r+b") as f:
        for position in rng.sample(range(size // chunk), max(1, size // chunk // 100)):
            f.seek(position * chunk + 4096)
            f.write(rng.randbytes(4096))
    record("restore: diff-only, 1% of chunks changed", "vaultfs",
           timed(VAULTCTL, "restore", f"web/{POINT[2]}", "--to", out))
    if subprocess.run(["cmp", out, os.path.join(CORPUS, "disk-v2.img")]).returncode != 0:
        raise SystemExit("bench: the diff-only restore differs from disk-v2.img")
    record("restore: --from-point v2 to v3", "vaultfs",
           timed(VAULTCTL, "restore", f"web/{POINT[3]}", "--to", out, "--from-point", POINT[2]))
    if subprocess.run(["cmp", out, os.path.join(CORPUS, "disk-v3.img")]).returncode != 0:
        raise SystemExit("bench: the --from-point restore differs from disk-v3.img")
    os.unlink(out)


def vm_first_read(disk, timeout=240):
    """Boots the test VM (qemu, TCG) with `disk` as its root; returns the seconds from the
    start of qemu to the VM's first read of the disk (its mount of it, printed on the serial
    console as it happens)."""
    start = time.monotonic()
    vm = subprocess.Popen([os.path.join(TOP, "scripts", "vm-boot.sh"), VMKIT, disk], env=dict(ENV, VM_TIMEOUT=str(timeout)),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first, lines = None, []
    for line in vm.stdout:
        lines.append(line)
        if first is None and "VAULTFS-VM: first-read-done" in line:
            first = time.monotonic() - start
    vm.wait()
    if vm.returncode != 0 or first is None:
        raise SystemExit("bench: the VM did not boot from " + disk + ":\n" + "".join(lines[-20:]))
    return first


def instant_start(point, target):
    """`vaultctl restore --instant`: (seconds until it printed the image, its id, the image)."""
    start = time.monotonic()
    view = json.loads(sh(VAULTCTL, "restore", point, "--to", target, "--instant", "--json").stdout)
    elapsed = time.monotonic() - start
    if not view.get("image"):
        raise SystemExit(f"bench: no mount served the instant restore of {point}")
    return elapsed, view["id"], view["image"]


def instant_end(id, target):
    """Waits for restore `id` to be complete (at most 10 minutes), cancels it and removes its target."""
    if not wait_for(lambda: json.loads(sh(VAULTCTL, "restore", "status", id, "--json").stdout)[0]["state"] == "complete", 600):
        raise SystemExit(f"bench: instant restore {id} did not complete")
    sh(VAULTCTL, "restore", "cancel", id)
    os.unlink(target)


def guest_fio(path, runtime=10):
    """fio 4 KiB random reads and writes (half each, QD1) on `path`; returns read IOPS, write
    IOPS, read p99 and write p99 (ms)."""
    out = subprocess.run(["fio", "--name", "guest", "--filename", path, "--rw", "randrw", "--bs", "4k", "--ioengine", "psync",
                          "--time_based", "--runtime", str(runtime), "--randrepeat=0", "--norandommap", "--fallocate=none",
                          "--output-format=json"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench: fio failed: {out.stderr}")
    job = json.loads(out.stdout)["jobs"][0]
    p99 = lambda side: job[side]["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1e6
    return job["read"]["iops"], job["write"]["iops"], p99("read"), p99("write")


def instant_rows(runs):
    """vaultctl restore --instant: the time to a disk a VM boots from (2 GiB and 16 GiB
    disks), the background fill rate against a cold read of the same image through the mount
    (the corpus's 3 GiB disk), and a guest's 4 KiB random I/O on the image during the fill."""
    sh(os.path.join(TOP, "scripts", "vm-kit.sh"), VMKIT)
    fresh_repositories()
    disks = {}
    for size in ("2G", "16G"):
        disks[size] = os.path.join(RUN, f"vm-{size}.img")
        sh("truncate", "-s", size, disks[size])
        sh("mkfs.ext4", "-q", "-F", disks[size])
        sh(VAULTCTL, "server", "add", f"vm{size}", "--vault", "bench", "--disk", f"root={disks[size]}")
        sh(VAULTCTL, "backup", f"vm{size}", "--name", "p")
    use_version(3)
    sh(VAULTCTL, "backup", "web", "--name", "p")
    size = os.stat(DISK).st_size
    image = os.path.join(MNT, "vaultfs", "bench", "web", "p", "root.img")
    target = os.path.join(RUN, "instant.raw")
    for r in range(runs):
        log(f"== instant run {r + 1} of {runs}")
        mount = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        try:
            for disk_size, disk in disks.items():
                drop_caches()
                command, id, restored = instant_start(f"vm{disk_size}/p", target)
                vm = vm_first_read(restored)
                record(f"instant: the command, {disk_size} disk", "vaultfs", command)
                record(f"instant: command to the VM's first read, {disk_size} disk", "vaultfs", command + vm)
                instant_end(id, target)
                drop_caches()
                record(f"instant: command to the VM's first read, {disk_size} disk", "local file", vm_first_read(disk))
            record("instant: fill rate, VM idle", "mount cold read", size / timed("dd", f"if={image}", "of=/dev/null", "bs=1M") / 1e6, "MB/s")
            drop_caches()
            start = time.monotonic()
            _, id, restored = instant_start("web/p", target)
            instant_end(id, target)
            record("instant: fill rate, VM idle", "vaultfs", size / (time.monotonic() - start) / 1e6, "MB/s")
        finally:
            mount.close()
        # The guest's I/O from the start of the restore, the filler held to 100 MB/s; then the
        # same fio on the finished target, a plain local file.
        mount = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"), "restore_fill_rate=100M")
        try:
            drop_caches()
            _, id, restored = instant_start("web/p", target)
            # fio's reads land all over the disk, and each fills the chunk it touches first.
            during = guest_fio(restored)
            if not wait_for(lambda: json.loads(sh(VAULTCTL, "restore", "status", id, "--json").stdout)[0]["state"] == "complete", 600):
                raise SystemExit("bench: the fill did not complete")
            sh(VAULTCTL, "restore", "finish", id)
        finally:
            mount.close()
        drop_caches()
        local = guest_fio(target)
        os.unlink(target)
        for tool, figures in (("vaultfs", during), ("local file", local)):
            record("instant: guest 4K random reads during the fill", tool, figures[0], "IOPS")
            record("instant: guest 4K random writes during the fill", tool, figures[1], "IOPS")
            record("instant: guest read p99 during the fill", tool, figures[2], "ms")
            record("instant: guest write p99 during the fill", tool, figures[3], "ms")


def against_rows(runs, other):
    """This build against the one in `other`, in turn (each going first on alternate runs),
    each with a fresh repository and host configuration of its own."""
    builds = [("vaultfs", VAULTCTL, VAULTFS), ("vaultfs before", os.path.join(other, "vaultctl"), os.path.join(other, "vaultfs"))]
    for r in range(runs):
        log(f"== against {other}: run {r + 1} of {runs}")
        shutil.rmtree(RUN, ignore_errors=True)
        os.makedirs(MNT)
        for k, (tool, ctl, fs) in enumerate(in_turn(r, builds)):
            repo = os.path.join(RUN, f"repo-{k}")
            env = dict(ENV, VAULT_REPO=repo, VAULT_CONFIG_DIR=os.path.join(RUN, f"etc-{k}"))
            run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
            use_version(1)
            prepare_vaultfs(run, repo, ctl=ctl)
            for v, name in [(1, "full backup (v1)"), (2, "incremental backup (v2)"), (3, "incremental backup (v3)")]:
                use_version(v)
                record(f"against: {name}", tool, timed(ctl, "schedule", "run", "--once", "--now", SLOT[v], env=env))
            m = VaultfsMount(repo, os.path.join(MNT, "vaultfs"), binary=fs)
            image = os.path.join(m.path, "bench", "web", POINT[2], "root.img")
            record("against: cold read of the image (dd 1M)", tool, timed("dd", f"if={image}", "of=/dev/null", "bs=1M"))
            record("against: daemon peak RSS after a cold read", tool, m.peak_rss_kib() / 1024, "MiB")
            m.close()
            m = VaultfsMount(repo, os.path.join(MNT, "vaultfs"), binary=fs)
            drop_caches()
            extent = data_extent(os.path.join(CORPUS, "disk-v2.img"))
            iops, _, _, p99, _ = fio(image, "qd1", "randread", "4k", 1, size=extent)
            record("against: fio 4K random QD1 IOPS", tool, iops, "IOPS")
            record("against: fio 4K random QD1 p99", tool, p99, "ms")
            m.close()
            out = os.path.join(RUN, "export.img")
            record("against: export of the image", tool, timed(ctl, "export", f"web/{POINT[2]}", "-o", out, env=env))
            os.unlink(out)


def encryption_rows(runs):
    """Encrypted (AES-256-GCM, keyed chunk ids) against plain vaultfs, in pairs: each pair is
    two fresh repositories of the same disk that take the full (v1) and the incremental (v2)
    and then read the image cold from a fresh daemon, one right after the other and each
    going first in turn, so a pair shares the machine's moment. Cheap, so at least five."""
    log("== encrypted against plain, in pairs")
    repos = {"vaultfs": ([], os.path.join(RUN, "pair-plain"), ""),
             "vaultfs encrypted": (["--encryption", "aes-256-gcm"], os.path.join(RUN, "pair-encrypted"), PASSPHRASE)}
    env = lambda tool: dict(ENV, VAULT_REPO=repos[tool][1], VAULT_PASSPHRASE=repos[tool][2])
    v2 = os.path.join(CORPUS, "disk-v2.img")
    for r in range(max(runs, 5)):
        for tool, (init, repo, _) in repos.items():
            shutil.rmtree(repo, ignore_errors=True)
            prepare_vaultfs(lambda *a: subprocess.run(list(a), env=env(tool), check=True, stdout=subprocess.DEVNULL), repo, *init)
        for v, name in [(1, "full backup (v1)"), (2, "incremental backup (v2)")]:
            use_version(v)
            for tool in in_turn(r, list(repos)):
                record(f"pair: {name}", tool, timed(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v], env=env(tool)))
        for tool in in_turn(r, list(repos)):
            m = VaultfsMount(repos[tool][1], os.path.join(MNT, "pair"), passphrase=repos[tool][2])
            image = os.path.join(m.path, "bench", "web", POINT[2], "root.img")
            record("pair: cold read of the image (dd 1M)", tool, timed("dd", f"if={image}", "of=/dev/null", "bs=1M"))
            if r == 0 and subprocess.run(["cmp", image, v2]).returncode != 0:
                raise SystemExit(f"bench: the {tool} image differs from disk-v2.img")
            m.close()
    for _, repo, _ in repos.values():
        shutil.rmtree(repo, ignore_errors=True)


def fresh_ceph(gateway, folder):
    """A new local Ceph in GATEWAY (scripts/ceph-rgw.sh, 8 GiB of memstore), the one there
    before stopped, and FOLDER made empty for the run's repositories."""
    rgw = os.path.join(TOP, "scripts", "ceph-rgw.sh")
    subprocess.run([rgw, "stop", gateway], stderr=subprocess.DEVNULL) if os.path.isdir(gateway) else None
    for path in (gateway, folder):
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
    subprocess.run([rgw, "start", gateway], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, CEPH_MEMSTORE_BYTES=str(8 << 30)))


def gateway_env(gateway):
    """The variables scripts/ceph-rgw.sh wrote for the gateway in GATEWAY (endpoint, keys, region)."""
    found = {}
    for line in open(os.path.join(gateway, "env")):
        key, _, value = line.strip().partition("=")
        found[key.removeprefix("export ").strip()] = value.strip().strip("'\"")
    return found


def s3_rows(runs):
    """vaultfs against restic, both on S3 through one real Ceph RADOS Gateway on loopback
    (scripts/ceph-rgw.sh, a fresh cluster per run): full v1, incremental v2 and a cold read
    of v2 through each one's mount. The directory figures of the same run show what the
    network path costs."""
    gateway = os.path.join(WORK, "ceph")
    rgw = os.path.join(TOP, "scripts", "ceph-rgw.sh")
    # A folder of its own: the run folder keeps the folder repository later measurements read.
    s3run = os.path.join(WORK, "s3-run")
    mnt = os.path.join(s3run, "mnt")
    for r in range(runs):
        log(f"== S3 on a local Ceph gateway, run {r + 1} of {runs}")
        try:
            fresh_ceph(gateway, s3run)
            os.makedirs(mnt)
            for bucket in ("bench-vaultfs", "bench-restic"):
                subprocess.run([rgw, "create-bucket", gateway, bucket], check=True)
            gw = gateway_env(gateway)
            env = dict(ENV, **{k: gw[k] for k in ("VAULT_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
                       VAULT_REPO="s3://bench-vaultfs/repo", VAULT_STATE_DIR=os.path.join(s3run, "vaultfs-state"),
                       RESTIC_REPOSITORY=f"s3:{gw['VAULT_S3_ENDPOINT']}/bench-restic/repo")

            run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
            prepare_vaultfs(run, env["VAULT_REPO"])
            run("restic", "init")
            for v, name in [(1, "S3: full backup (v1)"), (2, "S3: incremental backup (v2)")]:
                use_version(v)
                record(name, "vaultfs S3", timed(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v], env=env))
                record(name, "restic S3", timed("restic", "backup", "--quiet", DISK, env=env))
            v2 = os.path.join(CORPUS, "disk-v2.img")
            path = os.path.join(mnt, "vaultfs-s3")
            os.makedirs(path)
            p = subprocess.Popen([VAULTFS, env["VAULT_REPO"], path, "-f"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = os.path.join(path, "bench", "web", POINT[2], "root.img")
            if not wait_for(lambda: os.path.exists(target), 60):
                raise SystemExit("bench: vaultfs on S3 did not mount")
            record("S3: cold read of the image (dd 1M)", "vaultfs S3", timed("dd", f"if={target}", "of=/dev/null", "bs=1M", env=env))
            if subprocess.run(["cmp", target, v2]).returncode != 0:
                raise SystemExit("bench: the vaultfs S3 image differs from disk-v2.img")
            unmount(path)
            p.wait(timeout=60)
            path = os.path.join(mnt, "restic-s3")
            os.makedirs(path)
            p = subprocess.Popen(["restic", "mount", path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: os.path.isdir(os.path.join(path, "snapshots")), 60)
            snaps = sorted(d for d in os.listdir(os.path.join(path, "snapshots")) if d != "latest")
            target = os.path.join(path, "snapshots", snaps[1]) + DISK
            wait_for(lambda: os.path.exists(target), 60)
            record("S3: cold read of the image (dd 1M)", "restic S3", timed("dd", f"if={target}", "of=/dev/null", "bs=1M", env=env))
            unmount(path)
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        finally:
            for path in ("vaultfs-s3", "restic-s3"):
                unmount(os.path.join(mnt, path))
            subprocess.run([rgw, "stop", gateway], stderr=subprocess.DEVNULL)
    shutil.rmtree(gateway, ignore_errors=True)
    shutil.rmtree(s3run, ignore_errors=True)


def copy_rows(runs):
    """A copy of the corpus points (v1 full, v2 and v3 incrementals) from a folder repository
    to a bucket on one real Ceph RADOS Gateway on loopback (a fresh cluster per run):
    `vaultctl copy` of a vault with a copy policy, against `restic copy` between the same two
    places (the bucket's repository made with --copy-chunker-params, so both copy deduplicated
    data once). Each side's source is made once; the page cache is dropped before each copy."""
    gateway = os.path.join(WORK, "ceph")
    rgw = os.path.join(TOP, "scripts", "ceph-rgw.sh")
    source = os.path.join(WORK, "copy-source")
    target = os.path.join(WORK, "copy-run")
    log("== copy: the source repositories (three corpus versions each)")
    shutil.rmtree(source, ignore_errors=True)
    os.makedirs(source)
    os.makedirs(RUN, exist_ok=True)
    plain = dict(ENV, VAULT_REPO=os.path.join(source, "vaultfs"), RESTIC_REPOSITORY=os.path.join(source, "restic"))
    run = lambda *a, env=plain: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
    prepare_vaultfs(run, plain["VAULT_REPO"])
    run("restic", "init")
    for v in (1, 2, 3):
        use_version(v)
        run(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v])
        run("restic", "backup", "--quiet", DISK)
    for r in range(runs):
        log(f"== copy to a local Ceph gateway, run {r + 1} of {runs}")
        try:
            fresh_ceph(gateway, target)
            for bucket in ("copy-vaultfs", "copy-restic"):
                subprocess.run([rgw, "create-bucket", gateway, bucket], check=True)
            gw = gateway_env(gateway)
            env = dict(ENV, **{k: gw[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
                       VAULT_REPO="", VAULT_CONFIG=os.path.join(target, "locations.toml"),
                       VAULT_COPY_DIR=os.path.join(target, "copies"),
                       RESTIC_REPOSITORY=f"s3:{gw['VAULT_S3_ENDPOINT']}/copy-restic/repo",
                       RESTIC_FROM_REPOSITORY=plain["RESTIC_REPOSITORY"], RESTIC_FROM_PASSWORD_FILE=os.path.join(target, "restic-password"))
            with open(env["RESTIC_FROM_PASSWORD_FILE"], "w") as f:
                f.write(ENV["RESTIC_PASSWORD"] + "\n")
            run(VAULTCTL, "location", "add", "local", plain["VAULT_REPO"], env=env)
            run(VAULTCTL, "location", "add", "bucket", "s3://copy-vaultfs/repo", "--endpoint", gw["VAULT_S3_ENDPOINT"],
                "--state-dir", os.path.join(target, "state"), "--mirror-of", "local", env=env)
            run(VAULTCTL, "vault", "set", "bench", "--copy-to", "bucket", "--copy-keep-fulls", "8", env=env)
            run("restic", "init", "--copy-chunker-params", env=env)
            name = "copy of the corpus points to a bucket"
            for tool in in_turn(r, ["vaultfs", "restic"]):
                if tool == "vaultfs":
                    record(name, "vaultfs", timed(VAULTCTL, "copy", "bench", env=env))
                else:
                    record(name, "restic", timed("restic", "copy", "--quiet", env=env))
            copied = json.loads(subprocess.run([VAULTCTL, "points", "web", "--location", "bucket", "--json"], env=env,
                                               check=True, stdout=subprocess.PIPE, text=True).stdout)
            snapshots = json.loads(subprocess.run(["restic", "snapshots", "--json"], env=env, check=True,
                                                  stdout=subprocess.PIPE, text=True).stdout)
            if len(copied) != 3 or len(snapshots) != 3:
                raise SystemExit(f"bench: the copies hold {len(copied)} vaultfs points and {len(snapshots)} restic snapshots, not 3 each")
        finally:
            subprocess.run([rgw, "stop", gateway], stderr=subprocess.DEVNULL)
    shutil.rmtree(gateway, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)


def changed_block_repository(base, folder, name, server, disk, *options):
    """A new repository in FOLDER/NAME-repo (its host configuration in NAME-etc) with the bench
    vault, an hourly policy and SERVER with DISK (and OPTIONS), freeze and thaw hooks that do
    nothing: the environment that backs it up."""
    env = dict(base, VAULT_REPO=os.path.join(folder, f"{name}-repo"), VAULT_CONFIG_DIR=os.path.join(folder, f"{name}-etc"))
    run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
    run(VAULTCTL, "init", env["VAULT_REPO"])
    run(VAULTCTL, "vault", "create", "bench")
    run(VAULTCTL, "policy", "set", "bench", "--start", "00:00", "--every", "1h", "--incrementals", "10", "--keep-fulls", "2",
        "--now", SLOT[1])
    run(VAULTCTL, "server", "add", server, "--vault", "bench", "--disk", disk, *options,
        "--freeze-command", "true", "--thaw-command", "true")
    return env


def scheduled_point(env, server, v, tool, prefix):
    """Runs slot V of a changed-block repository (timed, cold) and records the bytes its point
    read; returns the time and the point, which must be the full (V 1) or an incremental."""
    took = timed(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v], env=env)
    point = json.loads(subprocess.run([VAULTCTL, "points", server, "--json"], env=env, check=True,
                                      stdout=subprocess.PIPE, text=True).stdout)[-1]
    if point["status"] != "Active" or point["type"] != ("Full" if v == 1 else "Incremental"):
        raise SystemExit(f"bench: the {tool} backup of v{v} is {point['status']} {point['type']}")
    record(f"{prefix}bytes read, v{v}", tool, point["disks"][0]["bytesRead"] / (1 << 20), "MiB")
    return took, point


def rbd_rows(runs):
    """A 2 GiB Ceph RBD image, half allocated (every other 4 MiB object, pseudo-random bytes),
    on a fresh local cluster each run (scripts/ceph-rgw.sh, memstore): a full backup against
    `rbd export | borg create`, then about 1% changed (64 scattered 4 KiB writes, 16 writes of
    1 MiB, one object discarded) and the incremental three ways, in turns: vaultfs diffing from
    the parent's snapshot, vaultfs with the diff off (VAULT_RBD_DIFF=off: every allocated
    extent read, as from a file) into a repository of its own, and borg reading `rbd export`.
    Nothing writes the image while they run, so all read the same bytes. The freeze window is
    each vaultfs point's frozenMs, with freeze and thaw hooks that do nothing."""
    gateway = os.path.join(WORK, "ceph-rbd")
    rgw = os.path.join(TOP, "scripts", "ceph-rgw.sh")
    writer = ["/usr/bin/python3", os.path.join(TOP, "scripts", "rbd-write.py")]
    rbdrun = os.path.join(WORK, "rbd-run")
    mib = 1 << 20
    full, incremental = "rbd: full backup, 2 GiB half allocated", "rbd: incremental after 1% changed"
    for r in range(runs):
        log(f"== RBD image on a local Ceph, run {r + 1} of {runs}")
        try:
            fresh_ceph(gateway, rbdrun)
            subprocess.run([rgw, "create-rbd-pool", gateway, "rbd"], check=True)
            conf = os.path.join(gateway, "ceph.conf")
            base = dict(ENV, CEPH_CONF=conf, BORG_REPO=os.path.join(rbdrun, "borg-repo"))
            run = lambda env, *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
            run(base, *writer, conf, "rbd", "img", "create:2G", *[f"w:{k * 8 * mib}:4M:{k + 1}" for k in range(256)])
            envs = {
                "vaultfs": changed_block_repository(base, rbdrun, "vaultfs", "db", "root=rbd:rbd/img", "--ceph-conf", conf),
                "vaultfs diff off": dict(
                    changed_block_repository(base, rbdrun, "diff-off", "db", "root=rbd:rbd/img", "--ceph-conf", conf),
                    VAULT_RBD_DIFF="off"),
            }
            run(base, "borg", "init", "--encryption", "none")

            def back_up(tool, v):
                if tool == "borg of rbd export":
                    return timed("sh", "-c", f"rbd -c {conf} export --no-progress rbd/img - | "
                                 f"borg create --stdin-name disk.img ::v{v} -", env=base)
                took, point = scheduled_point(envs[tool], "db", v, tool, "rbd: ")
                record("rbd: freeze window", "vaultfs", point["frozenMs"], "ms")
                return took

            for tool in in_turn(r, ["vaultfs", "borg of rbd export"]):
                record(full, tool, back_up(tool, 1))
            back_up("vaultfs diff off", 1)
            changes = [f"w:{(k * 7 % 256) * 8 * mib + (k % 4) * mib + 8192 * (k % 100)}:4K:{1000 + k}" for k in range(64)]
            changes += [f"w:{(k * 5 % 256) * 8 * mib + (k % 3) * mib}:1M:{2000 + k}" for k in range(16)]
            changes += [f"d:{255 * 8 * mib}:4M"]
            run(base, *writer, conf, "rbd", "img", *changes)
            tools = ["vaultfs", "vaultfs diff off", "borg of rbd export"]
            for tool in tools[r % 3:] + tools[:r % 3]:
                record(incremental, tool, back_up(tool, 2))
        finally:
            subprocess.run([rgw, "stop", gateway], stderr=subprocess.DEVNULL)
    shutil.rmtree(gateway, ignore_errors=True)
    shutil.rmtree(rbdrun, ignore_errors=True)


def nbd_rows(runs):
    """The same for a qemu NBD export: a 2 GiB qcow2 image, half allocated (every other 4 MiB,
    random bytes), served by qemu-storage-daemon on a unix socket with its QMP socket, as a KVM
    host's qemu serves a VM's disk. A full against `nbdcopy EXPORT - | borg create`, then about
    1% changed through the export with qemu-io, and the incremental three ways in turns:
    vaultfs with qemu dirty bitmaps (`--bitmap --qmp`), vaultfs without them (every allocated
    extent read) into a repository of its own, and borg reading the export again."""
    nbdrun = os.path.join(WORK, "nbd-run")
    mib = 1 << 20
    full, incremental = "nbd: full backup, 2 GiB half allocated", "nbd: incremental after 1% changed"
    for r in range(runs):
        log(f"== NBD export of qemu-storage-daemon, run {r + 1} of {runs}")
        shutil.rmtree(nbdrun, ignore_errors=True)
        os.makedirs(nbdrun)
        raw, image = os.path.join(nbdrun, "disk.raw"), os.path.join(nbdrun, "disk.qcow2")
        nbd, qmp = os.path.join(nbdrun, "nbd.sock"), os.path.join(nbdrun, "qmp.sock")
        with open(raw, "wb") as f:
            f.truncate(2 << 30)
            for k in range(256):
                f.seek(k * 8 * mib)
                f.write(os.urandom(4 * mib))
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image], check=True)
        os.unlink(raw)
        daemon = subprocess.Popen(
            ["qemu-storage-daemon", "--blockdev", f"driver=file,node-name=file0,filename={image}",
             "--blockdev", "driver=qcow2,node-name=disk0,file=file0", "--nbd-server", f"addr.type=unix,addr.path={nbd}",
             "--export", "type=nbd,id=root,node-name=disk0,name=root,writable=on",
             "--chardev", f"socket,id=qmp0,path={qmp},server=on,wait=off", "--monitor", "chardev=qmp0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for(lambda: os.path.exists(nbd) and os.path.exists(qmp), 20):
                raise SystemExit("bench: qemu-storage-daemon did not start")
            uri = f"nbd+unix:///root?socket={nbd}"
            base = dict(ENV, BORG_REPO=os.path.join(nbdrun, "borg-repo"))
            run = lambda env, *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
            envs = {
                "vaultfs": changed_block_repository(base, nbdrun, "vaultfs", "vm", f"root={uri}", "--bitmap", "vaultfs",
                                                    "--qmp", qmp),
                "vaultfs no bitmap": changed_block_repository(base, nbdrun, "no-bitmap", "vm", f"root={uri}"),
            }
            run(base, "borg", "init", "--encryption", "none")

            def back_up(tool, v):
                if tool == "borg of nbdcopy":
                    return timed("sh", "-c", f"nbdcopy '{uri}' - | borg create --stdin-name disk.img ::v{v} -", env=base)
                return scheduled_point(envs[tool], "vm", v, tool, "nbd: ")[0]

            for tool in in_turn(r, ["vaultfs", "borg of nbdcopy"]):
                record(full, tool, back_up(tool, 1))
            back_up("vaultfs no bitmap", 1)
            changes = [f"write -P {k % 250 + 1} {(k * 7 % 256) * 8 * mib + (k % 4) * mib + 8192 * (k % 100)} 4k" for k in range(64)]
            changes += [f"write -P {k + 1} {(k * 5 % 256) * 8 * mib + (k % 3) * mib} 1M" for k in range(16)]
            changes += [f"write -z {3 * 8 * mib + 3 * mib} 1M", f"discard {255 * 8 * mib} 4M"]
            subprocess.run(["qemu-io", "-f", "raw", uri] + [x for c in changes for x in ("-c", c)], check=True,
                           stdout=subprocess.DEVNULL)
            tools = ["vaultfs", "vaultfs no bitmap", "borg of nbdcopy"]
            for tool in tools[r % 3:] + tools[:r % 3]:
                record(incremental, tool, back_up(tool, 2))
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
    shutil.rmtree(nbdrun, ignore_errors=True)


def chain_depth(runs):
    """A full and 30 incrementals of small random writes: cold reads of the deepest point and
    of a full point of the same bytes."""
    log("== chain depth 30")
    repo = os.path.join(WORK, "chain-repo")
    disk = os.path.join(WORK, "chain-disk.img")
    # Its server web reads another disk than the bench repository's web: its own host
    # configuration, kept with the repository across runs.
    env = dict(ENV, VAULT_REPO=repo, VAULT_CONFIG_DIR=repo + "-etc")
    # Slot k of the chain (2030-01-02T00:00Z + k hours), as the scheduler's `--now` and as
    # the point it names.
    slot = lambda k, form: time.strftime(form, time.gmtime(1893542400 + k * 3600))
    if not os.path.exists(disk):
        shutil.rmtree(repo, ignore_errors=True)  # its full of the last state needs that disk
    if not os.path.exists(os.path.join(repo, "chain-ready")):
        shutil.rmtree(repo, ignore_errors=True)
        subprocess.run(["cp", "--sparse=always", os.path.join(CORPUS, "disk-v1.img"), disk], check=True)
        run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
        run(VAULTCTL, "init", repo)
        run(VAULTCTL, "vault", "create", "bench")
        run(VAULTCTL, "policy", "set", "bench", "--start", "00:00", "--every", "1h", "--incrementals", "30", "--keep-fulls", "2",
            "--now", "2030-01-01T00:00Z")
        run(VAULTCTL, "server", "add", "web", "--vault", "bench", "--disk", f"root={disk}")
        rng = random.Random(30)
        size = os.path.getsize(disk)
        for k in range(31):
            if k:
                with open(disk, "r+b") as f:
                    for _ in range(64):
                        f.seek(rng.randrange(size // 4096) * 4096)
                        f.write(rng.randbytes(4096))
            run(VAULTCTL, "schedule", "run", "--once", "--now", slot(k, "%Y-%m-%dT%H:%MZ"))
        open(os.path.join(repo, "chain-ready"), "w").close()
    if not os.path.exists(os.path.join(repo, "chain-full-ready")):
        # A full point of the chain's last disk state: the same bytes as the deepest point
        # (they share every chunk), so the two reads differ only in the chain's depth. The
        # first full is no such baseline: each incremental's random writes also land in the
        # image's zero space, so the deepest point has about three times its data chunks.
        made = subprocess.run([VAULTCTL, "backup", "web", "--name", "full-of-the-last-state"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if made.returncode != 0:
            raise SystemExit(f"bench: the full of the chain's last state failed: {made.stderr.strip()}")
        m = VaultfsMount(repo, os.path.join(WORK, "chain-mnt"))
        same = subprocess.run(["cmp", f"{m.path}/bench/web/full-of-the-last-state/root.img",
                               f"{m.path}/bench/web/{slot(30, '%Y%m%dT%H%M%SZ')}/root.img"]).returncode == 0
        m.close()
        if not same:
            raise SystemExit(f"bench: the full of the chain's last state differs from its deepest point; remove {repo}")
        open(os.path.join(repo, "chain-full-ready"), "w").close()
    # Each read from a fresh daemon, the two in turns first: read one after the other from one
    # daemon, the second inherited the first's daemon and moment of the machine. The row is
    # cheap, so it takes at least five pairs.
    for r in range(max(runs, 5)):
        for name, point in in_turn(r, [("cold read, a full of the same bytes", "full-of-the-last-state"),
                                       ("cold read, chain depth 30", slot(30, "%Y%m%dT%H%M%SZ"))]):
            m = VaultfsMount(repo, os.path.join(WORK, "chain-mnt"))
            record(name, "vaultfs", timed("dd", f"if={m.path}/bench/web/{point}/root.img", "of=/dev/null", "bs=1M"))
            m.close()


def files_listing(runs):
    """`find -ls` of the point's files (the /usr/share tree) through files/, against fuse2fs -o
    ro on the same image read through the vaultfs mount (the way to browse the files without
    vaultfs reading them), cold (fresh daemons, empty page cache) and warm (again). `ls -lR`
    for vaultfs too: it also asks for two extended attributes per file, which the kernel
    never caches, so its warm pass costs 100,000 requests to the daemon."""
    log("== find -ls and ls -lR of the files inside a point")
    point = os.path.join("bench", "web", POINT[2])
    fuse2fs_mnt = os.path.join(MNT, "fuse2fs")
    os.makedirs(fuse2fs_mnt, exist_ok=True)
    listings = {}

    def find_ls(tool, root, cold):
        drop_caches() if cold else None
        start = time.monotonic()
        out = subprocess.run(["find", root, "-ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        elapsed = time.monotonic() - start
        if out.returncode != 0:
            raise SystemExit(f"bench: find -ls on {tool} failed: {out.stderr.strip()[:300]}")
        record(f"find -ls of /usr/share via files/, {'cold' if cold else 'warm'}", tool, elapsed)
        # Modes, links, owners, sizes, times and names: not inode numbers or blocks.
        listings[tool] = sorted(" ".join(line.split()[2:]).replace(root, "") for line in out.stdout.splitlines())

    for r in range(runs):
        m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        tree = os.path.join(m.path, point, "files", "root")
        find_ls("vaultfs", tree, cold=True)
        find_ls("vaultfs", tree, cold=False)
        m.close()
        m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        record("ls -lR of /usr/share via files/, cold", "vaultfs", timed("ls", "-lR", tree))
        record("ls -lR of /usr/share via files/, warm", "vaultfs", timed("ls", "-lR", tree, cold=False))
        m.close()
        m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
        f = subprocess.Popen(["fuse2fs", "-f", "-o", "ro", os.path.join(m.path, point, "root.img"), fuse2fs_mnt],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(lambda: subprocess.run(["mountpoint", "-q", fuse2fs_mnt]).returncode == 0, 60):
            raise SystemExit("bench: fuse2fs did not mount")
        find_ls("fuse2fs", fuse2fs_mnt, cold=True)
        find_ls("fuse2fs", fuse2fs_mnt, cold=False)
        unmount(fuse2fs_mnt)
        f.wait(timeout=60)
        m.close()
        # Both show the same tree, or the race is void.
        if listings["vaultfs"] != listings["fuse2fs"]:
            diff = next((a, b) for a, b in zip(listings["vaultfs"], listings["fuse2fs"]) if a != b)
            raise SystemExit(f"bench: files/ and fuse2fs list different trees: {diff}")


def fragmented_file(runs):
    """A file a guest split into 100,000 extents (4 KiB of data every 8 KiB, 800 MB), against
    the same bytes in one piece (its holes written as zeros), both in one ext4 disk: `cp -a`
    through files/ and `vaultctl files get`, each cold from a fresh daemon, in turns. A
    hostile guest must not be able to make its own restore slow."""
    log("== a file in 100,000 extents against the same bytes in one")
    repo = os.path.join(WORK, "fragments-repo")
    env = dict(ENV, VAULT_REPO=repo)
    point = os.path.join("default", "frag", "one")
    if not os.path.exists(os.path.join(repo, "fragments-ready")):
        shutil.rmtree(repo, ignore_errors=True)
        tree = os.path.join(WORK, "fragments-tree")
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        rng = random.Random(100000)
        with open(os.path.join(tree, "fragmented.bin"), "wb") as f:
            for k in range(100000):
                f.seek(k * 8192)
                f.write(rng.randbytes(4096))
            f.truncate(100000 * 8192)
        subprocess.run(["cp", "--sparse=never", os.path.join(tree, "fragmented.bin"), os.path.join(tree, "whole.bin")], check=True)
        image = os.path.join(WORK, "fragments.img")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, image, "2G"], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(tree)
        extents = subprocess.run(["debugfs", "-R", "ex /fragmented.bin", image], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        log(f"  fragmented.bin: {sum(1 for line in extents.stdout.splitlines() if ' - ' in line and '/' in line)} extent lines")
        run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
        run(VAULTCTL, "init", repo)
        run(VAULTCTL, "server", "add", "frag", "--disk", f"root={image}")
        run(VAULTCTL, "backup", "frag", "--name", "one")
        open(os.path.join(repo, "fragments-ready"), "w").close()
    out = os.path.join(WORK, "fragments-out")
    for r in range(max(runs, 5)):
        for name, file in in_turn(r, [("cp -a of an 800 MB file in 100,000 extents", "fragmented.bin"),
                                      ("cp -a of the same bytes in one piece", "whole.bin")]):
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            m = VaultfsMount(repo, os.path.join(MNT, "vaultfs"))
            record(name, "vaultfs", timed("cp", "-a", os.path.join(m.path, point, "files", "root", file), out))
            m.close()
        for name, file in in_turn(r, [("files get of the file in 100,000 extents", "fragmented.bin"),
                                      ("files get of the same bytes in one piece", "whole.bin")]):
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            record(name, "vaultfs", timed(VAULTCTL, "files", "get", "frag/one", f"/{file}", "-o", os.path.join(out, file), env=env))
    shutil.rmtree(out, ignore_errors=True)


def many_points_repository():
    """A repository whose server has 10,000 points (manifests cloned from one real point, then
    the catalog rebuilt from them by vaultctl: the bench never writes the catalog itself)."""
    repo = os.path.join(WORK, "many-repo")
    shutil.rmtree(repo, ignore_errors=True)
    env = dict(ENV, VAULT_REPO=repo, VAULT_CONFIG_DIR=repo + "-etc")
    run = lambda *a: subprocess.run(list(a), env=env, check=True, stdout=subprocess.DEVNULL)
    small = os.path.join(WORK, "small.img")
    with open(small, "wb") as f:
        f.write(os.urandom(1 << 20))
    run(VAULTCTL, "init", repo)
    run(VAULTCTL, "vault", "create", "bench")
    run(VAULTCTL, "server", "add", "web", "--vault", "bench", "--disk", f"root={small}")
    run(VAULTCTL, "backup", "web", "--name", "seed")
    folder = os.path.join(repo, "manifests", "points")
    [seed] = os.listdir(folder)
    with open(os.path.join(folder, seed)) as f:
        manifest = json.load(f)
    for i in range(9999):
        clone = json.loads(json.dumps(manifest))
        new = str(uuid.uuid4()).upper()
        clone["point"].update(id=new, chainId=new, name=f"p{i:05d}")
        for detail in clone["tags"] + clone["disks"]:
            detail["pointId"] = new
        with open(os.path.join(folder, new + ".json"), "w") as f:
            json.dump(clone, f)
    run(VAULTCTL, "repair", "--rebuild-catalog")
    return repo


def many_points(runs):
    """`ls -l` of a server with 10,000 points."""
    log("== ls -l of 10,000 points")
    repo = many_points_repository()
    for r in range(runs):
        m = VaultfsMount(repo, os.path.join(WORK, "many-mnt"))
        start = time.monotonic()
        out = subprocess.run(["ls", "-l", os.path.join(m.path, "bench", "web")], stdout=subprocess.PIPE, text=True, check=True)
        record("ls -l of 10,000 points, cold", "vaultfs", time.monotonic() - start)
        if out.stdout.count("\n") < 10000:
            raise SystemExit("bench: ls -l listed fewer than 10,000 points")
        m.close()


class Console:
    """`vaultctl serve` over a repository, on a port of its choosing; its token and peak RSS."""

    def __init__(self, repo, folder):
        os.makedirs(folder, exist_ok=True)
        self.token_file = os.path.join(folder, "token")
        self.process = subprocess.Popen(
            [VAULTCTL, "serve", "-R", repo, "--listen", "127.0.0.1:0", "--token-file", self.token_file],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"bench: vaultctl serve did not start: {line}")
        self.url = line.split(" at ")[1].strip().rstrip("/")
        self.token = open(self.token_file).read().strip()

    def peak_rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk_latency(url, token, seconds=10):
    """p50 and p99 (ms) and requests/s of `wrk` at 16 connections on 2 threads."""
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    def ms(text):
        value = float(text.rstrip("usm"))
        return value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s") and not text.endswith("ms") else value
    latency = {l.split()[0]: ms(l.split()[1]) for l in out.splitlines() if l.strip().startswith(("50%", "99%"))}
    rate = next(float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec"))
    errors = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    if errors:
        raise SystemExit(f"bench: wrk on {url}: {errors}")
    return latency["50%"], latency["99%"], rate


def web_rows(runs):
    """BENCH_ONLY=web: the console under load (10,000 points: the API's first page and the points
    page, wrk at 16 connections), and an image download over HTTP against the cold read through
    the mount, in turn."""
    log("== web console: 10,000 points under wrk")
    repo = many_points_repository()
    for r in range(runs):
        console = Console(repo, os.path.join(WORK, "web"))
        try:
            for label, path in [("GET /api/v1/points", "/api/v1/points"), ("points page", "/points")]:
                p50, p99, rate = wrk_latency(console.url + path, console.token)
                record(f"web: {label}, 10,000 points, p50", "vaultfs", p50, "ms")
                record(f"web: {label}, 10,000 points, p99", "vaultfs", p99, "ms")
                record(f"web: {label}, 10,000 points, rate", "vaultfs", rate, "req/s")
            record("web: serve peak RSS after the load", "vaultfs", console.peak_rss_kib() / 1024, "MiB")
        finally:
            console.close()
    log("== web console: image download against the mount's cold read")
    fresh_repositories()
    for v in (1, 2):
        use_version(v)
        sh(VAULTCTL, "schedule", "run", "--once", "--now", SLOT[v])
    point = next(p["id"] for p in json.loads(sh(VAULTCTL, "points", "--json").stdout) if p["name"] == POINT[2])
    size = os.path.getsize(os.path.join(CORPUS, "disk-v2.img"))
    for r in range(runs):
        for side in in_turn(r, ["http", "mount"]):
            if side == "http":
                console = Console(ENV["VAULT_REPO"], os.path.join(WORK, "web"))
                try:
                    elapsed = timed("curl", "-s", "-f", "-o", "/dev/null", "-H", f"Authorization: Bearer {console.token}",
                                    f"{console.url}/api/v1/points/{point}/disks/root/image")
                    record("web: image download, cold", "vaultfs", size / elapsed / 1e6, "MB/s")
                    record("web: serve peak RSS after the download", "vaultfs", console.peak_rss_kib() / 1024, "MiB")
                finally:
                    console.close()
            else:
                m = VaultfsMount(ENV["VAULT_REPO"], os.path.join(MNT, "vaultfs"))
                image = os.path.join(m.path, "bench", "web", POINT[2], "root.img")
                elapsed = timed("dd", f"if={image}", "of=/dev/null", "bs=1M")
                record("web: image download, cold", "mount cold read", size / elapsed / 1e6, "MB/s")
                m.close()


def report():
    table = []
    for (name, tool), values in samples.items():
        table.append({"measurement": name, "tool": tool, "unit": units[name], "median": statistics.median(values),
                      "min": min(values), "max": max(values), "runs": len(values)})
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores", "results": table}, f, indent=2)
    order = []
    for (name, _tool) in samples:
        if name not in order:
            order.append(name)
    cell = lambda row: f"{row['median']:.2f} ({row['min']:.2f}-{row['max']:.2f})"
    ratio = lambda x, y: f"{x['median'] / y['median']:.2f}x" if x and y and y["median"] else "-"
    show = lambda x: cell(x) if x else "-"
    def print_table(title, columns, lines):
        print(title)
        print("| " + " | ".join(columns) + " |")
        print("|" + " --- |" * len(columns))
        for cells in lines:
            print("| " + " | ".join(str(c) for c in cells) + " |")

    rows_of = lambda name: {r["tool"]: r for r in table if r["measurement"] == name}
    lines = []
    for name in [name for name in order if not name.startswith(("S3: ", "pair: ", "against: ", "restore: ", "instant: ", "rbd: ", "nbd: ", "web: "))]:
        rows = rows_of(name)
        v, b, r, f = rows.get("vaultfs"), rows.get("borg"), rows.get("restic"), rows.get("fuse2fs")
        lines.append([name, units[name], v["runs"] if v else "-", show(v), show(b), show(r), show(f), ratio(v, b) if b else ratio(v, f) if f else ratio(v, r)])
    if lines:
        print_table(f"median of {RUNS} runs or more (min-max, and the runs column); ratios are of medians, measured side by side in one run\n",
                    ["measurement", "unit", "runs", "vaultfs", "borg", "restic", "fuse2fs", "vaultfs / borg (or fuse2fs, or restic)"], lines)
    full = rows_of("restore onto a new file").get("vaultfs")
    lines = [[name.removeprefix("restore: "), show(rows_of(name).get("vaultfs")), ratio(rows_of(name).get("vaultfs"), full)]
             for name in order if name.startswith("restore: ")]
    if lines and full:
        print_table("\nvaultctl restore onto the restored file, against the full restore onto a new file\n",
                    ["restore", "vaultfs s", "/ full restore"], lines)
    lines = []
    for name in [name for name in order if name.startswith("instant: ")]:
        rows = rows_of(name)
        v = rows.get("vaultfs")
        other = next((rows[t] for t in ("local file", "mount cold read") if t in rows), None)
        reference = next((t for t in ("local file", "mount cold read") if t in rows), "-")
        lines.append([name.removeprefix("instant: "), units[name], v["runs"] if v else "-", show(v), reference, show(other), ratio(v, other)])
    if lines:
        print_table("\nInstant restore (the VM: qemu under TCG, Debian's cloud kernel, scripts/vm-kit.sh)\n",
                    ["measurement", "unit", "runs", "vaultfs", "against", "its figure", "vaultfs / it"], lines)
    for prefix, off_tool, other, title in [
        ("rbd: ", "vaultfs diff off", "borg of rbd export",
         "Ceph RBD image as a disk (a local cluster, memstore; scripts/rbd-write.py writes the changes)"),
        ("nbd: ", "vaultfs no bitmap", "borg of nbdcopy",
         "qemu NBD export as a disk (qemu-storage-daemon, a qcow2 image; qemu-io writes the changes)"),
    ]:
        lines = []
        for name in [name for name in order if name.startswith(prefix)]:
            rows = rows_of(name)
            v, off, b = rows.get("vaultfs"), rows.get(off_tool), rows.get(other)
            lines.append([name.removeprefix(prefix), units[name], v["runs"] if v else "-", show(v), show(off), show(b),
                          ratio(v, off) if off else "-", ratio(v, b) if b else "-"])
        if lines:
            print_table(f"\n{title}\n", ["measurement", "unit", "runs", "vaultfs", off_tool, other,
                                          f"/ {off_tool.removeprefix('vaultfs ')}", "/ borg"], lines)
    lines = []
    for name in [name for name in order if name.startswith("web: ")]:
        rows = rows_of(name)
        v, m = rows.get("vaultfs"), rows.get("mount cold read")
        lines.append([name.removeprefix("web: "), units[name], v["runs"] if v else "-", show(v), show(m), ratio(v, m) if m else "-"])
    if lines:
        print_table("\nWeb console (vaultctl serve on 127.0.0.1; wrk -t2 -c16 for 10 s; curl for the download)\n",
                    ["measurement", "unit", "runs", "vaultfs serve", "mount cold read", "serve / mount"], lines)
    lines = []
    for name in [name for name in order if name.startswith("pair: ")]:
        plain, crypt = samples.get((name, "vaultfs"), []), samples.get((name, "vaultfs encrypted"), [])
        rows = rows_of(name)
        each = " ".join(f"{x / y:.2f}" for x, y in sorted(zip(crypt, plain), key=lambda p: p[0] / p[1]))
        lines.append([name.removeprefix("pair: "), units[name], len(plain), show(rows.get("vaultfs")), show(rows.get("vaultfs encrypted")),
                      ratio(rows.get("vaultfs encrypted"), rows.get("vaultfs")), each])
    if lines:
        print_table("\nEncrypted against plain: fresh repositories in pairs, each going first in turn; the last column\n"
                    "is each pair's ratio, lowest to highest\n",
                    ["measurement", "unit", "pairs", "vaultfs", "vaultfs encrypted", "encrypted / plain", "pairs' ratios"], lines)
    lines = []
    for name in [name for name in order if name.startswith("against: ")]:
        rows = rows_of(name)
        v, b = rows.get("vaultfs"), rows.get("vaultfs before")
        lines.append([name.removeprefix("against: "), units[name], v["runs"] if v else "-", show(v), show(b), ratio(v, b)])
    if lines:
        print_table(f"\nThis build against {os.environ.get('BENCH_AGAINST')}, in turn in one run\n",
                    ["measurement", "unit", "runs", "this build", "before", "this / before"], lines)
    lines = []
    for name in [name for name in order if name.startswith("S3: ")]:
        rows, plain = rows_of(name), rows_of(name.removeprefix("S3: ")).get("vaultfs")
        v, r = rows.get("vaultfs S3"), rows.get("restic S3")
        lines.append([name.removeprefix("S3: "), units[name], show(v), show(r), show(plain), ratio(v, r), ratio(v, plain)])
    if lines:
        print_table("\nS3: one Ceph RADOS Gateway on loopback (memstore), the same run; the directory column is the same\n"
                    "measurement on a repository in a folder\n",
                    ["measurement", "unit", "vaultfs S3", "restic S3", "vaultfs directory", "vaultfs S3 / restic S3", "S3 / directory"], lines)


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (it drops the page cache and mounts)")
    try:
        only = os.environ.get("BENCH_ONLY", "")
        if only not in ("", "s3", "copy", "fragments", "against", "restore", "instant", "rbd", "nbd", "web"):
            raise SystemExit(f"bench: BENCH_ONLY is '' (everything), s3, copy, fragments, against, restore, instant, rbd, nbd or web, not {only}")
        if only == "restore":
            for r in range(RUNS):
                restore_run(r)
        if only in ("", "instant"):
            instant_rows(RUNS)
        if only == "against":
            other = os.environ.get("BENCH_AGAINST", "")
            if not os.path.isfile(os.path.join(other, "vaultctl")) or not os.path.isfile(os.path.join(other, "vaultfs")):
                raise SystemExit("bench: BENCH_ONLY=against needs BENCH_AGAINST=DIR holding another build's vaultctl and vaultfs")
            against_rows(max(RUNS, 5), other)
        if only in ("", "rbd"):
            rbd_rows(RUNS)
        if only in ("", "nbd"):
            nbd_rows(RUNS)
        if only not in ("copy", "fragments", "against", "restore", "instant", "rbd", "nbd", "web"):
            for r in range(RUNS):
                one_run(r)
        if only == "":
            encryption_rows(RUNS)
        if only in ("", "s3"):
            s3_rows(RUNS)
        if only in ("", "copy"):
            copy_rows(RUNS)
        if only == "":
            files_listing(RUNS)
            chain_depth(RUNS)
            many_points(RUNS)
        if only in ("", "fragments"):
            fragmented_file(RUNS)
        if only in ("", "web"):
            web_rows(RUNS)
    finally:
        for path in [os.path.join(MNT, t) for t in ("fuse2fs", "vaultfs", "restic", "borg", "pair")] + [os.path.join(WORK, "chain-mnt"), os.path.join(WORK, "many-mnt")]:
            unmount(path)
    report()


if __name__ == "__main__":
    main()

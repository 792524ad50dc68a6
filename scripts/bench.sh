#!/usr/bin/env bash
# quire benchmarks on the synthetic vault from ../shared/bench/gen_vault.py.
#
#   scripts/bench.sh apply     1,000 single-change bundles through `quire apply` on a 10,000-note
#                              vault, against the same work done as a shell loop of git add + commit.
#   scripts/bench.sh index     the task index on 10,000 and 100,000 notes: full and incremental
#                              indexing, tasks --json and agenda on a fresh index, peak memory.
#   scripts/bench.sh sandbox   sandboxes on a 10,000-note vault: create (branch only, and with the
#                              worktree checkout), 1,000 bundles to it, diff, promote, rollback,
#                              and a three-way promotion after main moved.
#   scripts/bench.sh missions  missions on a 10,000-note vault: brief accepted to first step running
#   scripts/bench.sh missions-load  200 missions at once beside dropped bundles; GET /api/missions with 1,000
#                              (the note's commit and the sandbox's worktree checkout included), and
#                              each step's overhead (one step's process exiting to the next one's
#                              starting, its commit of a few changed files included), p50 and p99
#                              over STEPS steps, beside a bare `git add -A && git commit` of the
#                              same change in the same worktree as a floor.
#   scripts/bench.sh analytics 100,000 applied bundles (ANALYTICS) and 10,000 refused or duplicate,
#                              filed as receipts: `quire stats` recording them the first time and
#                              again, GET /api/analytics/stats, trends and logs from the daemon, and
#                              `grep -r` over the receipts as a floor.
#   scripts/bench.sh control   mission control with 1,000 missions and 10,000 events: GET /, first
#                              contentful paint and page weight in chromium, and event-to-page
#                              latency with 50 pages open (needs chromium and python's
#                              websocket-client).
#   scripts/bench.sh daemon    `quire daemon` on a 10,000-note vault: drop-to-done latency of single
#                              bundles (commit + index + render), a burst of 2,000 (BURST), memory
#                              after it, and GET /api/tasks and /api/agenda under wrk.
#   scripts/bench.sh tasks     one note holding 40,000, 80,000 and 160,000 tasks (TASKS): `quire
#                              index --full`, a cold `quire render` and one over a current index, beside
#                              Zola and Hugo building the same note as one page, and `grep -c` over
#                              it as a floor.
#   scripts/bench.sh render    `quire render` (paper theme) on 1,000, 10,000 and 100,000 notes:
#                              cold, unchanged and after one edit; beside Hugo and Zola building the
#                              same corpus (when installed), in BENCH_DIR (tmpfs by default) and on
#                              disk. Wall, CPU (user+sys) and peak RSS.
#
# Environment: BENCH_DIR (work folder, default a new one under /tmp; use /dev/shm for tmpfs; for
# `render` the default is /dev/shm, and DISK_DIR (default /tmp) holds the on-disk comparison),
# NOTES (default 10000), BUNDLES (default 1000), SEED (default 42), KEEP=1 to keep the work folder,
# QUIRE_BIN=path to time another build of quire,
# LARGE (default 100000; 0 skips the large vault of `index`).
# Figures go to stdout; nothing here is a test and nothing asserts on time.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
shared="$here/../shared"
notes=${NOTES:-10000}
bundles=${BUNDLES:-1000}
seed=${SEED:-42}

die() { echo "bench: $*" >&2; exit 1; }
[ -f "$shared/bench/gen_vault.py" ] || die "needs ../shared/bench/gen_vault.py beside the repository"
command -v python3 >/dev/null || die "needs python3"

build() {
  # QUIRE_BIN: time that binary instead of building this checkout (an older build, for A/B runs).
  if [ -n "${QUIRE_BIN:-}" ]; then quire=$QUIRE_BIN; return; fi
  (cd "$here" && cargo build --release --locked --quiet)
  quire="$here/target/release/quire"
}

workdir() {
  if [ -n "${BENCH_DIR:-}" ]; then mkdir -p "$BENCH_DIR"; work=$(mktemp -d "$BENCH_DIR/quire-bench.XXXXXX")
  else work=$(mktemp -d /tmp/quire-bench.XXXXXX); fi
  [ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
  export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1
  mkdir -p "$HOME"
  export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.org GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.org
}

# Peak resident memory (KiB) and wall seconds of a command, from /usr/bin/time when present.
timed() {
  local out=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$out" "$@"
  else
    local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc) 0" > "$out"
  fi
}

# The generated vault in $work/vault, made a quire vault (its notes become the first commit).
new_vault() {
  python3 "$shared/bench/gen_vault.py" "$work/vault" --notes "$notes" --seed "$seed" >/dev/null
  touch "$work/vault/quire.toml"
  "$quire" init "$work/vault" >/dev/null
}

bench_apply() {
  build; workdir
  echo "# quire apply: $bundles single-change bundles on a $notes-note vault (seed $seed) in $work"
  new_vault
  cp -a "$work/vault" "$work/shell"

  # The same changes twice: as bundles for quire, as shell actions for the git loop. A third each
  # append a task to a note, create a note, or add a front matter key.
  python3 - "$work" "$bundles" <<'PY'
import json, os, shlex, sys
work, n = sys.argv[1], int(sys.argv[2])
notes = sorted(
    os.path.relpath(os.path.join(d, f), f"{work}/vault")
    for d, _, fs in os.walk(f"{work}/vault") if "/." not in d and "/contributions" not in d
    for f in fs if f.endswith(".md") and not d.endswith(("00_INBOX",))
)
notes = [p for p in notes if not p.startswith(("00_INBOX", "0"))]
os.makedirs(f"{work}/bundles")
with open(f"{work}/actions.sh", "w") as sh:
    for i in range(n):
        note = notes[(i * 7919) % len(notes)]
        kind = i % 3
        if kind == 0:
            text = f"- [ ] bench task {i} 📅 2026-12-{i % 28 + 1:02d}\n"
            change = {"op": "patch", "path": note, "body": [{"append": text}]}
            sh.write(f"printf '%s' {shlex.quote(text)} >> {shlex.quote(note)}\n")
            path = note
        elif kind == 1:
            path = f"bench/new-{i:05d}.md"
            text = f"---\ntitle: New {i}\n---\n# New {i}\n\n- [ ] follow up {i}\n"
            change = {"op": "create", "path": path, "content": text}
            sh.write(f"mkdir -p bench && printf '%s' {shlex.quote(text)} > {shlex.quote(path)}\n")
        else:
            change = {"op": "patch", "path": note, "frontmatter": [{"op": "add", "path": f"/bench{i}", "value": True}]}
            sh.write(f"sed -i '1a bench{i}: true' {shlex.quote(note)}\n")
            path = note
        sh.write(f"git add -- {shlex.quote(path)} && git commit -q -m {shlex.quote(f'Bundle {i}')}\n")
        bundle = {"contract": "quire.contribution/1", "id": f"bench-{i:05d}",
                  "author": {"name": "Bench", "email": "bench@example.org"},
                  "message": f"Bundle {i}", "changes": [change]}
        with open(f"{work}/bundles/{i:05d}.json", "w") as f:
            json.dump(bundle, f)
PY
  cp "$work"/bundles/*.json "$work/vault/contributions/pending/"
  sync
  timed "$work/quire.time" "$quire" --vault "$work/vault" apply --json > "$work/receipts.json"
  (cd "$work/shell" && timed "$work/shell.time" bash -e "$work/actions.sh")

  python3 - "$work" "$bundles" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
report = json.load(open(f"{work}/receipts.json"))
d = sorted(b["receipt"]["duration_ms"] for b in report["bundles"])
q_wall, q_rss = map(float, open(f"{work}/quire.time").read().split())
s_wall, s_rss = map(float, open(f"{work}/shell.time").read().split())
pct = lambda p: d[min(len(d) - 1, int(round(p / 100 * (len(d) - 1))))]
print(f"quire apply   : {n} bundles in {q_wall:.2f} s = {n / q_wall:.0f} bundles/s; "
      f"per bundle p50 {pct(50):.2f} ms, p99 {pct(99):.2f} ms, max {d[-1]:.2f} ms; "
      f"peak RSS {q_rss / 1024:.0f} MiB; applied {report['applied']}, rejected {report['rejected']}")
print(f"git shell loop: {n} commits in {s_wall:.2f} s = {n / s_wall:.0f} commits/s")
print(f"speed-up      : {s_wall / q_wall:.1f}x")
PY
}

bench_index() {
  build; workdir
  local sizes=("$notes")
  [ "${LARGE:-100000}" != 0 ] && sizes+=("${LARGE:-100000}")
  for n in "${sizes[@]}"; do
    python3 "$shared/bench/gen_vault.py" "$work/v$n" --notes "$n" --seed "$seed" >/dev/null
    touch "$work/v$n/quire.toml"
  done
  python3 - "$quire" "$work" "${sizes[@]}" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time
quire, work, sizes = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
has_time = os.path.exists("/usr/bin/time")

def run(vault, args, setup=None, runs=7):
    """Median wall ms and peak RSS MiB of `quire --vault vault args` over `runs` runs."""
    walls, rss = [], []
    for i in range(runs):
        if setup:
            setup(i)
        with tempfile.NamedTemporaryFile("r") as tf:
            cmd = [quire, "--vault", vault] + args
            if has_time:
                cmd = ["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            walls.append((time.perf_counter() - t0) * 1000)
            if has_time:
                rss.append(int(open(tf.name).read().split()[-1]) / 1024)
    return statistics.median(walls), max(rss) if rss else float("nan")

results = {}
for n in sizes:
    v = f"{work}/v{n}"
    runs = 7 if n <= 20000 else 3
    def cold(_):
        shutil.rmtree(f"{v}/.quire", ignore_errors=True)
    note = sorted(os.path.join(d, f) for d, _, fs in os.walk(v) if "/." not in d for f in fs if f.endswith(".md"))[n // 2]
    def edit(i):
        with open(note, "a") as f:
            f.write(f"- [ ] bench edit {i} 📅 2026-11-2{i % 9}\n")
    r = {}
    r["index --full (no index yet)"] = run(v, ["index", "--full"], cold, runs)
    r["index --full (over an index)"] = run(v, ["index", "--full"], None, runs)
    r["index after editing one note"] = run(v, ["index"], edit, runs * 2)
    r["index with nothing changed"] = run(v, ["index"], None, runs * 2)
    r["tasks --json"] = run(v, ["tasks", "--json"], None, runs * 2)
    r["agenda"] = run(v, ["agenda", "--today", "2026-11-21"], None, runs * 2)
    r["agenda --json"] = run(v, ["agenda", "--today", "2026-11-21", "--json"], None, runs * 2)
    out = subprocess.run([quire, "--vault", v, "index", "--json"], capture_output=True, text=True, check=True).stdout
    import json
    counts = json.loads(out)
    open_tasks = len(json.loads(subprocess.run([quire, "--vault", v, "tasks", "--json"], capture_output=True, text=True, check=True).stdout)["tasks"])
    print(f"\n## {counts['notes']} notes, {counts['tasks']} tasks ({open_tasks} open), medians of {runs}-{runs*2} runs")
    for k, (ms, mib) in r.items():
        print(f"  {k:32s} {ms:9.1f} ms   peak RSS {mib:6.1f} MiB")
    results[n] = r
if len(sizes) == 2:
    small, large = sizes
    print(f"\n## growth from {small} to {large} notes ({large // small}x)")
    for k in results[small]:
        print(f"  {k:32s} x{results[large][k][0] / results[small][k][0]:5.1f} time   x{results[large][k][1] / results[small][k][1]:5.1f} memory")
PY
}

bench_render() {
  build
  BENCH_DIR=${BENCH_DIR:-/dev/shm} workdir
  local sizes=(1000 "$notes")
  [ "${LARGE:-100000}" != 0 ] && sizes+=("${LARGE:-100000}")
  echo "# quire render vs hugo ($(command -v hugo >/dev/null && hugo version | cut -d' ' -f2 || echo absent)) and zola ($(command -v zola >/dev/null && zola --version || echo absent)); seed $seed; in $work"
  for n in "${sizes[@]}"; do
    python3 "$shared/bench/gen_vault.py" "$work/v$n" --notes "$n" --seed "$seed" --hugo "$work/hugo$n" --zola "$work/zola$n" >/dev/null
    touch "$work/v$n/quire.toml"
    "$quire" init "$work/v$n" >/dev/null
  done
  python3 - "$quire" "$work" "${DISK_DIR:-/tmp}" "${BIG_ENGINES:-0}" "${sizes[@]}" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile
quire, work, disk, big_engines, sizes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", [int(x) for x in sys.argv[5:]]
hugo, zola = shutil.which("hugo"), shutil.which("zola")

def timed(cmd, cwd=None):
    """(wall s, cpu s, peak RSS MiB) of one run, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name] + cmd, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wall, user, sys_, rss = tf.read().split()[-4:]
        return float(wall), float(user) + float(sys_), int(rss) / 1024

def median_of(runs, make):
    results = [make(i) for i in range(runs)]
    return tuple(statistics.median(r[k] for r in results) for k in range(3))

def quire_cold(v):
    def one(_):
        shutil.rmtree(f"{v}/.quire", ignore_errors=True)
        shutil.rmtree(f"{v}/_site", ignore_errors=True)
        return timed([quire, "--vault", v, "render"])
    return one

def quire_again(v):
    return lambda _: timed([quire, "--vault", v, "render"])

def quire_edit(v):
    note = sorted(os.path.join(d, f) for d, _, fs in os.walk(f"{v}/projects") for f in fs if f.endswith(".md"))[0]
    def one(i):
        with open(note, "a") as f:
            f.write(f"\nAn added paragraph, edit {i}.\n")
        return timed([quire, "--vault", v, "render"])
    return one

def quire_task_edit(v):
    note = sorted(os.path.join(d, f) for d, _, fs in os.walk(f"{v}/areas") for f in fs if f.endswith(".md"))[0]
    def one(i):
        with open(note, "a") as f:
            f.write(f"\n- [ ] an added task {i} 📅 2026-12-{i % 28 + 1:02d}\n")
        return timed([quire, "--vault", v, "render"])
    return one

def engine(cmd, out):
    def one(_):
        shutil.rmtree(out, ignore_errors=True)
        return timed(cmd)
    return one

rows = []
for n in sizes:
    v = f"{work}/v{n}"
    runs = 5 if n <= 20000 else 3
    rows.append((n, "quire render, cold (index built too)", median_of(runs, quire_cold(v))))
    rows.append((n, "quire render, unchanged", median_of(runs, quire_again(v))))
    quire_again(v)(0)
    rows.append((n, "quire render, after editing one note", median_of(runs, quire_edit(v))))
    rows.append((n, "quire render, after adding a task", median_of(runs, quire_task_edit(v))))
    if n <= 20000 or big_engines:
        if hugo:
            rows.append((n, "hugo", median_of(runs, engine([hugo, "-s", f"{work}/hugo{n}", "-d", f"{work}/hugo{n}-out", "--quiet"], f"{work}/hugo{n}-out"))))
        if zola:
            rows.append((n, "zola build", median_of(runs, engine([zola, "--root", f"{work}/zola{n}", "build", "-o", f"{work}/zola{n}-out", "--force"], f"{work}/zola{n}-out"))))

# The same 10,000-note builds on disk, where writing the files costs more and varies more.
if os.path.realpath(disk) != os.path.realpath(work) and 10000 in sizes:
    d = tempfile.mkdtemp(prefix="quire-bench-disk.", dir=disk)
    try:
        shutil.copytree(f"{work}/v10000", f"{d}/v", symlinks=True)
        rows.append((10000, "quire render, cold, on disk", median_of(3, quire_cold(f"{d}/v"))))
        if hugo:
            shutil.copytree(f"{work}/hugo10000", f"{d}/hugo")
            rows.append((10000, "hugo, on disk", median_of(3, engine([hugo, "-s", f"{d}/hugo", "-d", f"{d}/hugo-out", "--quiet"], f"{d}/hugo-out"))))
        if zola:
            shutil.copytree(f"{work}/zola10000", f"{d}/zola")
            rows.append((10000, "zola build, on disk", median_of(3, engine([zola, "--root", f"{d}/zola", "build", "-o", f"{d}/zola-out", "--force"], f"{d}/zola-out"))))
    finally:
        shutil.rmtree(d, ignore_errors=True)

print(f"{'notes':>7}  {'what':40} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}")
for n, what, (wall, cpu, rss) in rows:
    print(f"{n:>7}  {what:40} {wall:8.2f} {cpu:8.2f} {rss:8.0f}")
PY
}

bench_tasks() {
  build
  BENCH_DIR=${BENCH_DIR:-/dev/shm} workdir
  local sizes=(${TASKS:-40000 80000 160000})
  local zola=${ZOLA:-$(command -v zola || echo "$shared/bench/bin/zola")}
  echo "# one note with N tasks: quire index and render beside zola ($("$zola" --version 2>/dev/null || echo absent)) and hugo ($(command -v hugo >/dev/null && hugo version | cut -d' ' -f2 || echo absent)) building it as one page; in $work"
  python3 - "$quire" "$work" "$zola" "${sizes[@]}" <<'PY'
import os, shutil, subprocess, sys, tempfile
quire, work, zola, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4:]]
hugo = shutil.which("hugo")
zola = zola if os.access(zola, os.X_OK) else None

def timed(cmd, cwd=None):
    """(wall s, cpu s, peak RSS MiB) of one run, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r") as tf:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name] + cmd, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wall, user, sys_, rss = tf.read().split()[-4:]
        return float(wall), float(user) + float(sys_), int(rss) / 1024

def note(n):
    lines = ["# Many tasks", ""]
    for i in range(n):
        lines.append(f"- [ ] task {i} #tag{i % 50} 📅 2026-12-{i % 28 + 1:02d} ⏫")
    return "\n".join(lines) + "\n"

rows = []
for n in sizes:
    body = note(n)
    v = f"{work}/q{n}"
    os.makedirs(f"{v}/03_NOTES")
    open(f"{v}/quire.toml", "w").close()
    open(f"{v}/03_NOTES/Many.md", "w").write(body)
    subprocess.run([quire, "init", v], check=True, stdout=subprocess.DEVNULL)
    rows.append((n, "grep -c (reading the note once)", timed(["grep", "-c", "-F", "-e", "- [ ]", f"{v}/03_NOTES/Many.md"])))
    rows.append((n, "quire index --full", timed([quire, "--vault", v, "index", "--full"])))
    shutil.rmtree(f"{v}/.quire", ignore_errors=True)
    rows.append((n, "quire render, cold (index built too)", timed([quire, "--vault", v, "render"])))
    shutil.rmtree(f"{v}/_site", ignore_errors=True)
    rows.append((n, "quire render, no site (index current)", timed([quire, "--vault", v, "render"])))
    if zola:
        z = f"{work}/z{n}"
        os.makedirs(f"{z}/content"); os.makedirs(f"{z}/templates")
        open(f"{z}/config.toml", "w").write('base_url = "/"\n')
        open(f"{z}/templates/index.html", "w").write("<html><body>{{ section.title }}</body></html>")
        open(f"{z}/templates/page.html", "w").write("<html><body>{{ page.content | safe }}</body></html>")
        open(f"{z}/content/many.md", "w").write('+++\ntitle = "Many"\n+++\n' + body)
        rows.append((n, "zola build (the note as one page)", timed([zola, "--root", z, "build", "-o", f"{z}/out", "--force"])))
    if hugo:
        h = f"{work}/h{n}"
        os.makedirs(f"{h}/content"); os.makedirs(f"{h}/layouts/_default")
        open(f"{h}/hugo.toml", "w").write('baseURL = "/"\ndisableKinds = ["taxonomy", "term", "RSS", "sitemap"]\n')
        open(f"{h}/layouts/_default/single.html", "w").write("<html><body>{{ .Content }}</body></html>")
        open(f"{h}/layouts/_default/list.html", "w").write("<html><body>{{ .Title }}</body></html>")
        open(f"{h}/content/many.md", "w").write('---\ntitle: Many\n---\n' + body)
        rows.append((n, "hugo (the note as one page)", timed([hugo, "-s", h, "-d", f"{h}/out", "--quiet"])))

print(f"{'tasks':>7}  {'what':40} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}")
for n, what, (wall, cpu, rss) in rows:
    print(f"{n:>7}  {what:40} {wall:8.2f} {cpu:8.2f} {rss:8.0f}")
PY
}

bench_sandbox() {
  build; workdir
  echo "# quire sandbox on a $notes-note vault (seed $seed), $bundles single-file bundles, in $work"
  new_vault
  python3 - "$quire" "$work" "$bundles" <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time
quire, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
vault = f"{work}/vault"
has_time = os.path.exists("/usr/bin/time")

def run(*args):
    """Wall ms and peak RSS MiB of one `quire --vault vault args`."""
    with tempfile.NamedTemporaryFile("r") as tf:
        cmd = [quire, "--vault", vault, *args]
        if has_time:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        ms = (time.perf_counter() - t0) * 1000
        rss = int(open(tf.name).read().split()[-1]) / 1024 if has_time else float("nan")
    return ms, rss

def bundles(target, prefix, count, folder, creates_only=False):
    notes = sorted(os.path.relpath(os.path.join(d, f), vault) for d, _, fs in os.walk(vault)
                   if "/." not in d and "/contributions" not in d and "/sandbox" not in d
                   for f in fs if f.endswith(".md") and not d.startswith(f"{vault}/0"))
    pending = f"{vault}/contributions/pending"
    for i in range(count):
        if i % 2 or creates_only:
            change = {"op": "create", "path": f"{folder}/{prefix}-{i:05d}.md", "content": f"# {prefix} {i}\n\n- [ ] follow up {i}\n"}
        else:
            note = notes[(i * 7919) % len(notes)]
            change = {"op": "patch", "path": note, "body": [{"append": f"- [ ] {prefix} task {i}\n"}]}
        b = {"contract": "quire.contribution/1", "id": f"{prefix}-{i:05d}", "target": target,
             "author": {"name": "Bench", "email": "bench@example.org"}, "message": f"{prefix} {i}", "changes": [change]}
        with open(f"{pending}/{prefix}-{i:05d}.json", "w") as f:
            json.dump(b, f)

rows = []
creates = [run("sandbox", "create", f"branch-only-{i}", "--no-worktree")[0] for i in range(7)]
rows.append(("create, branch only (median of 7)", statistics.median(creates), float("nan")))
ms, rss = run("sandbox", "create", "m-1")
rows.append(("create with the worktree checkout", ms, rss))
bundles("sandbox:m-1", "sb", n, "bench")
ms, rss = run("apply")
rows.append((f"apply {n} bundles to the sandbox", ms, rss))
ms, rss = run("sandbox", "diff", "m-1")
rows.append(("diff", ms, rss))
ms, rss = run("sandbox", "promote", "m-1")
rows.append(("promote (main had not moved)", ms, rss))
ms, rss = run("sandbox", "rollback", "m-1")
rows.append(("rollback", ms, rss))
# Main moves on beside a second sandbox: a three-way merge.
run("sandbox", "create", "m-2", "--no-worktree")
bundles("sandbox:m-2", "sc", n, "bench2")
run("apply")
bundles("main", "mn", 100, "bench3", creates_only=True)
run("apply")
ms, rss = run("sandbox", "promote", "m-2")
rows.append(("promote (three-way, both moved)", ms, rss))
ms, rss = run("sandbox", "list")
rows.append(("list", ms, rss))
print(f"  {'what':40} {'wall ms':>9} {'RSS MiB':>8}")
for what, ms, rss in rows:
    print(f"  {what:40} {ms:9.1f} {rss:8.0f}")
PY
}

bench_missions() {
  build; workdir
  local steps=${STEPS:-100}
  echo "# quire missions on a $notes-note vault (seed $seed), $steps steps, in $work"
  new_vault
  cat >> "$work/vault/quire.toml" <<'TOML'

[missions]
parallel = 1

[missions.commands]
touch3 = "n=${QUIRE_STEP#s}; for f in a b c; do echo \"$QUIRE_STEP\" >> bench-$f.md; done"
TOML
  (cd "$work/vault" && git add quire.toml && git commit -qm "bench catalog")
  python3 - "$quire" "$work" "$steps" <<'PY'
import json, os, statistics, subprocess, sys, time
quire, work, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
vault = f"{work}/vault"
brief = {"contract": "quire.mission/1", "id": "bench-1", "title": "Bench",
         "pipeline": [{"step": f"s{i:04d}", "uses": "touch3"} for i in range(steps)]}
path = f"{work}/brief.json"
json.dump(brief, open(path, "w"))
# The first step's floor: Git checking the same vault out into a new work tree, before and after
# the mission (the file system's speed at creating files drifts within a run; nothing is deleted).
def git_checkout(name):
    t = time.perf_counter()
    subprocess.run(["git", "worktree", "add", "-q", "--detach", f"{work}/{name}", "HEAD"], cwd=vault, check=True)
    return (time.perf_counter() - t) * 1000
checkout_before = git_checkout("floor-before")
t0 = time.time()
subprocess.run([quire, "--vault", vault, "mission", "start", path], stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL, check=True)
wall = time.time() - t0
status = json.loads(subprocess.run([quire, "--vault", vault, "mission", "status", "bench-1", "--json"],
                                   capture_output=True, check=True).stdout)
from datetime import datetime
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
attempts = status["attempts"]
assert len(attempts) == steps and all(a["state"] == "succeeded" for a in attempts), status["mission"]
gaps = sorted((ts(b["started"]) - ts(a["ended"])) * 1000 for a, b in zip(attempts, attempts[1:]))
# Brief accepted to first step running: from the moment `mission start` began (the process start
# is part of it) to the first attempt's start.
first = (ts(attempts[0]["started"]) - t0) * 1000
# The floor: the same change (three files appended to) committed by git in the same worktree.
wt = f"{vault}/sandbox/bench-1"
floor = []
for i in range(20):
    for f in "abc":
        with open(f"{wt}/bench-{f}.md", "a") as fh: fh.write(f"floor {i}\n")
    t = time.perf_counter()
    subprocess.run(["sh", "-c", "git add -A && git commit -qm floor"], cwd=wt, check=True)
    floor.append((time.perf_counter() - t) * 1000)
floor.sort()
checkout_after = git_checkout("floor-after")
# More first steps, each paired with a git checkout right after it: one-step missions of their
# own sandboxes (FIRSTS of them), for a p50 and a per-pair ratio.
firsts, pairs = [first], []
for k in range(int(os.environ.get("FIRSTS", "5"))):
    one = {"contract": "quire.mission/1", "id": f"first-{k}", "title": "First",
           "pipeline": [{"step": "s", "uses": "touch3"}]}
    p1 = f"{work}/first-{k}.json"
    json.dump(one, open(p1, "w"))
    t1 = time.time()
    subprocess.run([quire, "--vault", vault, "mission", "start", p1], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    st = json.loads(subprocess.run([quire, "--vault", vault, "mission", "status", one["id"], "--json"],
                                   capture_output=True, check=True).stdout)
    q = (ts(st["attempts"][0]["started"]) - t1) * 1000
    g = git_checkout(f"floor-{k}")
    firsts.append(q); pairs.append(q / g)
firsts.sort(); pairs.sort()
def pct(v, p): return v[min(len(v) - 1, int(len(v) * p))]
print(f"  {'what':58} {'ms':>9}")
print(f"  {'brief accepted -> first step running, first mission':58} {first:9.1f}")
print(f"  {'floor: git worktree add of the same vault, before / after':58} {checkout_before:9.1f} / {checkout_after:.1f}")
if pairs:
    print(f"  {f'brief accepted -> first step running, p50 of {len(firsts)}':58} {pct(firsts, .5):9.1f}"
          f"   (each / git worktree add right after it: p50 {pct(pairs, .5):.2f}x)")
print(f"  {'step overhead p50 (exit -> next start, commit included)':58} {pct(gaps, .5):9.1f}")
print(f"  {'step overhead p99':58} {pct(gaps, .99):9.1f}")
print(f"  {'floor: git add -A && git commit, same change, p50':58} {pct(floor, .5):9.1f}")
print(f"  {'floor: git add -A && git commit, p99':58} {pct(floor, .99):9.1f}")
print(f"  {f'whole mission ({steps} steps), wall':58} {wall * 1000:9.1f}")
PY
}

bench_daemon() {
  build; workdir
  local burst=${BURST:-2000}
  echo "# quire daemon on a $notes-note vault (seed $seed), theme paper, in $work"
  new_vault
  python3 - "$quire" "$work" "$burst" <<'PY'
import json, os, socket, statistics, subprocess, sys, threading, time
quire, work, burst = sys.argv[1], sys.argv[2], int(sys.argv[3])
vault = f"{work}/vault"
pending = f"{vault}/contributions/pending"
daemon = subprocess.Popen([quire, "--vault", vault, "daemon", "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = daemon.stdout.readline()
addr = line.split("http://")[1].split("/")[0]
host, port = addr.split(":")

# One SSE connection for the whole run; a thread records when each bundle's pass completed.
done_at, passes, lock = {}, [], threading.Lock()
first_pass = threading.Event()
def listen():
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET /api/events HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            kind = data = None
            for l in block.decode(errors="replace").splitlines():
                if l.startswith("event:"): kind = l[6:].strip()
                if l.startswith("data:"): data = l[5:].strip()
            if kind == "pipeline.completed" and data:
                now = time.perf_counter()
                ids = json.loads(data)["data"]["bundles"]
                with lock:
                    passes.append(len(ids))
                    for i in ids:
                        done_at[i] = now
                first_pass.set()
threading.Thread(target=listen, daemon=True).start()
time.sleep(0.3)
first_pass.wait(600)  # the first pass renders the site cold

notes = sorted(os.path.relpath(os.path.join(d, f), vault) for d, _, fs in os.walk(vault)
               if "/." not in d and "/contributions" not in d and "/_site" not in d and "/06_RUNS" not in d
               for f in fs if f.endswith(".md"))
def bundle(i, prefix):
    kind = i % 3
    note = notes[(i * 7919) % len(notes)]
    if kind == 0:
        change = {"op": "patch", "path": note, "body": [{"append": f"- [ ] {prefix} task {i} 📅 2026-12-{i % 28 + 1:02d}\n"}]}
    elif kind == 1:
        change = {"op": "create", "path": f"bench/{prefix}-{i:05d}.md", "content": f"# {prefix} {i}\n\n- [ ] follow up {i}\n"}
    else:
        change = {"op": "patch", "path": note, "frontmatter": [{"op": "add", "path": f"/{prefix}{i}", "value": True}]}
    return {"contract": "quire.contribution/1", "id": f"{prefix}-{i:05d}", "author": {"name": "Bench", "email": "bench@example.org"},
            "message": f"{prefix} {i}", "changes": [change]}
def drop(b):
    tmp = f"{pending}/.{b['id']}.tmp"
    with open(tmp, "w") as f:
        json.dump(b, f)
    os.rename(tmp, f"{pending}/{b['id']}.json")

def one(b):
    t0 = time.perf_counter()
    drop(b)
    while b["id"] not in done_at:
        time.sleep(0.001)
    return (done_at[b["id"]] - t0) * 1000

# Warm-up, reported on its own: the first bundle of each kind changes every page's navigation
# once (the first run record makes 06_RUNS/ a folder with notes, the first created note makes
# bench/), which re-renders the whole site; steady state is what follows.
warm = [one(bundle(i, "warm")) for i in range(3)]
print("warm-up, one bundle of each kind: " + ", ".join(f"{w:.0f} ms" for w in warm) + " (the first two change every page's navigation)")
time.sleep(3)

# Latency: one bundle at a time, drop to the end of its pass (commit + index + render).
lat = []
for i in range(int(os.environ.get("SINGLES", "100"))):
    lat.append(one(bundle(i, "one")))
    time.sleep(0.05)
kinds = [statistics.median([l for j, l in enumerate(lat) if j % 3 == k]) for k in range(3) if len(lat) > k]
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(f"drop-to-done latency, {len(lat)} single bundles: p50 {pct(50):.0f} ms, p90 {pct(90):.0f} ms, p99 {pct(99):.0f} ms, max {lat[-1]:.0f} ms")
print("  median by kind: " + ", ".join(f"{k} {m:.0f} ms" for k, m in zip(["task appended", "note created", "front matter key"], kinds)))

# Burst: all at once, until every one has been through a pass.
bundles = [bundle(i, "burst") for i in range(burst)]
t0 = time.perf_counter()
for b in bundles:
    drop(b)
dropped = time.perf_counter() - t0
while not all(b["id"] in done_at for b in bundles):
    time.sleep(0.01)
took = time.perf_counter() - t0
with lock:
    n_passes = len(passes)
rss = hwm = 0
for l in open(f"/proc/{daemon.pid}/status"):
    if l.startswith("VmRSS:"): rss = int(l.split()[1]) / 1024
    if l.startswith("VmHWM:"): hwm = int(l.split()[1]) / 1024
print(f"burst of {burst}: all through the pipeline in {took:.2f} s = {burst / took:.0f} bundles/s (dropping took {dropped:.2f} s; {n_passes} passes in all)")
print(f"daemon memory after the burst: RSS {rss:.0f} MiB (peak {hwm:.0f} MiB)")
# The daemon hands freed memory back once it is idle (no hint for a scan interval, 2 s).
time.sleep(5)
for l in open(f"/proc/{daemon.pid}/status"):
    if l.startswith("VmRSS:"): rss = int(l.split()[1]) / 1024
print(f"daemon memory once idle, 5 s after the burst: RSS {rss:.0f} MiB")

# Queries under load.
for path in ["/api/tasks?tag=design", "/api/agenda?today=2026-12-01", "/healthz"]:
    if not os.path.exists("/usr/bin/wrk"):
        print("wrk not installed (apt-get install wrk): query load skipped"); break
    out = subprocess.run(["wrk", "-t2", "-c16", "-d10s", "--latency", f"http://{addr}{path}"], capture_output=True, text=True).stdout
    rps = next((l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")), "?")
    p99 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("99%")), "?")
    p50 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("50%")), "?")
    print(f"GET {path}: {rps} requests/s, p50 {p50}, p99 {p99} (wrk -t2 -c16 -d10s)")
daemon.terminate()
daemon.wait(60)
PY
}

# Many missions through the daemon at once: BRIEFS briefs of three no-op steps dropped together on
# a 1,000-note vault while single bundles keep arriving (their drop-to-done latency measured as in
# `daemon`); then, on a small vault, MISSIONS missions in all and GET /api/missions timed, with the
# daemon's memory before and after.
bench_missions_load() {
  build; workdir
  local briefs=${BRIEFS:-200} total=${MISSIONS:-1000}
  echo "# quire daemon carrying $briefs missions on a 1000-note vault (seed $seed), then $total missions, in $work"
  notes=1000 new_vault
  for v in vault; do cat >> "$work/$v/quire.toml" <<'TOML'

[missions.commands]
noop = "true"
TOML
    (cd "$work/$v" && git add quire.toml && git commit -qm "bench catalog")
  done
  mkdir -p "$work/small" && printf '# one\n\n- [ ] a task\n' > "$work/small/one.md" && touch "$work/small/quire.toml"
  "$quire" init "$work/small" >/dev/null
  cat >> "$work/small/quire.toml" <<'TOML'

[missions.commands]
noop = "true"
TOML
  (cd "$work/small" && git add quire.toml && git commit -qm "bench catalog")
  python3 - "$quire" "$work" "$briefs" "$total" <<'PY'
import json, os, socket, statistics, subprocess, sys, threading, time, urllib.request
quire, work, briefs, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def start(vault):
    d = subprocess.Popen([quire, "--vault", vault, "daemon", "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = d.stdout.readline().split("http://")[1].split("/")[0]
    return d, addr

def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1]) / 1024

def get(addr, path):
    t = time.perf_counter()
    body = urllib.request.urlopen(f"http://{addr}{path}").read()
    return (time.perf_counter() - t) * 1000, json.loads(body)

def drop(vault, doc):
    pending = f"{vault}/contributions/pending"
    tmp = f"{pending}/.{doc['id']}.tmp"
    with open(tmp, "w") as f: json.dump(doc, f)
    os.rename(tmp, f"{pending}/{doc['id']}.json")

def brief(i, steps):
    return {"contract": "quire.mission/1", "id": f"load-{i:04d}", "title": f"Load {i}",
            "pipeline": [{"step": f"s{k}", "uses": "noop"} for k in range(steps)]}

def waiting(addr):
    _, v = get(addr, "/api/missions")
    return sum(1 for m in v["missions"] if m["state"] == "awaiting_decision"), len(v["missions"])

# Phase 1: briefs and bundles together.
vault = f"{work}/vault"
d, addr = start(vault)
host, port = addr.split(":")
done_at, lock = {}, threading.Lock()
def listen():
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET /api/events HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: return
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            kind = data = None
            for l in block.decode(errors="replace").splitlines():
                if l.startswith("event:"): kind = l[6:].strip()
                if l.startswith("data:"): data = l[5:].strip()
            if kind == "pipeline.completed" and data:
                now = time.perf_counter()
                with lock:
                    for i in json.loads(data)["data"]["bundles"]: done_at[i] = now
threading.Thread(target=listen, daemon=True).start()
time.sleep(3)
def bundle(i):
    return {"contract": "quire.contribution/1", "id": f"side-{i:04d}", "message": f"side {i}",
            "changes": [{"op": "create", "path": f"side/s-{i:04d}.md", "content": f"# side {i}\n"}]}
def one(b):
    t0 = time.perf_counter(); drop(vault, b)
    while b["id"] not in done_at: time.sleep(0.001)
    return (done_at[b["id"]] - t0) * 1000
quiet = [one(bundle(i)) for i in range(20)]
rss0 = rss(d.pid)
# Bundles keep arriving, one every 250 ms, while the briefs are carried; each one's drop-to-done
# latency is measured.
stop = threading.Event()
lat, dropped_at = [], {}
def side():
    n = 20
    while not stop.is_set():
        b = bundle(n); n += 1
        dropped_at[b["id"]] = time.perf_counter(); drop(vault, b)
        time.sleep(0.25)
t0 = time.perf_counter()
for i in range(briefs): drop(vault, brief(i, 3))
feeder = threading.Thread(target=side); feeder.start()
while waiting(addr)[0] < briefs:
    time.sleep(0.2)
    if time.perf_counter() - t0 > 600: print("gave up after 600 s"); break
took = time.perf_counter() - t0
stop.set(); feeder.join()
deadline = time.perf_counter() + 60
while not all(i in done_at for i in dropped_at) and time.perf_counter() < deadline: time.sleep(0.05)
lat = [(done_at[i] - t) * 1000 for i, t in dropped_at.items() if i in done_at]
quiet.sort(); lat.sort()
p50 = lambda v: v[len(v) // 2]
print(f"  {briefs} briefs of 3 no-op steps: all awaiting decision in {took:.1f} s ({briefs * 3 / took:.0f} steps/s)")
print(f"  bundles dropped meanwhile (one every 250 ms): {len(lat)}, drop-to-done p50 {p50(lat):.0f} ms, max {lat[-1]:.0f} ms (alone, before: p50 {p50(quiet):.0f} ms)")
print(f"  daemon RSS {rss0:.0f} MiB before, {rss(d.pid):.0f} MiB after")
d.terminate(); d.wait(60)
# Floors, measured now on the same vault: a brief's sandbox is a checkout of it (each mission's
# worktree), a bundle is a commit of one new file.
adds, commits = [], []
for k in range(10):
    t = time.perf_counter()
    subprocess.run(["git", "worktree", "add", "-q", "--detach", f"{work}/floor-{k}", "main"], cwd=vault, check=True)
    adds.append((time.perf_counter() - t) * 1000)
wt = f"{work}/floor-0"
for k in range(20):
    os.makedirs(f"{wt}/side", exist_ok=True)
    with open(f"{wt}/side/floor-{k}.md", "w") as fh: fh.write(f"# floor {k}\n")
    t = time.perf_counter()
    subprocess.run(["sh", "-c", "git add -A && git commit -qm floor"], cwd=wt, check=True)
    commits.append((time.perf_counter() - t) * 1000)
adds.sort(); commits.sort()
print(f"  floor: git worktree add of this vault, p50 of 10: {p50(adds):.0f} ms (x {briefs}: {p50(adds) * briefs / 1000:.1f} s)")
print(f"  floor: git add -A && git commit of one new note, p50 of 20: {p50(commits):.0f} ms")

# Phase 2: many missions, one no-op step each, on a small vault; then the list timed.
vault = f"{work}/small"
d, addr = start(vault)
time.sleep(2)
rss0 = rss(d.pid)
t0 = time.perf_counter()
for i in range(total): drop(vault, brief(i, 1))
while waiting(addr)[0] < total:
    time.sleep(1)
    if time.perf_counter() - t0 > 1200: print("gave up after 1200 s"); break
took = time.perf_counter() - t0
times = sorted(get(addr, "/api/missions")[0] for _ in range(30))
print(f"  {total} missions of one step carried in {took:.1f} s")
print(f"  GET /api/missions with {total} missions: p50 {p50(times):.1f} ms, max {times[-1]:.1f} ms (30 requests)")
print(f"  daemon RSS {rss0:.0f} MiB before, {rss(d.pid):.0f} MiB after {total} missions (+{rss(d.pid) - rss0:.0f} MiB)")
# Once at rest (the worker's idle scan, then the memory of the work handed back): what stays.
time.sleep(6)
print(f"  daemon RSS 6 s later, at rest: {rss(d.pid):.0f} MiB (+{rss(d.pid) - rss0:.0f} MiB)")
t = time.perf_counter(); subprocess.run(["grep", "-r", "-c", "load-", f"{vault}/06_RUNS"], capture_output=True)
print(f"  floor: grep -r over the run records: {(time.perf_counter() - t) * 1000:.1f} ms")
d.terminate(); d.wait(60)
PY
}

bench_analytics() {
  build; workdir
  local n=${ANALYTICS:-100000}
  notes=1000
  echo "# analytics over $n applied bundles (and 10 % more refused or duplicate) in $work"
  new_vault
  # Receipts and bundles as the pipeline files them, over the last 30 days, from 20 authors.
  python3 - "$work/vault" "$n" <<'PY'
import json, os, random, sys, datetime
vault, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
now = datetime.datetime.now(datetime.timezone.utc)
proc, rej = f"{vault}/contributions/processed", f"{vault}/contributions/rejected"
os.makedirs(proc, exist_ok=True); os.makedirs(rej, exist_ok=True)
total = n + n // 10
for i in range(total):
    at = now - datetime.timedelta(seconds=random.uniform(0, 30 * 86400))
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    who = random.randrange(20)
    status = "applied" if i < n else random.choice(["rejected"] * 4 + ["duplicate"])
    r = {"id": f"b-{i:06d}", "status": status, "received_at": stamp,
         "duration_ms": round(random.lognormvariate(3, 0.6), 3)}
    if status == "rejected":
        r["error"] = {"code": random.choice(["conflict", "invalid_bundle", "unsafe_path", "not_found"]),
                      "message": "m", "change": 0, "path": f"03_NOTES/n{i}.md"}
        folder = rej
    else:
        r.update({"branch": "main", "commit": "0" * 40, "files": [f"03_NOTES/n{i}.md"] if status == "applied" else [], "applied_at": stamp})
        folder = proc
    with open(f"{folder}/b-{i:06d}.receipt.json", "w") as f: json.dump(r, f)
    with open(f"{folder}/b-{i:06d}.json", "w") as f:
        json.dump({"id": f"b-{i:06d}", "author": {"name": f"Author {who}", "email": f"a{who}@example.org"}}, f)
PY
  python3 - "$quire" "$work/vault" "$n" <<'PY'
import json, subprocess, sys, time, urllib.request
quire, vault, n = sys.argv[1:4]
def ms(f):
    t = time.perf_counter(); f(); return (time.perf_counter() - t) * 1000
def p50(xs): xs = sorted(xs); return xs[len(xs) // 2]
grep = lambda: subprocess.run(["grep", "-r", "-l", '"status": "applied"', f"{vault}/contributions/processed"], capture_output=True)
first = ms(lambda: subprocess.run([quire, "--vault", vault, "stats", "--json"], capture_output=True, check=True))
floor = [ms(grep) for _ in range(3)]
print(f"  quire stats, first run (records {int(n) * 11 // 10} receipts found on disk): {first:.0f} ms")
print(f"  floor: grep -r -l over the applied receipts (warm): p50 {p50(floor):.0f} ms")
again = [ms(lambda: subprocess.run([quire, "--vault", vault, "stats", "--json"], capture_output=True, check=True)) for _ in range(5)]
print(f"  quire stats again (lists the folders, reads the rollups): p50 {p50(again):.0f} ms")
d = subprocess.Popen([quire, "--vault", vault, "daemon", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
addr = d.stdout.readline().split("http://")[1].split("/")[0]
get = lambda path: urllib.request.urlopen(f"http://{addr}{path}").read()
time.sleep(2)
s = json.loads(get("/api/analytics/stats"))
assert s["bundles"]["by_status"]["applied"] == int(n), s["bundles"]["by_status"]
week = (time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400)))
for label, path in [("stats, everything", "/api/analytics/stats"), (f"stats since {week}", f"/api/analytics/stats?since={week}"),
                    ("trends per day, 30 days", "/api/analytics/trends?every=day&since=" + time.strftime("%Y-%m-%d", time.gmtime(time.time() - 30 * 86400))),
                    ("logs, first page", "/api/analytics/logs"), ("logs, one author's refusals", "/api/analytics/logs?author=a7@example.org&status=rejected"),
                    ("logs, page 100", "/api/analytics/logs?offset=5000&limit=50")]:
    get(path)
    xs = sorted(ms(lambda: get(path)) for _ in range(30))
    print(f"  GET {label}: p50 {p50(xs):.1f} ms, max {xs[-1]:.1f} ms (30 requests)")
print(f"  floor, same run: grep -r -l over the applied receipts: p50 {p50([ms(grep) for _ in range(3)]):.0f} ms")
d.terminate(); d.wait(60)
PY
}

bench_control() {
  build; workdir
  notes=1000
  python3 -c "import websocket" 2>/dev/null || pip install -q websocket-client >/dev/null 2>&1 || die "needs python's websocket-client"
  command -v chromium >/dev/null || die "needs chromium"
  echo "# mission control: first paint with 1,000 missions and 10,000 events, and event-to-page latency with 50 pages open, in $work"
  new_vault
  printf '\n[missions.commands]\nplan = "echo planned > PLAN.md"\n' >> "$work/vault/quire.toml"
  (cd "$work/vault" && git add quire.toml && git commit -qm catalog)
  python3 - "$quire" "$work" <<'PY'
import json, os, random, sqlite3, statistics, subprocess, sys, time, urllib.request, websocket
quire, work = sys.argv[1:3]
vault = f"{work}/vault"
def start():
    d = subprocess.Popen([quire, "--vault", vault, "daemon", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return d, d.stdout.readline().split("http://")[1].split("/")[0]
token = [l.split("=", 1)[1].strip() for l in open(f"{vault}/.env") if l.startswith("QUIRE_TOKEN=")][0]
def post(addr, path, body):
    r = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}, method="POST")
    return urllib.request.urlopen(r).read()
d, addr = start()
# Three real missions waiting for a decision (their cards show real sandbox diffs).
for i in range(3):
    post(addr, "/api/missions", {"contract": "quire.mission/1", "id": f"real-{i}", "title": f"Real {i}", "objectives": "x", "tasks": ["a"], "pipeline": [{"step": "plan", "uses": "plan"}]})
for _ in range(600):
    if len(json.loads(urllib.request.urlopen(f"http://{addr}/api/decisions").read())["decisions"]) == 3: break
    time.sleep(0.1)
# 10,000 events in the journal, through the API.
t = time.perf_counter()
for i in range(10000):
    post(addr, "/api/events", {"type": "bench.filler", "subject": f"e-{i}"})
print(f"  10,000 events posted in {time.perf_counter() - t:.1f} s", flush=True)
d.terminate(); d.wait(60)
# 1,000 more missions written straight into the missions' state, as a long-running daemon has them.
db = sqlite3.connect(f"{vault}/.quire/missions.db")
states = ["promoted"] * 6 + ["rejected", "aborted", "completed", "escalated", "awaiting_decision"]
brief = json.dumps({"contract": "quire.mission/1", "pipeline": [{"step": "plan"}, {"step": "build"}, {"step": "check"}]})
now = time.time()
for i in range(1000):
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - (1000 - i) * 60))
    st = random.choice(states)
    db.execute("INSERT INTO missions (id, digest, title, state, brief, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)", (f"load-{i:04d}", "0" * 64, f"Load mission {i}", st, brief, at, at))
    db.execute("INSERT INTO runs (mission, item, sandbox, state, step, round, attempt) VALUES (?, '', ?, ?, ?, 1, 1)", (f"load-{i:04d}", f"load-{i:04d}", st, 3))
    for k, step in enumerate(["plan", "build", "check"]):
        db.execute("INSERT INTO attempts (mission, item, step, round, attempt, fence, state, pid, started, ended, start_commit, log) VALUES (?, '', ?, 1, 1, 1, 'succeeded', 0, ?, ?, '', ?)", (f"load-{i:04d}", step, at, at, f"07_LOGS/missions/load-{i:04d}/{step}.log"))
db.commit(); db.close()
d, addr = start()
time.sleep(1)
def p50(xs): xs = sorted(xs); return xs[len(xs) // 2]
# The page over HTTP alone, then in the browser.
xs = []
for _ in range(20):
    t = time.perf_counter(); body = urllib.request.urlopen(f"http://{addr}/").read(); xs.append((time.perf_counter() - t) * 1000)
print(f"  GET / (1,003 missions, 10,000+ events): p50 {p50(xs):.1f} ms, {len(body) / 1024:.1f} KiB")
t = time.perf_counter(); urllib.request.urlopen(f"http://{addr}/api/missions").read()
print(f"  floor, same run: GET /api/missions (the JSON the page is made from): {(time.perf_counter() - t) * 1000:.1f} ms")
class Tab:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, suppress_origin=True); self.n = 0
    def call(self, method, params=None):
        self.n += 1; self.ws.send(json.dumps({"id": self.n, "method": method, "params": params or {}}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n: return m.get("result", {})
    def eval(self, expr):
        return self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})["result"].get("value")
browsers = []
def browser(n):
    # A browser holds at most 6 HTTP/1.1 connections to one host, and every open page keeps one
    # for its event stream: 50 pages are 10 browsers of 5 pages, as 50 people's would be.
    p = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", f"--user-data-dir={work}/chromium-{n}", "about:blank"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "DevTools listening on ws://" in line:
            browsers.append(p)
            return line.split("ws://")[1].split("/")[0]
def new_tab(devtools):
    t = json.loads(urllib.request.urlopen(urllib.request.Request(f"http://{devtools}/json/new?about:blank", method="PUT")).read())
    return Tab(t["webSocketDebuggerUrl"])
devtools = [browser(0)]
tab = new_tab(devtools[0])
fcp, weights = [], []
for _ in range(10):
    r = str(random.random())
    tab.call("Page.navigate", {"url": f"http://{addr}/?r={r}"})
    v = 0
    for _ in range(500):
        # Read from the new document only (the old one answers until the navigation commits).
        v = tab.eval(f"location.search === '?r={r}' && (performance.getEntriesByName('first-contentful-paint')[0] || {{}}).startTime || 0")
        if v: break
        time.sleep(0.02)
    fcp.append(v)
    weights.append(tab.eval("performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).reduce((s, e) => s + (e.decodedBodySize || 0), 0)"))
fcp = fcp[1:]  # the first load is the browser's warm-up
print(f"  first contentful paint of / in chromium: p50 {p50(fcp):.0f} ms, max {max(fcp):.0f} ms (9 loads after one warm-up); page weight {p50(weights) / 1024:.1f} KiB uncompressed (HTML, CSS, JS)")
floor = []
for _ in range(10):
    r = str(random.random())
    tab.call("Page.navigate", {"url": f"http://{addr}/site/paper/?r={r}"})
    v = 0
    for _ in range(500):
        v = tab.eval(f"location.search === '?r={r}' && (performance.getEntriesByName('first-contentful-paint')[0] || {{}}).startTime || 0")
        if v: break
        time.sleep(0.02)
    floor.append(v)
print(f"  floor, same run: first contentful paint of the paper site's static index page: p50 {p50(floor[1:]):.0f} ms")
# 50 pages open; 100 events posted 50 ms apart; each page notes when each arrives.
# The other nine browsers start only now, so the first-paint figures above are one browser's.
devtools += [browser(n) for n in range(1, 10)]
t0 = time.perf_counter()
tabs = [tab] + [new_tab(devtools[i // 5]) for i in range(1, 50)]
for t_ in tabs:
    t_.call("Page.navigate", {"url": f"http://{addr}/"})
live = 0
for t_ in tabs:
    for _ in range(100):
        if t_.eval("document.readyState === 'complete' && !!document.querySelector('#live') && document.querySelector('#live').textContent === 'Live'"):
            live += 1; break
        time.sleep(0.1)
print(f"  50 pages open, {live} of them live, in {time.perf_counter() - t0:.1f} s", flush=True)
for t_ in tabs:
    t_.eval("window.__arrivals = {}; document.addEventListener('quire:event', e => { const ev = e.detail.event; if (ev.type === 'bench.ping') window.__arrivals[ev.subject] = Date.now() - Date.parse(ev.at); }); true")
for i in range(100):
    post(addr, "/api/events", {"type": "bench.ping", "subject": f"p-{i}"})
    time.sleep(0.05)
time.sleep(2)
lat = []
for t_ in tabs:
    got = t_.eval("window.__arrivals") or {}
    lat.extend(got.values())
lat.sort()
print(f"  event journaled -> on each of 50 open pages: p50 {p50(lat):.0f} ms, p95 {lat[int(len(lat) * 0.95)]:.0f} ms, max {lat[-1]:.0f} ms ({len(lat)} of {100 * 50} arrivals)")
for b in browsers: b.terminate()
d.terminate(); d.wait(60)
PY
}

bench_runners() {
  build; workdir
  notes=${NOTES:-10000}
  echo "# runners: dispatch latency and fetch on a $notes-note vault, and throughput of 3 runners x 2 slots, in $work"
  new_vault
  git init -q --bare -b main "$work/remote.git"
  cat >> "$work/vault/quire.toml" <<TOML

[git]
remote = "$work/remote.git"

[missions]
local = false

[missions.commands]
noop = "date +%s%N"
nap = "sleep 1"
TOML
  python3 - "$work/vault/quire.toml" <<'PY'
import sys, re
p = sys.argv[1]; s = open(p).read()
# The template has its own [git]: keep one (the new one, with the remote).
if s.count("[git]\n") > 1:
    first = s.index("[git]\n")
    end = s.index("\n[", first + 1)
    s = s[:first] + s[end + 1:]
    open(p, "w").write(s)
PY
  (cd "$work/vault" && git add quire.toml && git commit -qm "runners")
  python3 - "$quire" "$work" <<'PY'
import json, os, subprocess, sys, time, urllib.request
quire, work = sys.argv[1:3]
vault = f"{work}/vault"
def p50(xs): xs = sorted(xs); return xs[len(xs) // 2]
d = subprocess.Popen([quire, "--vault", vault, "daemon", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=open(f"{work}/daemon.log", "w"), text=True, env=dict(os.environ, QUIRE_LOG=os.environ.get("QUIRE_LOG", "quire=info")))
addr = d.stdout.readline().split("http://")[1].split("/")[0]
get = lambda path: json.loads(urllib.request.urlopen(f"http://{addr}{path}").read())
token = [l.split("=", 1)[1].strip() for l in open(f"{vault}/.env") if l.startswith("QUIRE_TOKEN=")][0]
def post(path, body):
    r = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}, method="POST")
    return urllib.request.urlopen(r).read()
t0 = time.perf_counter()
while not get("/healthz").get("remote", {}).get("in_step"):
    time.sleep(0.2)
print(f"  first push of the vault to the bare remote: {time.perf_counter() - t0:.1f} s", flush=True)
runners = []
tokens = {}
def runner(name, slots):
    if name not in tokens:
        tokens[name] = subprocess.run([quire, "--vault", vault, "runner", "token", "new", name], capture_output=True, text=True, check=True).stdout.strip()
    tok = tokens[name]
    env = dict(os.environ, QUIRE_RUNNER_TOKEN=tok, QUIRE_LOG="quire=debug")
    runners.append(subprocess.Popen([quire, "runner", "--daemon", f"http://{addr}", "--slots", str(slots), "--workdir", f"{work}/{name}"], env=env, stderr=open(f"{work}/{name}.log", "a")))
def phases(names):
    # The runners' own account of where a step's time goes (their debug log lines).
    import re
    got = {}
    for name in names:
        for line in open(f"{work}/{name}.log"):
            if "key=w-" in line:
                continue
            for k, v in re.findall(r"(fetch_ms|reset_ms|watch_ms|push_ms|report_ms)=(\d+)", line):
                got.setdefault(k, []).append(int(v))
    return ", ".join(f"{k[:-3]} {p50(v)} ms" for k, v in sorted(got.items()))
def events(kind):
    out = {}
    for f in sorted(os.listdir(f"{vault}/07_LOGS")):
        if f.startswith("quire-") and f.endswith(".jsonl"):
            for line in open(f"{vault}/07_LOGS/{f}"):
                e = json.loads(line)
                if e["type"] == kind:
                    out[(e["data"]["mission"], e["data"]["attempt"])] = e
    return out
def at(e):
    from datetime import datetime
    return datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
def brief(i, step, uses):
    return {"contract": "quire.mission/1", "id": i, "title": i, "objectives": "x", "tasks": ["a"], "pipeline": [{"step": step, "uses": uses}]}
def wait_decisions(n):
    while len(get("/api/decisions")["decisions"]) < n:
        time.sleep(0.05)
# Dispatch: one idle runner; missions one after another (the first warms its repository).
runner("solo", 1)
n = 21
for i in range(n):
    post("/api/missions", brief(f"d-{i:02d}", "noop", "noop"))
    wait_decisions(i + 1)
offered, started = events("mission.step.offered"), events("mission.step.started")
lease = [(at(started[k]) - at(offered[k])) * 1000 for k in offered if k in started and k[0] != "d-00"]
fetch = []
for i in range(1, n):
    log = open(f"{vault}/07_LOGS/missions/d-{i:02d}/noop.1.1.log").read().split()
    fetch.append((int(log[0]) / 1e9 - at(started[(f"d-{i:02d}", 1)])) * 1000)
print(f"  dispatch, step offered -> leased by an idle runner: p50 {p50(lease):.1f} ms, max {max(lease):.1f} ms ({len(lease)} steps)")
print(f"  then fetch + checkout of the sandbox until the step starts (warm slot, {n - 1} steps): p50 {p50(fetch):.0f} ms, max {max(fetch):.0f} ms")
g = []
for _ in range(5):
    t = time.perf_counter(); subprocess.run(["git", "-C", f"{work}/solo/slot-0/work", "fetch", "-q", f"{work}/remote.git", "main"], check=True); g.append((time.perf_counter() - t) * 1000)
print(f"  floor, same run: a bare git fetch with nothing new, from the runner's repository: p50 {p50(g):.0f} ms")
print(f"  per step on the runner (p50): {phases(['solo'])}")
for r in runners: r.terminate(); r.wait(60)
runners.clear()
# Throughput: 3 runners x 2 slots, 60 one-second steps. First with the steps queued before the
# runners come (the runners' own pace), then posted while they work (bounded by brief intake too).
# The runners are warmed first, as they are in use: each slot has cloned the vault once.
w = 12
for k in range(3):
    runner(f"box-{k}", 2)
for i in range(w):
    post("/api/missions", brief(f"w-{i:02d}", "nap", "nap"))
wait_decisions(n + w)
for r in runners: r.terminate(); r.wait(60)
runners.clear()
n += w
m = 60
for i in range(m):
    post("/api/missions", brief(f"q-{i:02d}", "nap", "nap"))
while len(get("/api/runners")["waiting"]) < m:
    time.sleep(0.1)
def cpu(pid):
    # User + system seconds of a process and its reaped children (git, sh).
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")
d_cpu = cpu(d.pid)
for k in range(3):
    runner(f"box-{k}", 2)
wait_decisions(n + m)
d_cpu = cpu(d.pid) - d_cpu
r_cpu = sum(cpu(r.pid) for r in runners)
started, done = events("mission.step.started"), events("mission.step.succeeded")
ks = [k for k in started if k[0].startswith("q-")]
span = max(at(done[k]) for k in ks) - min(at(started[k]) for k in ks)
print(f"  throughput, 3 runners x 2 slots, {m} queued steps of sleep 1: {m / span:.2f} steps/s from the first lease to the last success ({span:.1f} s); ideal 6.00")
print(f"  per step on the runners (p50): {phases(['box-0', 'box-1', 'box-2'])}")
print(f"  CPU per step: daemon {d_cpu / m * 1000:.0f} ms, runners {r_cpu / m * 1000:.0f} ms (with their git and sh children; 2 cores give {2000 / (m / span):.0f} ms per step at this rate)")
t = time.perf_counter()
for i in range(m):
    post("/api/missions", brief(f"t-{i:02d}", "nap", "nap"))
posted = time.perf_counter() - t
wait_decisions(n + 2 * m)
wall = time.perf_counter() - t
offered, done = events("mission.step.offered"), events("mission.step.succeeded")
ks = [k for k in offered if k[0].startswith("t-")]
span = max(at(done[k]) for k in ks) - min(at(offered[k]) for k in ks)
print(f"  throughput, the same {m} steps posted while the runners work: {m / span:.2f} steps/s from first offer to last success ({span:.1f} s); {m / wall:.2f} steps/s from the first post to the last decision ({wall:.1f} s, posting took {posted:.1f} s)")
for r in runners: r.terminate(); r.wait(60)
d.terminate(); d.wait(60)
PY
}

case "${1:-}" in
  analytics) bench_analytics ;;
  runners) bench_runners ;;
  control) bench_control ;;
  apply) bench_apply ;;
  index) bench_index ;;
  tasks) bench_tasks ;;
  render) bench_render ;;
  sandbox) bench_sandbox ;;
  missions) bench_missions ;;
  missions-load) bench_missions_load ;;
  daemon) bench_daemon ;;
  *) echo "usage: scripts/bench.sh runners|analytics|control|apply|index|tasks|render|sandbox|missions|missions-load|daemon" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Boots a real systemd as PID 1 in namespaces of its own, installs trainbox
# the way README.md's "Install as a systemd service" says (its commands are
# run as written), and checks the units at work: socket activation, Type=
# notify, a Python trainer under the jobs drop-in, job control, a cgroup
# per job (Delegate=yes: a setsid() grandchild frozen and killed with its
# job), a download, an idle watchdog, a graceful stop that spares the
# trainer, the start limit, the seccomp filter, and `systemd-analyze
# security` online.
#
#   systemd/check-under-systemd.sh          (as root; after cargo build --release)
#
# TRAINBOX_CHECK_BINARY names another build to install in its place (CI
# uses the debug build its tests already made).
#
# The container's root is an overlay over the host's / with a tmpfs on top,
# in fresh pid, mount, uts, ipc, network and cgroup namespaces: nothing of
# the host's /etc, sysctls or services changes; the one host cgroup it
# makes (a leaf for the container) is removed at the end. Where root,
# namespaces, cgroup v2 or systemd are missing it says so and skips.
set -euo pipefail
SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
WORK=${TRAINBOX_CHECK_WORK:-/tmp/trainbox-systemd-check}
if [ -f /sys/fs/cgroup/unified/cgroup.procs ]; then CGROOT=/sys/fs/cgroup/unified; else CGROOT=/sys/fs/cgroup; fi
CG=$CGROOT/trainbox-systemd-check

skip() { echo "SKIP: $* (the systemd check did not run)"; exit 0; }
init_pid() { head -1 "$CG/container/init.scope/cgroup.procs" 2>/dev/null || true; }
inside() { nsenter -t "$(init_pid)" -a -r -w "$@"; }

# --- stages of the boot, each exec'd into the next namespace ------------

supervise() { # outside the new pid namespace; its own cgroup
  mkdir -p "$CG/supervisor" "$CG/container"
  echo $$ > "$CG/supervisor/cgroup.procs"
  trap "" HUP # the console pty's hangup must not end the supervisor
  exec unshare --fork --pid --mount --uts --ipc --net --propagation private "$SELF" --stage init-pre
}

init_pre() { # PID 1 of the pid namespace: into the container's cgroup, then its own cgroup ns
  echo 0 > "$CG/container/cgroup.procs"
  exec unshare --cgroup "$SELF" --stage init
}

init() { # the root filesystem, then systemd
  local root=$WORK/root console
  console=$(tty)
  mkdir -p "$WORK/layer" "$root"
  mount -t tmpfs -o mode=755 tmpfs "$WORK/layer"
  mkdir -p "$WORK/layer/upper" "$WORK/layer/work"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$WORK/layer/upper,workdir=$WORK/layer/work" "$root"
  mount -t proc proc "$root/proc"
  # Kernel-wide knobs read-only, as systemd-nspawn does.
  for knob in sys sysrq-trigger; do
    [ -e "$root/proc/$knob" ] || continue
    mount --bind "$root/proc/$knob" "$root/proc/$knob"
    mount -o remount,bind,ro "$root/proc/$knob"
  done
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
  mount -t tmpfs -o mode=755,nosuid,size=64m tmpfs "$root/dev"
  local node
  for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $node
    mknod -m 666 "$root/dev/$1" c "$2" "$3"
  done
  mkdir -p "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$root/dev/pts"
  ln -s pts/ptmx "$root/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
  touch "$root/dev/console"
  mount --bind "$console" "$root/dev/console"
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
  # The host's own services, and units that would touch kernel-wide
  # settings, stay off (masked in the overlay only).
  local unit
  for unit in postgresql.service nginx.service e2scrub_reap.service systemd-timesyncd.service \
      systemd-pstore.service getty@tty1.service console-getty.service avahi-daemon.service \
      avahi-daemon.socket apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
      e2scrub_all.timer fstrim.timer man-db.timer systemd-tmpfiles-clean.timer remote-fs.target \
      systemd-sysctl.service modprobe@.service systemd-modules-load.service \
      kmod-static-nodes.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
      sys-fs-fuse-connections.mount; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  rm -f "$root/etc/machine-id"
  echo 7472616e626f78636865636b00000001 > "$root/etc/machine-id"
  echo trainbox-check > "$root/etc/hostname"
  cd "$root"
  mkdir -p .host
  pivot_root . .host
  umount -l /.host
  rmdir /.host || true
  # Shared propagation, as on a host: LoadCredential= is set up in a
  # helper mount namespace and must reach the service.
  mount --make-rshared /
  exec env -i container=trainbox-check TERM=dumb /lib/systemd/systemd --unit=multi-user.target
}

boot() {
  mkdir -p "$WORK"
  # script(1) gives systemd a pty for /dev/console; `sleep` keeps its input open.
  (setsid bash -c "sleep infinity | script -qfec '$SELF --stage supervise' $WORK/console.log" \
    > /dev/null 2>&1 < /dev/null & echo $! > "$WORK/launcher.pid")
  local state=""
  for _ in $(seq 1 90); do
    if [ -n "$(init_pid)" ]; then
      state=$(inside systemctl is-system-running 2> /dev/null || true)
      case "$state" in running | degraded) return 0 ;; esac
    fi
    sleep 1
  done
  echo "systemd did not come up (state: ${state:-none}); console:"
  tail -40 "$WORK/console.log" || true
  return 1
}

teardown() {
  if [ -n "$(init_pid)" ]; then inside systemctl poweroff > /dev/null 2>&1 || true; fi
  for _ in $(seq 1 60); do [ -z "$(init_pid)" ] && break; sleep 1; done
  [ -f "$WORK/launcher.pid" ] && kill -- -"$(cat "$WORK/launcher.pid")" 2> /dev/null || true
  for _ in $(seq 1 40); do
    [ -d "$CG" ] || break
    find "$CG" -depth -type d -exec rmdir {} \; 2> /dev/null || sleep 0.5
  done
  [ -d "$CG" ] && echo "warning: cgroup $CG is left behind"
  umount -l "$WORK/layer" 2> /dev/null || true
  rm -rf "$WORK"
}

# --- what runs inside: the README's install, then the checks ------------

checks() {
  cd /root/trainbox
  local failures=0 started
  started=$(date +%s)
  pass() { echo "PASS $*"; }
  fail() { echo "FAIL $*"; failures=$((failures + 1)); }
  check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

  # README.md, "Install as a systemd service": its commands, as written
  # (sudo is ourselves here).
  sudo() { "$@"; }
  eval "$(sed -n '/^## Install as a systemd service/,/^```$/{/^```bash$/,/^```$/p}' README.md | sed '1d;$d')"

  local read_token control_token base=http://127.0.0.1:8000
  read_token=$(sed -n 's/^read://p' /etc/trainbox/tokens)
  control_token=$(sed -n 's/^control://p' /etc/trainbox/tokens)
  api() { curl -sS -m 20 -H "Authorization: Bearer $control_token" -H 'Content-Type: application/json' "$@"; }
  field() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
  status() { api "$base/api/training/jobs/$1" | field '["status"]'; }
  wait_status() { for _ in $(seq 1 90); do [ "$(status "$1")" = "$2" ] && return 0; sleep 1; done; return 1; }
  job_file() { echo "/var/lib/private/trainbox/jobs/$1/$2"; }
  logged() { for _ in $(seq 1 15); do grep -q "$2" "$(job_file "$1" training.log)" 2> /dev/null && return 0; sleep 1; done; return 1; }
  control() { curl -sS -f -m 10 -o /dev/null -X POST -H "Authorization: Bearer $control_token" "$base/api/training/$1/$2"; }

  healthy() { curl -sS -m 10 $base/healthz | grep -q '"status":"ok"'; }
  check "socket activation: /healthz answers" healthy
  check "401 without a token" test "$(curl -s -o /dev/null -w '%{http_code}' -m 10 $base/api/training/jobs)" = 401
  check "200 with the read token" test "$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H "Authorization: Bearer $read_token" $base/api/training/jobs)" = 200
  check "Type=notify: ready and running" test "$(systemctl show -P SubState trainbox.service)" = running
  check "the state directory belongs to the dynamic user" test -L /var/lib/trainbox -a -d /var/lib/private/trainbox
  # The admin's part: a trainer and the recipes (the state directory
  # exists once the service has started).
  install -d -m 0755 /opt/train
  install -m 0644 check/train.py check/escaper.sh /opt/train/
  install -m 0644 check/recipes.json /var/lib/trainbox/recipes.json

  local demo
  demo=$(api -X POST -d '{"recipe": "demo", "params": {"steps": 300}}' $base/api/training/jobs | field '["id"]')
  check "the demo trainer completes" wait_status "$demo" completed
  model_zip() {
    curl -sS -f -m 60 -o /tmp/model.zip -H "Authorization: Bearer $read_token" "$base/api/training/$demo/download/model" &&
      unzip -tq /tmp/model.zip > /dev/null
  }
  check "its model downloads and unzip -t passes" model_zip

  local job
  job=$(api -X POST -d '{"recipe": "py", "params": {"steps": 600}}' $base/api/training/jobs | field '["id"]')
  check "a python trainer runs: loopback TCP and sched_setaffinity" logged "$job" '^loopback ok affinity ok'
  status_line() { systemctl show -P StatusText trainbox.service | grep -q '1 trainer(s) running'; }
  check "Status= follows: 1 trainer(s) running" status_line
  paused() { control "$job" pause && sleep 1 && [ "$(status "$job")" = paused ]; }
  resumed() { control "$job" resume && sleep 1 && [ "$(status "$job")" = running ]; }
  cancelled() { control "$job" cancel && wait_status "$job" cancelled && logged "$job" '^SIGTERM: saving'; }
  check "pause" paused
  check "resume" resumed
  check "cancel: the trainer's SIGTERM handler runs" cancelled

  # Delegate=yes: a cgroup per job, which a setsid() grandchild cannot leave.
  cgroup_mode() { curl -sS -m 10 $base/healthz | grep -q '"control":"cgroup"'; }
  check "Delegate=yes: each job in its own cgroup" cgroup_mode
  job=$(api -X POST -d '{"recipe": "escaper"}' $base/api/training/jobs | field '["id"]')
  local jobs_cgroup=/sys/fs/cgroup/system.slice/trainbox.service/jobs escaped
  for _ in $(seq 1 20); do [ -s "$(job_file "$job" escaped.pid)" ] && break; sleep 0.5; done
  escaped=$(cat "$(job_file "$job" escaped.pid)")
  ticks() { stat -c %s "$(job_file "$job" ticks.txt)"; }
  frozen() {
    control "$job" pause && grep -q 'frozen 1' "$jobs_cgroup/$job/cgroup.events" &&
      local before && before=$(ticks) && sleep 0.5 && [ "$(ticks)" = "$before" ]
  }
  emptied() {
    control "$job" resume && control "$job" cancel && wait_status "$job" cancelled &&
      [ ! -d "$jobs_cgroup/$job" ] && ! grep -qv '^Z' <(awk '{print $3}' "/proc/$escaped/stat" 2> /dev/null)
  }
  check "pause freezes a setsid() grandchild too" frozen
  check "cancel leaves no process and no cgroup" emptied

  job=$(api -X POST -d '{"recipe": "py", "params": {"steps": 600}}' $base/api/training/jobs | field '["id"]')
  logged "$job" '^step' > /dev/null || true
  local main_pid
  main_pid=$(systemctl show -P MainPID trainbox.service)
  echo "idle for 70 s with a trainer running (WatchdogSec=30s)..."
  sleep 70
  check "the watchdog keeps it: same process, no restart" \
    test "$(systemctl show -P MainPID trainbox.service)" = "$main_pid" -a "$(systemctl show -P NRestarts trainbox.service)" = 0
  check "no error lines in the journal" test -z "$(journalctl -u trainbox -p err --no-pager -q)"
  check "the trainer still runs" test "$(status "$job")" = running

  local t0 t1
  t0=$(date +%s%N)
  systemctl stop trainbox.socket trainbox.service
  t1=$(date +%s%N)
  STOP_MS=$(((t1 - t0) / 1000000))
  echo "systemctl stop with a running trainer: ${STOP_MS} ms"
  echo "the trainer's last log line: $(tail -1 "$(job_file "$job" training.log)")"
  check "a graceful stop: Result=success" test "$(systemctl show -P Result trainbox.service)" = success
  check "within the cancel grace (30 s)" test "$STOP_MS" -lt 30000
  check "the trainer's SIGTERM handler ran" grep -q '^SIGTERM: saving' "$(job_file "$job" training.log)"
  recorded() {
    python3 - "$(job_file "$job" job.json)" << 'PY'
import json, sys
record = json.load(open(sys.argv[1]))
print("recorded:", {k: record[k] for k in ("status", "stop_signal", "exit_code")})
sys.exit(not (record["status"] == "interrupted" and record["stop_signal"] == 15))
PY
  }
  check "the job is recorded interrupted, ended by SIGTERM (15)" recorded

  # A service that cannot start gives up instead of restarting for ever.
  mv /etc/trainbox/tokens /etc/trainbox/tokens.away
  systemctl start trainbox.socket
  curl -s -m 3 -o /dev/null $base/healthz || true
  gave_up() { # failed for good: the start limit tripped and restarts stopped
    for _ in $(seq 1 40); do
      if systemctl is-failed -q trainbox.service &&
        journalctl -u trainbox --no-pager -q | grep -q 'Start request repeated too quickly'; then
        local restarts
        restarts=$(systemctl show -P NRestarts trainbox.service)
        sleep 5
        [ "$(systemctl show -P NRestarts trainbox.service)" = "$restarts" ] &&
          systemctl is-failed -q trainbox.service && return 0
      fi
      sleep 1
    done
    return 1
  }
  check "a missing token file hits the start limit" gave_up
  echo "restarts before giving up: $(systemctl show -P NRestarts trainbox.service)"
  mv /etc/trainbox/tokens.away /etc/trainbox/tokens
  systemctl reset-failed trainbox.service trainbox.socket
  systemctl restart trainbox.socket
  check "after reset-failed it serves again" healthy

  check "no SIGSYS (seccomp) anywhere in the journal" \
    test -z "$(journalctl -b --no-pager -q | grep -E 'SIGSYS|status=31/SYS')"
  exposure() { # the overall exposure of the unit as loaded now
    systemd-analyze security trainbox.service --no-pager | tail -1 | grep -oE '[0-9]+\.[0-9]+' | head -1
  }
  local with_jobs without_jobs
  with_jobs=$(exposure)
  mv /etc/systemd/system/trainbox.service.d /etc/systemd/system/trainbox.service.d.away
  systemctl daemon-reload
  without_jobs=$(exposure)
  mv /etc/systemd/system/trainbox.service.d.away /etc/systemd/system/trainbox.service.d
  systemctl daemon-reload
  echo "systemd-analyze security: $without_jobs without, $with_jobs with the jobs drop-in"
  check "exposure <= 1.0 without the jobs drop-in" python3 -c "import sys; sys.exit(not $without_jobs <= 1.0)"
  check "exposure <= 1.0 with the jobs drop-in" python3 -c "import sys; sys.exit(not $with_jobs <= 1.0)"

  echo "--- journal of trainbox, warnings and above (the start-limit check's failures expected)"
  journalctl -u trainbox -p warning --no-pager -q | tail -20 || true
  echo "$failures check(s) failed; the checks took $(($(date +%s) - started)) s"
  return $((failures > 0))
}

# --- the check, from the host ---------------------------------------------

run() {
  [ "$(id -u)" = 0 ] || skip "not root"
  [ -x /lib/systemd/systemd ] || skip "no systemd installed (Debian: apt install systemd)"
  for tool in unshare nsenter script pivot_root curl python3 unzip; do
    command -v "$tool" > /dev/null || skip "$tool is missing"
  done
  [ -f "$CGROOT/cgroup.procs" ] || skip "no cgroup v2 hierarchy"
  unshare --pid --mount --net --uts --ipc --cgroup --fork true 2> /dev/null || skip "namespaces are not available here"
  local binary=${TRAINBOX_CHECK_BINARY:-$REPO/target/release/trainbox}
  [ -x "$binary" ] || { echo "build first: cargo build --release"; exit 1; }
  [ -e "$CG" ] && { echo "$CG exists: is a check already running?"; exit 1; }

  local began=$SECONDS
  trap teardown EXIT
  boot
  local home
  home=/proc/$(init_pid)/root/root/trainbox
  mkdir -p "$home/target/release" "$home/check"
  cp "$binary" "$home/target/release/trainbox"
  cp -r "$REPO/systemd" "$REPO/README.md" "$home/"
  cat > "$home/check/train.py" << 'PY'
# A trainer as real ones behave: a loopback TCP connection (as NCCL and
# DataLoader workers make), CPU affinity, progress written atomically, and
# a SIGTERM handler that saves and exits 0.
import json, os, signal, socket, sys, threading, time

stopping = False
def on_term(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, on_term)

server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
threading.Thread(target=lambda: server.accept()[0].sendall(b"ok"), daemon=True).start()
peer = socket.create_connection(server.getsockname(), timeout=5)
loopback = peer.recv(2).decode()
os.sched_setaffinity(0, os.sched_getaffinity(0))
print("loopback", loopback, "affinity ok", flush=True)

steps = int(os.environ.get("TRAINBOX_PARAM_STEPS", "20"))
progress = os.environ["TRAINBOX_PROGRESS_FILE"]
for step in range(1, steps + 1):
    if stopping:
        print("SIGTERM: saving at step", step, flush=True)
        sys.exit(0)
    with open(progress + ".tmp", "w") as f:
        json.dump({"step": step, "total_steps": steps, "loss": 1 / step}, f)
    os.replace(progress + ".tmp", progress)
    print("step", step, flush=True)
    time.sleep(0.5)
os.makedirs(os.environ["TRAINBOX_OUTPUT_DIR"], exist_ok=True)
with open(os.path.join(os.environ["TRAINBOX_OUTPUT_DIR"], "config.json"), "w") as f:
    f.write("{}")
PY
  cat > "$home/check/escaper.sh" << 'SH'
# A trainer whose grandchild leaves its process group (setsid), as
# launchers and data-loader workers may, and ticks into ticks.txt.
( setsid sh -c 'echo $$ > escaped.pid; while :; do echo t >> ticks.txt; sleep 0.05; done' & )
while :; do sleep 0.05; done
SH
  cat > "$home/check/recipes.json" << 'JSON'
{"recipes": {
  "demo": {"command": ["/usr/local/bin/trainbox", "demo-trainer"],
           "params": {"steps": {"type": "int", "min": 1, "max": 100000, "default": 300}}},
  "py": {"command": ["/usr/bin/python3", "/opt/train/train.py"],
         "params": {"steps": {"type": "int", "min": 1, "max": 100000, "default": 20}}},
  "escaper": {"command": ["/bin/sh", "/opt/train/escaper.sh"]}}}
JSON
  local result=0
  inside bash -c "$(declare -f checks); checks" || result=$?
  echo "systemd check: $((SECONDS - began)) s in all"
  return $result
}

case "${1:-}" in
--stage)
  case "$2" in
  supervise) supervise ;;
  init-pre) init_pre ;;
  init) init ;;
  esac
  ;;
"") run ;;
*)
  sed -n '2,16p' "$SELF"
  exit 2
  ;;
esac

"""Alerting end to end: a real overload of the engine fires the queue alert, Alertmanager
delivers it to a webhook receiver, and it resolves when the load stops.

The chain, all real and inside the target: more parallel long generations than the engine's
max_num_seqs, so vLLM queues requests -> Prometheus scrapes vllm:num_requests_waiting -> the rule
VllmRequestQueueHigh (threshold and `for` lowered in molecule.yml) fires -> Alertmanager sends
it to its default receiver, a webhook -> the alert sink, a test fixture (tasks/alert_sink.yml)
that appends every notification it receives as one JSON line to SINK_FILE. Only lines written
after the load started count, and the alert must have started after the load did.

The load is a Python script run as a transient systemd unit (so that it outlives the command
that starts it), bounded by its own deadline and by RuntimeMaxSec; it reads the engine's key
from the 0600 environment file, so the key is on no command line.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from datetime import datetime, timedelta, timezone

ALERT = "VllmRequestQueueHigh"  # templates/rules/vllm.rules.yml.j2 of the observability role
INSTANCE = "tiny"
ENV_FILE = f"/etc/vllm/{INSTANCE}.env"
SINK_FILE = "/var/lib/alert-sink/alerts.jsonl"
LOAD_SECONDS = 300  # the load stops by itself after this (systemd kills it a minute later)
QUIET_TIMEOUT = 90
FIRING_TIMEOUT = 240
RESOLVED_TIMEOUT = 240

LOAD = r"""
import json, os, threading, time, urllib.error, urllib.request
# ARGS is prepended by the test.
def engine_key():
    with open(ARGS['env_file'], encoding='utf-8') as f:
        for line in f:
            if line.startswith('VLLM_API_KEY='):
                return line.split('=', 1)[1].strip().strip('"')
    raise SystemExit('no VLLM_API_KEY in ' + ARGS['env_file'])
KEY = engine_key()
DEADLINE = time.time() + ARGS['seconds']
stats = {'pid': os.getpid(), 'sent': 0, 'ok': 0, 'failed': 0, 'in_flight': 0, 'last_error': None}
lock = threading.Lock()
def stopping():
    return time.time() > DEADLINE or os.path.exists(ARGS['stop_file'])
def worker(n):
    body = json.dumps({'model': ARGS['model'], 'prompt': 'Load %d: tell a long story.' % n,
                       'max_tokens': ARGS['max_tokens'], 'ignore_eos': True, 'temperature': 0}).encode()
    while not stopping():
        req = urllib.request.Request(ARGS['url'], data=body, headers={
            'Content-Type': 'application/json', 'Authorization': 'Bearer ' + KEY})
        with lock:
            stats['sent'] += 1
            stats['in_flight'] += 1
        try:
            with urllib.request.urlopen(req, timeout=ARGS['seconds']) as resp:
                resp.read()
            error = None
        except urllib.error.HTTPError as e:
            error = 'HTTP %d: %s' % (e.code, e.read()[:300].decode(errors='replace'))
        except OSError as e:
            error = repr(e)[:300]
        with lock:
            stats['in_flight'] -= 1
            if error is None:
                stats['ok'] += 1
            else:
                stats['failed'] += 1
                stats['last_error'] = error
        if error is not None:
            time.sleep(1)
def write_status(state):
    with lock:
        data = dict(stats, state=state, at=time.time())
    with open(ARGS['status_file'] + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(data, f)
    os.replace(ARGS['status_file'] + '.tmp', ARGS['status_file'])
for n in range(ARGS['concurrency']):
    threading.Thread(target=worker, args=(n,), daemon=True).start()
while not stopping():
    write_status('running')
    time.sleep(1)
write_status('stopped by the stop file' if os.path.exists(ARGS['stop_file']) else 'stopped at its deadline')
# Exit without waiting for the requests in flight: their connections close and vLLM aborts them.
os._exit(0)
"""

COMMON = r"""
import datetime, json, os, re, sys, time, urllib.parse, urllib.request
ARGS = json.loads(sys.argv[1])
def epoch(text):
    # RFC 3339 as Prometheus and Alertmanager write it (nanoseconds, Z or an offset)
    m = re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)', text or '')
    if not m:
        return None
    fraction = (m.group(2) or '0')[:6].ljust(6, '0')
    offset = '+00:00' if m.group(3) == 'Z' else m.group(3)
    return datetime.datetime.fromisoformat(m.group(1) + '.' + fraction + offset).timestamp()
def api(path, **params):
    url = 'http://127.0.0.1:9090' + path + ('?' + urllib.parse.urlencode(params) if params else '')
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except (OSError, ValueError) as e:
        return {'error': repr(e)}
def alerts_of_rule():
    reply = api('/api/v1/alerts')
    return [a for a in reply.get('data', {}).get('alerts', []) if a.get('labels', {}).get('alertname') == ARGS['alert']]
def waiting():
    reply = api('/api/v1/query', query='vllm:num_requests_waiting')
    values = [float(r['value'][1]) for r in reply.get('data', {}).get('result', [])]
    return max(values) if values else None
def sink_lines():
    try:
        with open(ARGS['sink'], encoding='utf-8') as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
def read_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
"""

# Until the rule's alert is inactive and nothing waits: a quiet start, whatever ran before.
QUIET = COMMON + r"""
deadline = time.time() + ARGS['timeout']
while True:
    active, queue = alerts_of_rule(), waiting()
    if (not active and queue == 0) or time.time() > deadline:
        break
    time.sleep(2)
rules = [r for g in api('/api/v1/rules', type='alert').get('data', {}).get('groups', [])
         for r in g.get('rules', []) if r.get('name') == ARGS['alert']]
print(json.dumps({'active': active, 'waiting': queue, 'rules': rules, 'lines': len(sink_lines()), 'now': time.time()}))
"""

# Until the sink holds a notification with status ARGS['status'] for the rule's alert, after
# line ARGS['after'] and started at ARGS['not_before'] or later (none left over from an earlier
# load); meanwhile records what Prometheus says of the alert and the queue.
WATCH = COMMON + r"""
deadline = time.time() + ARGS['timeout']
prometheus, queue, found = {}, [], None
while True:
    lines = sink_lines()
    seen = []
    for i in range(ARGS['after'], len(lines)):
        try:
            body = json.loads(lines[i])
        except ValueError:
            seen.append([i, 'not JSON', lines[i][:200]])
            continue
        alerts = body.get('alerts') or []
        seen.append([i, body.get('status'), [[a.get('labels', {}).get('alertname'), a.get('status'), a.get('startsAt')]
                                             for a in alerts]])
        mine = [a for a in alerts
                if a.get('labels', {}).get('alertname') == ARGS['alert'] and a.get('status') == ARGS['status']
                and (epoch(a.get('startsAt')) or 0) >= ARGS['not_before']]
        if found is None and body.get('status') == ARGS['status'] and mine:
            found = {'line': i, 'body': body, 'alert': mine[0]}
    now = alerts_of_rule()
    for a in now:
        prometheus[a.get('state')] = a
    queue.append(waiting())
    if found is not None or time.time() > deadline:
        break
    time.sleep(2)
print(json.dumps({'found': found, 'seen': seen[-20:], 'prometheus': prometheus, 'prometheus_now': now,
                  'waiting_max': max([q for q in queue if q is not None], default=None),
                  'waiting_last': queue[-10:], 'load': read_json(ARGS['status_file'])}))
"""

STOP = r"""
import json, os, signal, sys, time
ARGS = json.loads(sys.argv[1])
def ours():
    # The PID this test started, as long as it still runs the load script (no PID reuse).
    try:
        with open('/proc/%d/cmdline' % ARGS['pid'], 'rb') as f:
            return ARGS['script'].encode() in f.read()
    except OSError:
        return False
with open(ARGS['stop_file'], 'w', encoding='utf-8'):
    pass
deadline = time.time() + 20
while ours() and time.time() < deadline:
    time.sleep(0.5)
killed = []
for sig in (signal.SIGTERM, signal.SIGKILL):
    if ours():
        os.kill(ARGS['pid'], sig)
        killed.append(int(sig))
        deadline = time.time() + 10
        while ours() and time.time() < deadline:
            time.sleep(0.5)
try:
    with open(ARGS['status_file'], encoding='utf-8') as f:
        status = json.load(f)
except (OSError, ValueError):
    status = None
print(json.dumps({'killed': killed, 'running': ours(), 'status': status}))
"""


def pyrun(host, code: str, args: dict):
    """Run a Python script inside the target; it prints one JSON line last."""
    out = host.run(f"python3 -c {shlex.quote(code)} {shlex.quote(json.dumps(args))}")
    assert out.rc == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_time(text: str) -> datetime:
    """RFC 3339 as Prometheus and Alertmanager write it (nanoseconds, Z or an offset)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text or "")
    assert match, f"not an RFC 3339 time: {text!r}"
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    offset = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{offset}")


def start_load(host, work: str, unit: str, args: dict) -> int:
    """Start the load as the transient unit `unit`; return its PID."""
    script = f"ARGS = {args!r}\n" + LOAD
    host.run_expect([0], f"install -d -m 0700 {work} && printf '%s' {shlex.quote(script)} > {work}/load.py")
    host.run_expect([0], f"systemd-run --unit={unit} --collect --quiet -p RuntimeMaxSec={LOAD_SECONDS + 60}"
                         f" /usr/bin/python3 {work}/load.py")
    pid = host.check_output(
        f"for i in $(seq 20); do p=$(systemctl show -p MainPID --value {unit}); "
        f"[ \"${{p:-0}}\" != 0 ] && {{ echo $p; exit 0; }}; sleep 0.5; done; echo 0")
    journal = host.run(f"journalctl -u {unit} --no-pager -o cat -n 20").stdout
    assert int(pid) > 0, f"the load unit {unit} did not start: {journal[-2000:]}"
    return int(pid)


def test_overload_fires_queue_alert_at_webhook_and_resolves(host):
    variables = host.ansible.get_variables()
    receiver = variables["observability_alertmanager_default_receiver"]
    threshold = variables["observability_alert_waiting_requests"]
    engine_host = variables["inventory_hostname"]
    instance = [i for i in variables["vllm_engine_instances"] if i["name"] == INSTANCE][0]
    max_num_seqs = int(instance.get("max_num_seqs") or 0)
    assert 0 < max_num_seqs <= 16, (
        f"the load is sized from the scenario's max_num_seqs (three times it): {max_num_seqs} is not in 1..16")
    # Three times what the engine runs at once: the rest waits in vLLM's queue.
    concurrency = 3 * max_num_seqs
    assert host.service("alert-sink").is_running, "the alert sink (prepare.yml) is not running"

    token = uuid.uuid4().hex[:8]
    work = f"/run/gpuserve-alert-test-{token}"
    unit = f"gpuserve-alert-load-{token}.service"
    common = {"alert": ALERT, "sink": SINK_FILE, "status_file": f"{work}/status.json"}

    quiet = pyrun(host, QUIET, {**common, "timeout": QUIET_TIMEOUT})
    assert len(quiet["rules"]) == 1, f"Prometheus has not loaded exactly one {ALERT} rule: {quiet['rules']}"
    assert quiet["rules"][0]["query"] == f"vllm:num_requests_waiting > {threshold}", quiet["rules"][0]
    assert not quiet["active"] and quiet["waiting"] == 0, (
        f"not quiet after {QUIET_TIMEOUT} s, so a notification could be an old one: "
        f"{ALERT} in Prometheus: {quiet['active']}, vllm:num_requests_waiting: {quiet['waiting']}")
    baseline = quiet["lines"]
    started = datetime.fromtimestamp(quiet["now"], timezone.utc)
    # Prometheus' startsAt is an evaluation time after the queue built up: after the load started.
    common["not_before"] = quiet["now"] - 2

    load_args = {
        "env_file": ENV_FILE, "stop_file": f"{work}/stop", "status_file": common["status_file"],
        "url": "http://127.0.0.1:8000/v1/completions", "model": instance.get("served_model_name", INSTANCE),
        "max_tokens": min(1536, int(instance.get("max_model_len", 2048)) - 64),
        "concurrency": concurrency, "seconds": LOAD_SECONDS,
    }
    pid = start_load(host, work, unit, load_args)
    try:
        firing = pyrun(host, WATCH, {**common, "status": "firing", "after": baseline, "timeout": FIRING_TIMEOUT})
    finally:
        stopped = pyrun(host, STOP, {"pid": pid, "script": f"{work}/load.py", "stop_file": load_args["stop_file"],
                                     "status_file": common["status_file"]})
        journal = host.run(f"journalctl -u {unit} --no-pager -o cat -n 20").stdout
        host.run(f"rm -rf {work}")
    seen = (f"sink lines since the load started: {firing['seen']}; {ALERT} in Prometheus: "
            f"{firing['prometheus']}; vllm:num_requests_waiting max {firing['waiting_max']}, "
            f"last {firing['waiting_last']}; load: {firing['load']}")
    assert not stopped["running"], f"the load (PID {pid}) still runs: {stopped}"
    load = stopped["status"] or {}
    assert load.get("sent", 0) >= concurrency, f"the load did not run: {stopped}; its journal: {journal[-2000:]}; {seen}"
    assert firing["found"], f"no firing notification of {ALERT} reached the sink within {FIRING_TIMEOUT} s; {seen}"

    # Prometheus itself had the alert firing, for this engine, above the threshold.
    prom = firing["prometheus"].get("firing")
    assert prom, f"Prometheus' /api/v1/alerts never showed {ALERT} firing; {seen}"
    assert prom["labels"]["host"] == engine_host and prom["labels"]["instance"] == INSTANCE, prom
    assert float(prom["value"]) > threshold, prom

    # The notification as Alertmanager sent it to the webhook.
    body, alert = firing["found"]["body"], firing["found"]["alert"]
    assert body["status"] == "firing" and body["receiver"] == receiver, body
    labels = alert["labels"]
    assert labels["alertname"] == ALERT, alert
    assert labels["host"] == engine_host, f"host label {labels.get('host')!r}, expected {engine_host!r}: {alert}"
    assert labels["instance"] == INSTANCE, f"instance label {labels.get('instance')!r}, expected {INSTANCE!r}: {alert}"
    assert labels["model"] == load_args["model"] and labels["severity"] == "warning", alert
    assert "requests waiting" in alert["annotations"]["summary"], alert
    starts = parse_time(alert["startsAt"])
    # WATCH only takes alerts that started after the load did; said here once more, in plain words.
    assert starts >= started - timedelta(seconds=2), (
        f"the notified alert started at {alert['startsAt']}, before the load ({started.isoformat()}): an old one")

    # The load has stopped: the same alert comes back resolved.
    resolved = pyrun(host, WATCH, {**common, "status": "resolved", "after": firing["found"]["line"] + 1,
                                   "timeout": RESOLVED_TIMEOUT})
    assert resolved["found"], (
        f"no resolved notification of {ALERT} reached the sink within {RESOLVED_TIMEOUT} s of stopping the load; "
        f"sink lines since the firing one: {resolved['seen']}; {ALERT} in Prometheus: {resolved['prometheus']}; "
        f"vllm:num_requests_waiting last {resolved['waiting_last']}; load: {stopped}")
    body, gone = resolved["found"]["body"], resolved["found"]["alert"]
    assert body["status"] == "resolved" and body["receiver"] == receiver, body
    assert gone["labels"] == labels, f"resolved {gone['labels']}, fired {labels}"
    assert parse_time(gone["startsAt"]) == starts, (gone["startsAt"], alert["startsAt"])
    assert parse_time(gone["endsAt"]) > starts, gone
    assert not resolved["prometheus_now"], f"Prometheus still has {ALERT} active: {resolved['prometheus_now']}"

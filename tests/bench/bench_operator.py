"""The operator under load on the local cluster, installed by the chart and run as a local process: how
soon a new run gets its first child, and what many tiny runs at once cost it.

kwok plays the kubelet, so a pod costs nothing but API traffic; a driver loop here plays the stage
programs, ending every stage pod that runs with its stage summary as the termination message. The
machine is small and shared (2 cores): each bench says how busy it was, and with what, while it measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.parser import text_string_to_metric_families
from reasoning_operator.status import ended_because
from reasoning_pipeline.spec import Stage

from tests.support.kwok import OUTCOME, finish_on_cue
from tests.support.operator import OperatorProcess
from tests.support.runs import (
    GROUP,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STAGE,
    PLURAL,
    VERSION,
    create_run,
    stage_summary,
    storage_for,
    tiny_run,
)
from tests.support.waiting import wait_for

RUNS = int(os.environ.get("REASONING_BENCH_RUNS", "200"))
REPETITIONS = 10
# The operator's default; the fixture's operator resyncs every 2 s, which tests want and clusters do not.
RESYNC_SECONDS = 30.0
# What every stage pod and server asks for ("cpu,memory"), instead of the spec's 2 CPU and 8 Gi: the kwok
# cpu pool (3 nodes × 32 CPU, 128 Gi, 110 pods) then holds 330 pods rather than 48. "default" keeps 2, 8Gi.
POD_RESOURCES = os.environ.get("REASONING_BENCH_POD_RESOURCES", "100m,128Mi")
SECTIONS = ("data", "generation", "rewrite", "filter", "format", "training", "evaluation")
SHARED = "bench"  # the runs share one claim, `bench-storage`, bound in advance to a ReadWriteMany volume
STALL_SECONDS = 180
DEADLINE_SECONDS = 45 * 60
TICK_SECONDS = 10
REPLICA_TYPE = "training.kubeflow.org/replica-type"
CLUSTER_PROGRAMS = "/.cache/reasoning-operator/"  # where the local cluster's programs live
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Event = dict[str, Any]


# ------------------------------------------------------------------------------------------- runs
def run_document(name: str, claim: str) -> dict[str, Any]:
    """examples/tiny.yaml under another name, on a shared claim, its pods sized by POD_RESOURCES."""
    document = tiny_run(name, storage={"claimName": claim})
    if POD_RESOURCES != "default":
        cpu, memory = POD_RESOURCES.split(",")
        for section in SECTIONS:
            document["spec"][section]["resources"] = {"cpu": cpu, "memory": memory}
    return document


@contextlib.contextmanager
def shared_claim(core: client.CoreV1Api, namespace: str) -> Iterator[str]:
    """One ReadWriteMany claim for every run, bound to a volume made for it; the volume is deleted after."""
    claim = f"{SHARED}-storage"
    with storage_for(core, namespace, SHARED):
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Ti"}}},
            },
        )
        wait_for(
            lambda: core.read_namespaced_persistent_volume_claim(claim, namespace).status.phase == "Bound",
            timeout=60,
            what=f"claim {claim} to be bound",
        )
        yield claim


def realistic(operator: OperatorProcess) -> OperatorProcess:
    """The fixture's operator, restarted with the default resync interval."""
    operator.resync_seconds = RESYNC_SECONDS
    operator.restart()
    return operator


# --------------------------------------------------------------------------------------- watching
def follow(list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Event | None]:
    """What `list_call` lists (as ADDED events), None once listed, then every change, as plain dicts (no
    model classes: the bench shares the operator's 2 cores); None again at least every TICK_SECONDS."""
    version: str | None = None
    while True:
        if version is None:
            listed = json.loads(list_call(*args, **kwargs, _preload_content=False).data)
            version = listed["metadata"]["resourceVersion"]
            for item in listed["items"]:
                yield {"type": "ADDED", "object": item}
            yield None
        response = list_call(
            *args,
            **kwargs,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=TICK_SECONDS,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event: Event = json.loads(line)
                if event["type"] == "ERROR":
                    if event["object"].get("code") != 410:
                        raise AssertionError(f"watch failed: {event['object']}")
                    version = None  # history compacted away: list again
                    break
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    yield event
        finally:
            response.release_conn()
        yield None


class Follower(threading.Thread):
    """`follow` in a thread, handing each event to `see`."""

    def __init__(
        self, see: Callable[[Event], None], list_call: Callable[..., Any], *args: Any, **kwargs: Any
    ):
        super().__init__(daemon=True)
        self.see, self.call, self.args, self.kwargs = see, list_call, args, kwargs
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for event in follow(self.call, *self.args, **self.kwargs):
                if self.stopping.is_set():
                    return
                if event is None:
                    self.synced.set()
                else:
                    self.see(event)
        except BaseException as error:  # handed to the bench by check()
            self.error = error

    def begin(self) -> Follower:
        self.start()
        if not self.synced.wait(60):
            self.check()
            raise AssertionError("the bench's watch did not list in 60 s")
        return self

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"a watch of the bench failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2 * TICK_SECONDS)


# ------------------------------------------------------------------------------------ stage driver
class StageFinisher:
    """Plays the stage programs: every driver pod and trainer master that runs is told to succeed with
    its stage's summary. Counts the run pods by phase on the way (the scheduling queue)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace
        self.told = 0
        self.most = Counter[str]()
        self.handovers: list[float] = []  # a stage's pod told to finish → the next stage's pod exists
        self._phases: dict[str, str] = {}
        self._counts = Counter[str]()
        self._told: set[str] = set()
        self._handing_over: dict[str, float] = {}
        self.follower = Follower(self.see, core.list_namespaced_pod, namespace, label_selector=LABEL_ROLE)

    def see(self, event: Event) -> None:
        pod = event["object"]
        metadata = pod["metadata"]
        name, labels = metadata["name"], metadata.get("labels") or {}
        phase = "Gone" if event["type"] == "DELETED" else (pod.get("status") or {}).get("phase", "Pending")
        if (before := self._phases.get(name)) is not None:
            self._counts[before] -= 1
        self._phases[name] = phase
        self._counts[phase] += 1
        self.most[phase] = max(self.most[phase], self._counts[phase])
        if labels.get(LABEL_ROLE) not in ("driver", "trainer"):
            return
        if labels.get(REPLICA_TYPE, "master").lower() != "master":
            return
        run = labels[LABEL_RUN]
        if event["type"] == "ADDED" and run in self._handing_over:
            self.handovers.append(time.monotonic() - self._handing_over.pop(run))
        if phase != "Running" or OUTCOME in (metadata.get("annotations") or {}) or name in self._told:
            return
        summary = stage_summary(Stage(labels[LABEL_STAGE]))
        self.core.patch_namespaced_pod(
            name,
            self.namespace,
            {"metadata": {"annotations": finish_on_cue("Succeeded", termination_message=summary)}},
            _preload_content=False,
        )
        self._told.add(name)
        self.told += 1
        self._handing_over[run] = time.monotonic()

    def pods(self) -> str:
        return ", ".join(f"{count} {phase}" for phase, count in sorted(self._counts.items()) if count)


# --------------------------------------------------------------------------------- what it cost
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent not idle, all cores together (/proc/stat)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def processes() -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found[pid] = (command or f"[{(proc / 'comm').read_text().strip()}]", cpu_seconds(pid))
        except (OSError, ValueError, IndexError):
            continue
    return found


@dataclass(frozen=True)
class Machine:
    """A snapshot of where the machine's CPU time went."""

    at: float
    busy: float
    processes: dict[int, tuple[str, float]]

    @classmethod
    def now(cls) -> Machine:
        return cls(time.monotonic(), busy_cpu_seconds(), processes())

    def since(self, before: Machine, operator_pid: int) -> str:
        spent: defaultdict[str, float] = defaultdict(float)
        others: defaultdict[str, float] = defaultdict(float)
        for pid, (command, seconds) in self.processes.items():
            used = seconds - before.processes.get(pid, (command, 0.0))[1]
            if pid == operator_pid:
                spent["operator"] += used
            elif pid == os.getpid():
                spent["this bench (watches, patches)"] += used
            elif CLUSTER_PROGRAMS in command:
                spent["cluster (etcd, API server, controllers, kwok)"] += used
            else:
                others[" ".join(Path(word).name for word in command.split()[:3])] += used
        wall, busy = self.at - before.at, self.busy - before.busy
        cores = os.cpu_count() or 1
        other = busy - sum(spent.values())
        parts = ", ".join(f"{what} {seconds:.0f}" for what, seconds in spent.items())
        busiest = sorted(others.items(), key=lambda item: -item[1])[:3]
        top = "; ".join(f"{command} {seconds:.0f}" for command, seconds in busiest if seconds >= 1)
        verdict = "other work ran" if other > 0.05 * wall * cores else "no other work to speak of"
        return (
            f"machine: {cores} cores, shared. Over {wall:.0f} s they were busy {busy:.0f} CPU-s of "
            f"{wall * cores:.0f}: {parts}; everything else {other:.0f} ({verdict}{': ' + top if top else ''})"
        )


def operator_figures(operator: OperatorProcess) -> dict[str, float]:
    """The operator's own counters: API requests by verb (kopf's watches are not among them), reconciles."""
    figures: defaultdict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            if sample.name == "reasoning_api_requests_total":
                figures[sample.labels["verb"]] += sample.value
            elif sample.name in (
                "reasoning_reconcile_seconds_count",
                "reasoning_reconcile_seconds_sum",
                "reasoning_reconcile_errors_total",
            ):
                figures[sample.name] += sample.value
    return figures


def log_complaints(operator: OperatorProcess) -> list[str]:
    text = operator.log_path.read_text(errors="replace") if operator.log_path.exists() else ""
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


def spread(values: list[float], unit: str = "s") -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"min {ordered[0]:.3f} {unit}  median {statistics.median(ordered):.3f} {unit}  "
        f"p90 {p90:.3f} {unit}  max {ordered[-1]:.3f} {unit}"
    )


# ------------------------------------------------------------------------------------------ benches
def bench_apply_to_first_child(
    operator: OperatorProcess, custom: client.CustomObjectsApi, batch: client.BatchV1Api, restricted: str
) -> None:
    """Create examples/tiny.yaml (renamed) and time how long until its first child Job exists."""
    namespace, running = restricted, realistic(operator)
    pid = running.process.pid if running.process else 0
    arrived: queue.Queue[tuple[str, float]] = queue.Queue()

    def see(event: Event) -> None:
        if event["type"] == "ADDED":
            arrived.put(
                ((event["object"]["metadata"].get("labels") or {}).get(LABEL_RUN, ""), time.monotonic())
            )

    jobs = Follower(see, batch.list_namespaced_job, namespace).begin()
    before = Machine.now()
    firsts, requests = [], []
    try:
        for repetition in range(REPETITIONS):
            name = f"first-child-{repetition:02d}"
            started = time.monotonic()
            create_run(custom, namespace, tiny_run(name))
            requests.append(time.monotonic() - started)
            while True:
                try:
                    run, seen = arrived.get(timeout=60)
                except queue.Empty:
                    jobs.check()
                    raise AssertionError(
                        f"no Job of {name} in 60 s; operator log:\n{running.log_tail()}"
                    ) from None
                if run == name:
                    firsts.append(seen - started)
                    break
            time.sleep(2)  # let the operator finish with this run (status, events) before the next
    finally:
        jobs.stop()
    after = Machine.now()
    print(f"\napply → first child Job: {REPETITIONS} runs of examples/tiny.yaml, one at a time")
    print(f"  first child Job seen      {spread(firsts)}")
    print(f"  (each, in order: {', '.join(f'{s:.3f}' for s in firsts)})")
    print(f"  the create request alone  {spread(requests)}")
    print(
        f"  operator resync every {RESYNC_SECONDS:.0f} s; {len(log_complaints(running))} warnings in its log"
    )
    print(f"  {after.since(before, pid)}")


@pytest.mark.timeout(DEADLINE_SECONDS + 600)
def bench_concurrent_tiny_runs(
    operator: OperatorProcess, core: client.CoreV1Api, custom: client.CustomObjectsApi, restricted: str
) -> None:
    """RUNS tiny runs created at once, every stage pod ended as soon as it runs: how long until all have
    succeeded, and what that cost the operator (memory, CPU, API requests)."""
    namespace, running = restricted, realistic(operator)
    assert running.process is not None
    pid = running.process.pid
    with shared_claim(core, namespace) as claim:
        documents = [run_document(f"tiny-{n:03d}", claim) for n in range(RUNS)]
        finisher = StageFinisher(core, namespace)
        finisher.follower.begin()
        before, counted = Machine.now(), operator_figures(running)
        cpu, rss = cpu_seconds(pid), status_kib(pid, "VmRSS")
        try:
            started = time.monotonic()
            for document in documents:
                create_run(custom, namespace, document)
            creating = time.monotonic() - started
            done = wait_until_all_succeeded(custom, namespace, running, finisher, started)
            elapsed = time.monotonic() - started
        finally:
            finisher.follower.stop()
        after, now_counted = Machine.now(), operator_figures(running)
        figures = {key: now_counted[key] - counted.get(key, 0.0) for key in now_counted}
        cpu = cpu_seconds(pid) - cpu
        peak = status_kib(pid, "VmHWM")
    stages = RUNS * len(SECTIONS)
    reconciles = figures.get("reasoning_reconcile_seconds_count", 0.0)
    mean = 1000 * figures.get("reasoning_reconcile_seconds_sum", 0.0) / max(reconciles, 1)
    errors = figures.get("reasoning_reconcile_errors_total", 0.0)
    rows = [
        ("created (one request each)", f"{creating:.1f} s"),
        ("all Succeeded after", f"{elapsed:.1f} s   ({stages} stages, {stages / elapsed:.1f} stages/s)"),
        ("one run, create → Succeeded", spread(list(done.values()))),
        ("stage hand-over", spread(finisher.handovers)),
        ("", "(a stage pod told to finish → the next stage's pod exists: kwok, Job controller, operator)"),
        (
            "run pods at once",
            f"most Pending {finisher.most['Pending']}, most Running {finisher.most['Running']}",
        ),
        ("operator peak RSS (VmHWM)", f"{peak / 1024:.1f} MiB   (before the runs: {rss / 1024:.1f} MiB)"),
        ("operator CPU", f"{cpu:.1f} s   ({cpu / elapsed:.2f} of a core while the runs ran)"),
        (
            "reconciles",
            f"{reconciles:.0f}   ({reconciles / RUNS:.1f} per run, mean {mean:.1f} ms, {errors:.0f} errors)",
        ),
    ]
    print(f"\n{RUNS} tiny runs at once (examples/tiny.yaml, 7 stages each, one shared ReadWriteMany claim)")
    print(
        f"  operator resync every {RESYNC_SECONDS:.0f} s; "
        f"stage pods and servers ask {POD_RESOURCES.replace('default', '2,8Gi').replace(',', ' CPU, ')}"
    )
    for label, value in rows:
        print(f"  {label:<30}{value}")
    verbs = sorted(key for key in figures if key.isupper())
    print("  API requests from the operator's reconciles (kopf's own list and watch requests not counted):")
    print(f"    {'verb':<8}{'total':>8}{'per run':>10}")
    for verb in [*verbs, "all"]:
        total = sum(figures[v] for v in verbs) if verb == "all" else figures[verb]
        print(f"    {verb:<8}{total:>8.0f}{total / RUNS:>10.1f}")
    complaints = log_complaints(running)
    print(
        f"  operator log: {len(complaints)} warnings or errors"
        + "".join(f"\n    {c}" for c in complaints[:5])
    )
    print(f"  {after.since(before, pid)}")


def wait_until_all_succeeded(
    custom: client.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
    finisher: StageFinisher,
    started: float,
) -> dict[str, float]:
    """Seconds from `started` until each run was seen Succeeded; fails on a failed run, when nothing has
    moved for STALL_SECONDS, or past DEADLINE_SECONDS."""
    done: dict[str, float] = {}
    where: dict[str, str] = {}
    moved = time.monotonic()
    for event in follow(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL):
        now = time.monotonic()
        finisher.follower.check()
        if event is not None:
            name = event["object"]["metadata"]["name"]
            status = event["object"].get("status") or {}
            seen = f"{status.get('phase', 'new')} {status.get('progress', '')}".strip()
            if where.get(name) != seen:
                where[name], moved = seen, now
            if status.get("phase") == "Failed":
                raise AssertionError(f"run {name} is {ended_because(status)}")
            if status.get("phase") == "Succeeded":
                done.setdefault(name, now - started)
                if len(done) == RUNS:
                    return done
        if now - moved > STALL_SECONDS or now - started > DEADLINE_SECONDS:
            runs = ", ".join(f"{n} {s}" for s, n in Counter(where.values()).most_common())
            raise AssertionError(
                f"{len(done)} of {RUNS} runs succeeded in {now - started:.0f} s, then nothing moved for "
                f"{now - moved:.0f} s. Runs: {runs}. Pods: {finisher.pods()}.\n"
                f"Operator log:\n{operator.log_tail()}"
            )
    raise AssertionError("the watch of the runs ended")

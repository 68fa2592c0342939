"""`batchyard console`: a small read-only web console, server-rendered with aiohttp.

Why this shape: every page is plain HTML rendered on the server from the same views as the CLI
(`listing.queue_views`, `ce_views`, `job_rows`' fields), so there is no JavaScript application,
no build step and no new dependency (aiohttp comes with kopf). A dozen lines of script re-fetch
the page every few seconds and swap its <main>, so it updates live without reloading.

Whose rights: the console never uses the operator's ServiceAccount. It reads through kubectl,
either with the kubeconfig of the user who started it (`batchyard console`, the default: open
http://127.0.0.1:8088 on your own machine), or, with `--server URL`, with the bearer token each
browser request carries (`Authorization: Bearer ...`, as an authenticating proxy in front of it
passes it on); a request without a token gets 401. Either way the API server decides what the
viewer may see, and a page the viewer may not read shows the API server's refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import shutil
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from aiohttp import web

from batchyard import GROUP, VERSION
from batchyard.api.common import JOB_STATES
from batchyard.cli.common import CommandError, age, estimated_start
from batchyard.cli.listing import COUNTED, ce_views, field_selector, queue_views, select

REFRESH_SECONDS = 5

NAMESPACED = {"batchjobs"}


class Reader(Protocol):
    """A list (no name) or one object, in a namespace or all (namespace None), with a field selector."""

    def __call__(
        self, plural: str, name: str | None = None, namespace: str | None = None, selector: str = ""
    ) -> Awaitable[Any]: ...


def register(sub: Any) -> None:
    p = sub.add_parser(
        "console", help="a read-only web console (acts with your kubeconfig or the viewer's token)"
    )
    p.add_argument("--address", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--server", help="API server URL: act with each request's bearer token, not a kubeconfig")
    p.add_argument("--certificate-authority", help="CA file for --server")
    p.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl", help="kubectl binary")
    p.set_defaults(func=cmd_console)


# --- reading, with the viewer's rights -----------------------------------------------------------


def kubectl_reader(kubectl: str) -> Reader:
    """`kubectl get ... -o json` with the kubeconfig of the user who started the console."""

    async def get(
        plural: str, name: str | None = None, namespace: str | None = None, selector: str = ""
    ) -> Any:
        args = [plural, *([name] if name else [])]
        if plural in NAMESPACED:
            args += ["-n", namespace] if namespace else ["--all-namespaces"]
        args += ["--field-selector", selector] if selector else []
        proc = await asyncio.create_subprocess_exec(
            kubectl, "get", *args, "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise CommandError(err.decode().strip() or f"kubectl get {' '.join(args)} failed")
        return json.loads(out)

    return get


def token_reader(server: str, token: str, ca: str | None) -> Reader:
    """GETs on the API server with the viewer's bearer token (no kubectl needed in the image)."""
    context = ssl.create_default_context(cafile=ca) if ca else None

    async def get(
        plural: str, name: str | None = None, namespace: str | None = None, selector: str = ""
    ) -> Any:
        path = f"/apis/{GROUP}/{VERSION}"
        if plural in NAMESPACED and namespace:
            path += f"/namespaces/{quote(namespace)}"
        path += f"/{plural}" + (f"/{quote(name)}" if name else "")
        params = {"fieldSelector": selector} if selector else {}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                server.rstrip("/") + path, params=params, headers=headers, ssl=context or True
            ) as response,
        ):
            body = await response.json(content_type=None)
            if response.status >= 400:
                message = body.get("message") if isinstance(body, dict) else None
                raise CommandError(f"{response.status}: {message or response.reason}")
            return body

    return get


# --- rendering (pure: data in, HTML out) -----------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#232f3e;color:#fff;padding:10px 20px}header a{color:#fff;margin-right:18px;text-decoration:none}
header b{margin-right:28px}main{padding:16px 20px}h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.SUCCEEDED{color:#1a7f37;font-weight:600}.FAILED{color:#c62828;font-weight:600}.RUNNING,.STARTING{color:#0b5cad;font-weight:600}
.RUNNABLE,.PENDING,.SUBMITTED{color:#8a5a00;font-weight:600}.blocked{color:#c62828}.muted{color:#6b7785}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;background:#fff;padding:12px;box-shadow:0 1px 2px #0002}
dt{font-weight:600}dd{margin:0}form{margin:0 0 12px}input,select{margin-right:8px}.err{color:#c62828;white-space:pre-wrap}pre{margin:0;white-space:pre-wrap;max-width:36em;font-size:12px}
"""

SCRIPT = (
    "setInterval(async()=>{try{const r=await fetch(location.href,{headers:{'X-Partial':'1'}});"
    "if(r.ok){document.querySelector('main').innerHTML=await r.text();}}catch(e){}},"
    + str(REFRESH_SECONDS * 1000)
    + ");"
)


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)} - Batchyard</title>"
        f"<style>{STYLE}</style></head><body><header><b>Batchyard</b>"
        '<a href="/">Queues</a><a href="/ces">Compute environments</a><a href="/jobs">Jobs</a></header>'
        f"<main>{body}</main><script>{SCRIPT}</script></body></html>"
    )


def tbl(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """Cells are HTML already (escape with e())."""
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def state(s: str | None) -> str:
    return f'<span class="{e(s)}">{e(s)}</span>'


def queues_html(views: list[dict[str, Any]]) -> str:
    rows = [
        [
            f'<a href="/queues/{quote(v["name"])}">{e(v["name"])}</a>',
            e(v["state"]),
            e(v["priority"]),
            *[e(v["jobCounts"][s]) for s in COUNTED],
            f"{v['vcpusInUse']:g} / {v['maxvCpus']:g}",
            ", ".join(e(c) for c in v["computeEnvironments"]),
            f'<span class="blocked">{e(v["blockedReason"])}</span>'
            if v["blockedReason"]
            else '<span class="muted">-</span>',
        ]
        for v in views
    ]
    header = ["Queue", "State", "Priority", *COUNTED, "vCPUs in use / max", "Compute environments", "Blocked"]
    return "<h1>Job queues</h1>" + (
        tbl(header, rows, {2, 3, 4, 5, 6, 7}) if rows else "<p>No job queues.</p>"
    )


def ces_html(views: list[dict[str, Any]]) -> str:
    def n(x: Any) -> str:
        return "-" if x is None else f"{float(x):g}"

    rows = [
        [
            e(v["name"]), e(v["state"]), e(v["status"]), e(v["provider"]), n(v["minvCpus"]), n(v["desiredvCpus"]),
            n(v["vcpusInUse"]), n(v["maxvCpus"]), n(v["nodes"]), ", ".join(e(q) for q in v["jobQueues"]),
            e(v["statusReason"]),
        ]
        for v in views
    ]  # fmt: skip
    header = ["Compute environment", "State", "Status", "Provider", "Min", "Desired", "In use", "Max", "Nodes",
              "Queues", "Reason"]  # fmt: skip
    return "<h1>Compute environments</h1>" + (tbl(header, rows, {4, 5, 6, 7, 8}) if rows else "<p>None.</p>")


def jobs_html(items: list[dict[str, Any]], filters: dict[str, str], now: datetime) -> str:
    options = "".join(
        f"<option{' selected' if filters.get('status') == s else ''}>{s}</option>" for s in ("", *JOB_STATES)
    )
    form = (
        '<form method=get action="/jobs">'
        f'<input name=namespace placeholder="namespace (all)" value="{e(filters.get("namespace"))}">'
        f'<input name=queue placeholder=queue value="{e(filters.get("queue"))}">'
        f"<select name=status>{options}</select>"
        f'<input name=prefix placeholder="name prefix" value="{e(filters.get("prefix"))}">'
        "<button>Filter</button></form>"
    )
    rows = []
    for i in items:
        spec, status, meta = i.get("spec") or {}, i.get("status") or {}, i["metadata"]
        attempts = status.get("attempts") or []
        rows.append(
            [
                e(meta.get("namespace")),
                f'<a href="/jobs/{quote(meta.get("namespace", ""))}/{quote(meta["name"])}">{e(meta["name"])}</a>',
                state(status.get("status") or "SUBMITTED"),
                e(spec.get("jobQueue")),
                e(spec.get("jobDefinition")),
                e(attempts[-1]["attempt"] if attempts else 0),
                e((status.get("arrayProperties") or {}).get("progress")),
                e(status.get("queuePosition")),
                e(estimated_start(status, now)),
                e(status.get("statusReason")),
                e(age(meta.get("creationTimestamp"), now)),
            ]
        )
    header = ["Namespace", "Job", "Status", "Queue", "Definition", "Attempt", "Array progress", "Position",
              "Estimated start", "Reason", "Age"]  # fmt: skip
    return "<h1>Jobs</h1>" + form + (tbl(header, rows, {5, 7}) if rows else "<p>No jobs match.</p>")


def queue_html(view: dict[str, Any], waiting: list[dict[str, Any]], now: datetime) -> str:
    blocked = view["blockedReason"]
    facts = [
        ("State", e(view["state"])),
        ("Priority", e(view["priority"])),
        ("Scheduling policy", e(view["schedulingPolicy"] or "FIFO")),
        ("Compute environments", ", ".join(e(c) for c in view["computeEnvironments"])),
        ("vCPUs in use / max", f"{view['vcpusInUse']:g} / {view['maxvCpus']:g}"),
        ("Jobs", ", ".join(f"{s} {view['jobCounts'][s]}" for s in COUNTED)),
        (
            "Blocked",
            f'<span class="blocked">{e(blocked)}</span>' if blocked else "no: its head job can start",
        ),
    ]
    dl = "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    waiting = sorted(waiting, key=lambda i: (i.get("status") or {}).get("queuePosition", 1 << 30))
    line = jobs_html(waiting, {}, now).split("</form>", 1)[1]
    return f"<h1>Job queue {e(view['name'])}</h1>{dl}<h2>Waiting jobs (RUNNABLE, in queue order)</h2>{line}"


def _estimate(status: dict[str, Any], now: datetime) -> str:
    if not status.get("estimatedStartAt"):
        return ""
    return (
        f"{e(estimated_start(status, now))} ({e(status['estimatedStartAt'])}; an estimate from "
        f"{e(status.get('estimatedStartBasis'))})"
    )


def log_cell(attempt: dict[str, Any]) -> str:
    """Where an attempt's log is: its pod while it runs, kept or deleted once it ended."""
    retained = attempt.get("logRetained")
    if retained is None:
        return "" if attempt.get("stoppedAt") else e(attempt.get("logStreamName"))
    if retained:
        return e(attempt.get("logStreamName")) + " (kept until the job expires)"
    return '<span class="muted">pod deleted when it ended</span>'


def job_html(item: dict[str, Any], now: datetime) -> str:
    spec, status, meta = item.get("spec") or {}, item.get("status") or {}, item["metadata"]
    ap = status.get("arrayProperties") or {}
    facts = [
        ("Status", state(status.get("status") or "SUBMITTED")),
        ("Reason", e(status.get("statusReason"))),
        ("Queue", f'<a href="/queues/{quote(spec.get("jobQueue", ""))}">{e(spec.get("jobQueue"))}</a>'),
        ("Definition", e(spec.get("jobDefinition")) + (f" (revision {e(status['jobDefinitionRevision'])})" if status.get("jobDefinitionRevision") else "")),
        ("Job id", e(status.get("jobId") or meta.get("uid"))),
        ("Queue position", e(status.get("queuePosition"))),
        ("Estimated start", _estimate(status, now)),
        ("Compute environment", e(status.get("computeEnvironment"))),
        ("Created", e(status.get("createdAt") or meta.get("creationTimestamp"))),
        ("Started", e(status.get("startedAt"))),
        ("Stopped", e(status.get("stoppedAt"))),
    ]  # fmt: skip
    if ap.get("size"):
        facts.append(("Array", f"{e(ap['size'])} children: {e(ap.get('progress'))}"))
    deps = spec.get("dependsOn") or []
    if deps:
        facts.append(
            (
                "Depends on",
                ", ".join(
                    e(d.get("jobId") or "") + (f" ({e(d['type'])})" if d.get("type") else "") for d in deps
                ),
            )
        )
    dl = "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts if v) + "</dl>"
    attempts = [
        [e(a.get("attempt")), e(a.get("podName")), e(a.get("nodeName")), e(a.get("computeEnvironment")),
         e(a.get("exitCode")), e(a.get("reason")), e(a.get("statusReason")), e(a.get("startedAt")), e(a.get("stoppedAt")),
         log_cell(a), f"<pre>{e(a['terminationMessage'])}</pre>" if a.get("terminationMessage") else ""]
        for a in status.get("attempts") or []
    ]  # fmt: skip
    header = [
        "Attempt",
        "Pod",
        "Node",
        "Compute environment",
        "Exit code",
        "Reason",
        "Status reason",
        "Started",
        "Stopped",
        "Log",
        "Termination message",
    ]
    body = f"<h1>Job {e(meta.get('namespace'))}/{e(meta['name'])}</h1>{dl}<h2>Attempts</h2>"
    body += tbl(header, attempts, {0, 4}) if attempts else '<p class="muted">No attempt yet.</p>'
    children = (ap.get("children") or {}).get("states") or {}
    if children:
        rows = [[state(s), e(children[s])] for s in JOB_STATES if s in children]
        body += "<h2>Children by state (indexes)</h2>" + tbl(["State", "Indexes"], rows)
    return body


# --- the server ------------------------------------------------------------------------------------


def app(read_for: Callable[[web.Request], Reader]) -> web.Application:
    """The console's routes; `read_for` gives the reader acting for one request's viewer."""

    def respond(request: web.Request, title: str, body: str) -> web.Response:
        if request.headers.get("X-Partial"):
            return web.Response(text=body, content_type="text/html")
        return web.Response(text=page(title, body), content_type="text/html")

    async def guarded(
        request: web.Request, title: str, make: Callable[[Reader], Awaitable[str]]
    ) -> web.Response:
        try:
            return respond(request, title, await make(read_for(request)))
        except CommandError as err:
            return respond(request, title, f"<h1>{e(title)}</h1><p class=err>{e(err)}</p>")

    async def queues(request: web.Request) -> web.Response:
        async def make(get: Reader) -> str:
            qs, cs = await asyncio.gather(get("jobqueues"), get("computeenvironments"))
            return queues_html(queue_views(qs["items"], cs["items"]))

        return await guarded(request, "Job queues", make)

    async def ces(request: web.Request) -> web.Response:
        async def make(get: Reader) -> str:
            cs, qs = await asyncio.gather(get("computeenvironments"), get("jobqueues"))
            return ces_html(ce_views(cs["items"], qs["items"]))

        return await guarded(request, "Compute environments", make)

    async def jobs(request: web.Request) -> web.Response:
        f = {k: request.query.get(k, "").strip() for k in ("namespace", "queue", "status", "prefix")}
        wanted: list[str] = [f["status"]] if f["status"] in JOB_STATES else []

        async def make(get: Reader) -> str:
            selector = field_selector(f["queue"] or None, wanted, None)
            got = await get("batchjobs", namespace=f["namespace"] or None, selector=selector)
            items = select(got["items"], wanted, f["prefix"] or None)
            items.sort(key=lambda i: i["metadata"].get("creationTimestamp", ""), reverse=True)
            return jobs_html(items, f, datetime.now(UTC))

        return await guarded(request, "Jobs", make)

    async def queue(request: web.Request) -> web.Response:
        name = request.match_info["name"]

        async def make(get: Reader) -> str:
            q, cs = await asyncio.gather(get("jobqueues", name), get("computeenvironments"))
            (view,) = queue_views([q], cs["items"])
            selector = field_selector(name, ["RUNNABLE"], None)
            waiting = await get("batchjobs", selector=selector)
            return queue_html(view, waiting["items"], datetime.now(UTC))

        return await guarded(request, f"Job queue {name}", make)

    async def job(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]

        async def make(get: Reader) -> str:
            return job_html(await get("batchjobs", name, ns), datetime.now(UTC))

        return await guarded(request, f"Job {ns}/{name}", make)

    application = web.Application()
    application.router.add_get("/", queues)
    application.router.add_get("/ces", ces)
    application.router.add_get("/jobs", jobs)
    application.router.add_get("/queues/{name}", queue)
    application.router.add_get("/jobs/{namespace}/{name}", job)
    return application


def viewer(kubectl: str, server: str | None, ca: str | None) -> Callable[[web.Request], Reader]:
    """Whose rights a request is read with: the starting user's kubeconfig, or (with --server) the
    bearer token the request carries; never the operator's."""

    def read_for(request: web.Request) -> Reader:
        if not server:
            return kubectl_reader(kubectl)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise web.HTTPUnauthorized(
                text="the console acts with your own token: send Authorization: Bearer <token>"
            )
        return token_reader(server, token.strip(), ca)

    return read_for


def cmd_console(args: argparse.Namespace) -> int:
    print(f"Batchyard console on http://{args.address}:{args.port}/ (read-only; Ctrl-C stops it)", flush=True)
    web.run_app(
        app(viewer(args.kubectl, args.server, args.certificate_authority)),
        host=args.address,
        port=args.port,
        print=None,
    )
    return 0

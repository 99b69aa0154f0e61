"""serve.md and serve.png from `make bench-serve`'s serve.json (bench.serve), torch-free.

    python -m bench.serve.report artifacts/bench/serve.json      # rewrites serve.md and serve.png beside it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from bench.serve.paired import paired_throughput  # noqa: E402
from handoff.artifacts import SERVE_PLOT, SERVE_REPORT  # noqa: E402
from handoff.atomic import atomic_path  # noqa: E402
from handoff.timing import Ratio  # noqa: E402

OURS = ("mlp-serve", "batching on")
PEERS = ("mlserver", "mlserver-adaptive", "kserve")  # the Python peers; Triton is judged on its own
TRITON = "triton"
# gRPC's two load generators (bench.serve.load, bench.serve.grpc_load): the target is judged with the
# one whose CPU per call is near the HTTP client's, where it was measured
GRPC_CLIENTS = {"grpc-h2": "zttp's HTTP/2 client", "grpc": "grpc.aio"}
# (name, target, how it is judged)
TARGETS = [
    ("binary, 64 clients: ≥ 5x the best Python peer's req/s", 5.0),
    ("binary, 64 clients: p99 ≤ 50 ms", 50.0),
    ("JSON, 64 clients: ≥ 3x the best Python peer's req/s", 3.0),
    ("one client, binary: p50 ≤ 0.5 ms", 0.5),
    ("server CPU per request at 64 clients (binary) ≤ 0.3 ms", 0.3),
    ("gRPC, 64 clients: ≥ 0.5x the HTTP binary req/s", 0.5),
]
TRITON_TARGETS = [
    ("HTTP binary, 64 clients: ≥ 3x Triton's req/s", 3.0),
    ("HTTP binary, 64 clients: ≥ 60% of our stack's constant-answer floor", 0.6),
    ("HTTP binary, 64 clients: p99 ≤ 20 ms", 20.0),
    ("hot reload: 0 failed and 0 wrong answers over the swaps, 64 clients", 0),
    ("TLS: ≤ 30% below plain HTTP binary at 64 clients (keep-alive)", 0.3),
]


def point_line(p: dict) -> str:
    """One line per point, for the run's log."""
    head = f"{p['server']:18} {p['setting']:28} {p['encoding']:6} {p['clients']:3} clients: "
    if "refused" in p:
        return head + f"refused ({p['refused'][:80]})"
    return head + (f"{p['req_per_s']:8.0f} req/s  p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  "
                   f"server CPU {p['server_cpu_per_request_ms']:.3f} ms/req  client CPU {p['client_cpu_per_request_ms']:.3f} ms/req  "
                   f"non-200 {p['requests'] - p['ok']}  wrong {p['wrong']}")


def _find(points: list[dict], server: str, setting: str | None, encoding: str, clients: int) -> dict | None:
    for p in points:
        if (p["server"], p["encoding"], p["clients"]) == (server, encoding, clients) and setting in (None, p["setting"]) \
                and "refused" not in p:
            return p
    return None


def _best_peer(points: list[dict], encoding: str, clients: int) -> dict | None:
    found = [p for peer in PEERS if (p := _find(points, peer, None, encoding, clients))]
    return max(found, key=lambda p: p["req_per_s"], default=None)


def _clean(p: dict) -> bool:
    """Every answer of the point a 200 with the fp32 model's class: a target met with errors is not met."""
    return p["ok"] == p["requests"] and p["wrong"] == 0


def targets(points: list[dict]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target; met None when a side was not measured; never met on
    a point of ours that had a bad answer."""
    ours = {(e, c): _find(points, *OURS, e, c) for e in ("binary", "json", *GRPC_CLIENTS) for c in (1, 64)}
    rows = []

    def ratio(encoding: str, needed: float) -> tuple[str, bool | None]:
        mine, peer = ours[(encoding, 64)], _best_peer(points, encoding, 64)
        if not mine or not peer:
            return "not measured", None
        value = mine["req_per_s"] / peer["req_per_s"]
        return f"{value:.1f}x ({mine['req_per_s']:.0f} vs {peer['server']} {peer['req_per_s']:.0f} req/s)", value >= needed

    b64, b1 = ours[("binary", 64)], ours[("binary", 1)]
    g64 = next((p for e in GRPC_CLIENTS if (p := ours[(e, 64)])), None)
    rows.append((TARGETS[0][0], *ratio("binary", TARGETS[0][1])))
    rows.append((TARGETS[1][0], *((f"{b64['p99_ms']:.1f} ms", b64["p99_ms"] <= 50) if b64 else ("not measured", None))))
    rows.append((TARGETS[2][0], *ratio("json", TARGETS[2][1])))
    rows.append((TARGETS[3][0], *((f"{b1['p50_ms']:.2f} ms", b1["p50_ms"] <= 0.5) if b1 else ("not measured", None))))
    rows.append((TARGETS[4][0], *((f"{b64['server_cpu_per_request_ms']:.3f} ms", b64["server_cpu_per_request_ms"] <= 0.3)
                                  if b64 else ("not measured", None))))
    rows.append((TARGETS[5][0], *((_grpc_ratio(g64, b64, ours[("grpc", 64)]), g64["req_per_s"] >= TARGETS[5][1] * b64["req_per_s"])
                                  if g64 and b64 else ("not measured", None))))
    sources = [ours[("binary", 64)], ours[("binary", 64)], ours[("json", 64)], ours[("binary", 1)], ours[("binary", 64)], g64]
    return [(name, measured + ("" if p is None or _clean(p) else " (with bad answers)"), met and (p is None or _clean(p)))
            for (name, measured, met), p in zip(rows, sources)]


def _grpc_ratio(judged: dict, http: dict, aio: dict | None) -> str:
    text = (f"{judged['req_per_s']:.0f} vs {http['req_per_s']:.0f} req/s ({judged['req_per_s'] / http['req_per_s']:.2f}x, "
            f"{GRPC_CLIENTS[judged['encoding']]})")
    if aio is not None and aio is not judged:
        text += f"; from grpc.aio {aio['req_per_s']:.0f} req/s ({aio['req_per_s'] / http['req_per_s']:.2f}x)"
    return text


def triton_targets(result: dict) -> list[tuple[str, str, bool | None]]:
    """Issue 27's targets: Triton, the stack's floor, p99, hot reload and TLS, as (target, measured, met)."""
    points, swaps = result["points"], result.get("hot_reload")
    b64, triton = _find(points, *OURS, "binary", 64), _find(points, TRITON, None, "binary", 64)
    floor, tls = _find(points, "floor", None, "binary", 64), _find(points, "mlp-serve", "TLS", "binary", 64)
    missing = ("not measured", None)
    rows = [
        (f"{b64['req_per_s'] / triton['req_per_s']:.1f}x ({b64['req_per_s']:.0f} vs {triton['req_per_s']:.0f} req/s)",
         b64["req_per_s"] >= 3 * triton["req_per_s"] and _clean(b64)) if b64 and triton else missing,
        _floor_row(result, b64, floor) if b64 and floor or result.get("floor_rounds") else missing,
        (f"{b64['p99_ms']:.1f} ms", b64["p99_ms"] <= 20 and _clean(b64)) if b64 else missing,
        (f"{swaps['swaps']} swaps: {swaps['requests'] - swaps['ok']} failed, {swaps['wrong']} wrong of {swaps['requests']}; "
         f"p99 {swaps['p99_ms']:.1f} ms during them", swaps["requests"] == swaps["ok"] and swaps["wrong"] == 0 and swaps["swaps"] >= 10)
        if swaps else missing,
        _tls_row(result, tls, b64) if tls and b64 or result.get("tls_rounds") else missing,
    ]
    return [(name, measured, met) for (name, _), (measured, met) in zip(TRITON_TARGETS, rows)]


def _floor_row(result: dict, b64: dict | None, floor: dict | None) -> tuple[str, bool]:
    """The floor target: from the alternating rounds (bench.serve.paired) where the run has them, each
    side's best round; else from the two single windows of the table."""
    rounds = result.get("floor_rounds")
    if not rounds:
        return (f"{b64['req_per_s'] / floor['req_per_s']:.0%} ({b64['req_per_s']:.0f} vs {floor['req_per_s']:.0f} req/s)",
                b64["req_per_s"] >= 0.6 * floor["req_per_s"] and _clean(b64))
    ratio, how, clean = _paired(rounds, "ours", "floor")
    text = f"{ratio.value:.0%} ({how}; round by round {ratio.low:.0%}-{ratio.high:.0%})"
    if "app" in rounds["windows"]:  # the ceiling: mlp-serve's HTTP path with a constant model (bench.serve.stack_floor --app)
        ceiling = paired_throughput(rounds, "app", "floor")
        text += (f"; mlp-serve's HTTP path with a constant model in place of batcher and model, in the same rounds: "
                 f"{ceiling.value:.0%} ({ceiling.low:.0%}-{ceiling.high:.0%}), the most any model behind it can reach")
    if all("loop_cpu_s" in w for ws in rounds["windows"].values() for w in ws):
        text += "; " + _loops(rounds)
    return text, ratio.value >= 0.6 and clean


def _loops(rounds: dict) -> str:
    """Each side's event loop in its best round: its share of the window on the CPU and its CPU a
    request; for mlp-serve also its other threads' (batcher and ONNX Runtime). A loop under 100% waited."""
    names = {"ours": "mlp-serve", "app": "its HTTP path", "floor": "the floor"}
    parts = []
    for side, windows in rounds["windows"].items():
        best = max(windows, key=lambda w: w["req_per_s"])
        per_request_us = 1e6 * best["loop_cpu_s"] / max(best["requests"], 1)
        part = f"{names.get(side, side)} {best['loop_cpu_s'] / best['seconds']:.0%} ({per_request_us:.0f} µs a request"
        if side == "ours":
            part += f", its other threads {1e6 * (best['server_cpu_s'] - best['loop_cpu_s']) / max(best['requests'], 1):.0f} µs more"
        parts.append(part + ")")
    return "event loop on the CPU in each side's best round: " + ", ".join(parts)


def _tls_row(result: dict, tls: dict | None, b64: dict | None) -> tuple[str, bool]:
    """The TLS target: from the alternating rounds of mlp-serve over TLS and in plain HTTP where the run
    has them, each side's best round; else from the table's two single windows."""
    rounds = result.get("tls_rounds")
    if not rounds:
        return (f"{1 - tls['req_per_s'] / b64['req_per_s']:.0%} below ({tls['req_per_s']:.0f} vs {b64['req_per_s']:.0f} req/s)",
                tls["req_per_s"] >= 0.7 * b64["req_per_s"] and _clean(tls))
    ratio, how, clean = _paired(rounds, "tls", "plain")
    return f"{1 - ratio.value:.0%} below ({how}; round by round {ratio.low:.2f}x-{ratio.high:.2f}x of plain)", ratio.value >= 0.7 and clean


def _paired(rounds: dict, top: str, bottom: str) -> tuple[Ratio, str, bool]:
    """`top`'s best alternating round over `bottom`'s (bench.serve.paired), the words saying how it was
    timed, and whether every window of `top` was clean."""
    ratio = paired_throughput(rounds, top, bottom)
    best = {side: max(w["req_per_s"] for w in rounds["windows"][side]) for side in (top, bottom)}
    how = f"{best[top]:.0f} vs {best[bottom]:.0f} req/s, each side's best of {ratio.rounds} alternating {rounds['seconds']:g}-second rounds"
    return ratio, how, all(_clean(w) for w in rounds["windows"][top])


def _hot_reload(result: dict) -> list[str]:
    swaps = result.get("hot_reload")
    if not swaps:
        return []
    loads = swaps["load_s"]
    return ["", "## Hot reload (bench/serve/hot_reload.py)", "",
            f"- mlp-serve --repository, 64 clients (HTTP binary, batch 1, no version named) for {swaps['seconds']:.1f} s while "
            f"{swaps['swaps']} new versions were published and loaded (POST /v2/repository/models/<m>/load): "
            f"{swaps['ok']} of {swaps['requests']} answered 200, {swaps['wrong']} wrong classes, statuses {swaps['statuses']}; "
            f"{swaps['req_per_s']:.0f} req/s, p50 {swaps['p50_ms']:.2f} ms, p99 {swaps['p99_ms']:.1f} ms across the swaps.",
            f"- Each load (copy in, verify the sha256s, open the sessions, warm up, swap, retire the old version): "
            f"{min(loads):.2f}–{max(loads):.2f} s, median {sorted(loads)[len(loads) // 2]:.2f} s."]


def _triton(result: dict) -> list[str]:
    """What the real Triton ran, and what its Python-backend hop costs, from its own statistics."""
    points, stats = result["points"], result.get("peer_statistics", {}).get(TRITON)
    if not _find(points, TRITON, None, "binary", 1):
        return []
    lines = ["", "## Triton Inference Server", "",
             "- The `tritonserver` binary of the nvidia-pytriton wheel (its C++ HTTP and gRPC front-ends and dynamic batcher, "
             "100 µs queue delay), the model in its **Python backend** through PyTriton, ONNX Runtime inside the bound function "
             "(bench/serve/peers/triton_onnx.py). Triton's ONNX Runtime backend is in no wheel (the wheel's backends/ holds "
             "python/ alone; it ships in NVIDIA's containers), so this is not Triton's native ONNX path."]
    mt = result["model_time"]
    if stats:
        batches = {b["batch_size"]: b for b in stats["model_stats"][0].get("batch_stats", [])}
        one = batches.get(1)
        if one and one["compute_infer"]["count"]:
            per_call_us = one["compute_infer"]["ns"] / one["compute_infer"]["count"] / 1e3
            lines.append(f"- The Python-backend hop: Triton's compute_infer at batch 1 averaged {per_call_us:.0f} µs a call "
                         f"(its own statistics, over the whole run), against {mt['batch_1_us']:.0f} µs for the same model in one "
                         f"ONNX Runtime call here: about {per_call_us - mt['batch_1_us']:.0f} µs a batch go to the hop (shared "
                         "memory to the stub process, PyTriton's proxy, ZeroMQ to the bound function and back).")
    return lines


def _grpc_distance(points: list[dict]) -> list[str]:
    """How far gRPC is from HTTP with each gRPC client, beside the same gRPC stack answering a constant
    (no parsing, no model) under the same client."""
    http, lines = _find(points, *OURS, "binary", 64), []
    for encoding, client in GRPC_CLIENTS.items():
        grpc, floor = _find(points, *OURS, encoding, 64), _find(points, "floor", None, encoding, 64)
        if not (grpc and http and floor):
            continue
        lines += ["", f"gRPC at 64 clients, loaded by {client} ({encoding}): {grpc['req_per_s'] / http['req_per_s']:.2f}x of HTTP "
                  f"binary. The same gRPC stack answering a constant reached {floor['req_per_s']:.0f} req/s, "
                  f"{floor['req_per_s'] / http['req_per_s']:.2f}x of mlp-serve's HTTP binary figure, at "
                  f"{floor['server_cpu_per_request_ms']:.3f} ms server and {floor['client_cpu_per_request_ms']:.3f} ms client CPU per call "
                  f"(HTTP binary: {http['server_cpu_per_request_ms']:.3f} and {http['client_cpu_per_request_ms']:.3f} ms, model and "
                  f"batching included); mlp-serve's gRPC reached {grpc['req_per_s'] / floor['req_per_s']:.0%} of it. This load "
                  f"generator spends {grpc['client_cpu_per_request_ms'] / max(http['client_cpu_per_request_ms'], 1e-9):.1f}x the HTTP "
                  "client's CPU a call on the same cores."]
    return lines


def _grpc_transports(points: list[dict]) -> list[str]:
    """The gRPC transport trial: uvicorn's HTTP/2 (the default) against grpcio's server, side by side in this run."""
    lines = []
    for encoding, client in GRPC_CLIENTS.items():
        for clients in (1, 8, 64):
            h2, grpcio = _find(points, *OURS, encoding, clients), _find(points, "mlp-serve", "gRPC on grpcio", encoding, clients)
            if grpcio and h2:
                lines.append(f"- {client}, {_clients(clients)}: grpcio {grpcio['req_per_s']:.0f} req/s "
                             f"({grpcio['server_cpu_per_request_ms']:.3f} ms server CPU a call) vs uvicorn HTTP/2 {h2['req_per_s']:.0f} "
                             f"({h2['server_cpu_per_request_ms']:.3f} ms): {h2['req_per_s'] / grpcio['req_per_s']:.2f}x")
    return ["", "gRPC transports, side by side (mlp-serve --grpc-transport grpcio | uvicorn):", *lines] if lines else []


def _cell(p: dict | None) -> str:
    if p is None:
        return "–"
    if "refused" in p:
        return "refused"
    bad = p["requests"] - p["ok"] + (p["wrong"] if p["server"] != "floor" else 0)  # the floor's answers are constants
    return f"{p['req_per_s']:.0f} ({p['p50_ms']:.2f} / {p['p99_ms']:.1f})" + (f", **{bad} bad**" if bad else "")


def _series(points: list[dict]) -> list[tuple[str, str, str]]:
    seen = []
    for p in points:
        key = (p["server"], p["setting"], p["encoding"])
        if key not in seen:
            seen.append(key)
    return seen


def render(result: dict) -> str:
    points, m, config = result["points"], result["machine"], result["config"]
    clients = sorted({p["clients"] for p in points})
    lines = [
        "# Serving: mlp-serve beside Triton, MLServer and KServe (`make bench-serve`)", "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores; flags {', '.join(m['flags'])}; without {', '.join(m['absent']) or '–'}. "
        "Load generator and servers share these "
        "cores (loopback). **Load:** closed loop, batch 1 per request, real held-out inputs, "
        f"{config['seconds']:g} s per point after {config['warmup_s']:g} s of warm-up; every answer's class checked "
        "against the fp32 model's (\"bad\" = non-200 or another class).", "",
        "## Targets", "", "| target | measured | met |", "|---|---|---|",
        *[f"| {name} | {measured} | {'yes' if met else 'not measured' if met is None else '**no**'} |"
          for name, measured, met in [*triton_targets(result), *targets(points)]], *_grpc_distance(points), *_grpc_transports(points), "",
        "## Requests/s (p50 / p99 ms) by concurrent clients", "",
        "| server | setting | encoding | " + " | ".join(_clients(c) for c in clients) + " |",
        "|---|---|---|" + "---|" * len(clients),
    ]
    for server, setting, encoding in _series(points):
        row = [_cell(_find_any(points, server, setting, encoding, c)) for c in clients]
        lines.append(f"| {server} | {setting} | {encoding} | " + " | ".join(row) + " |")
    lines += ["", "## CPU per request, ms (server process tree / load generator)", "",
              "| server | setting | encoding | " + " | ".join(_clients(c) for c in clients) + " |",
              "|---|---|---|" + "---|" * len(clients)]
    for server, setting, encoding in _series(points):
        cells = []
        for c in clients:
            p = _find_any(points, server, setting, encoding, c)
            cells.append("–" if p is None or "refused" in p else
                         f"{p['server_cpu_per_request_ms']:.3f} / {p['client_cpu_per_request_ms']:.3f}")
        lines.append(f"| {server} | {setting} | {encoding} | " + " | ".join(cells) + " |")
    lines += _context(result)
    return "\n".join(lines) + "\n"


def _clients(count: int) -> str:
    return f"{count} client" + ("s" if count != 1 else "")


def _find_any(points: list[dict], server: str, setting: str, encoding: str, clients: int) -> dict | None:
    return next((p for p in points if (p["server"], p["setting"], p["encoding"], p["clients"]) == (server, setting, encoding, clients)), None)


def _context(result: dict) -> list[str]:
    mt, points = result["model_time"], result["points"]
    refusals = {(p["server"], p["encoding"]): p["refused"] for p in points if "refused" in p}
    lines = ["", "## The distance to the limit", "",
             f"- The model alone (the served ONNX Runtime session, fastest call): batch 1 {mt['batch_1_us']:.0f} µs; "
             f"batch 64 {mt['batch_64_us']:.0f} µs, {mt['batch_64_us_per_row']:.1f} µs a row.",
             "- `floor` is the same HTTP and gRPC stacks answering a constant (bench/serve/stack_floor.py): what any Python "
             "server on them pays before parsing a byte or running the model.",
             "- The peers run with their own defaults, as a new user would start them (KServe logs four lines per request, "
             "MLServer one), and an ONNX Runtime session with default options (bench/serve/peers/).",
             "- Load generators (bench/serve/load.py: raw HTTP/1.1 on uvloop, and grpc.aio for gRPC; bench/serve/grpc_load.py: "
             "zttp's HTTP/2 client for grpc-h2, the same gRPC calls): their CPU per request is the "
             "second number of the CPU table. Cores kept busy at 64 clients (server + generator, of "
             f"{result['machine']['cores']}):"]
    for encoding in ("binary", "json", "grpc", "grpc-h2"):
        p = _find(points, *OURS, encoding, 64)
        floor = _find(points, "floor", None, encoding, 64)
        if p:
            lines.append(f"  - mlp-serve {encoding}: {p['server_cpu_s'] / p['seconds']:.2f} + {p['client_cpu_s'] / p['seconds']:.2f}"
                         + (f"; {p['req_per_s'] / floor['req_per_s']:.0%} of the floor's req/s" if floor else ""))
    if refusals:
        lines += ["", "## Encodings refused", ""]
        lines += [f"- {server}, {encoding}: {message}" for (server, encoding), message in refusals.items()]
    lines += _triton(result) + _hot_reload(result)
    lines += _robustness(result.get("robustness"))
    lines += ["", "## Versions", ""]
    lines += [f"- {name}: " + ", ".join(f"{k} {v}" for k, v in v.items()) for name, v in result["versions"].items()]
    return lines


def _robustness(r: dict | None) -> list[str]:
    if not r:
        return []
    lines = ["", "## Robustness (bench/serve/robustness.py)", ""]
    for key in ("overload", "overload_small_queue"):
        o = r[key]
        lines.append(f"- {o['clients']} clients for {o['seconds']:g} s, queue bound {o['queue_size']}: {o['requests']} answers, "
                     f"statuses {o['statuses']}, wrong classes {o['wrong']}, p99 of the 200s {o['p99_ms']:.1f} ms: "
                     + (("**nothing but right answers" + (" and clean 503s**" if "503" in o["statuses"] else "**"))
                        if o["clean"] else "**something else came back**"))
    s = r["stalled"]
    lines.append(f"- {s['stalled_clients']} connections that sent half a request and stalled: {s['clients']} other clients "
                 f"p99 {s['beside_stalled']['p99_ms']:.2f} ms beside them vs {s['alone']['p99_ms']:.2f} ms alone, "
                 f"{s['beside_stalled']['req_per_s']:.0f} vs {s['alone']['req_per_s']:.0f} req/s; "
                 f"{s['still_open_unanswered']} stalled connections still open, unanswered.")
    d = r["drain"]
    lines.append(f"- SIGTERM with {d['in_flight']} requests waiting in the queue (behind a one-minute queue delay): "
                 f"{d['answered_200']} answered 200 (statuses {d['statuses']}) {d['seconds_from_sigterm_to_all_answered']:.2f} s "
                 f"after the signal, exit code {d['exit_code']}.")
    m = r["memory"]
    lines.append("- RSS: " + ", ".join(f"{v['rss_mib']:.1f} MiB after {v['requests']} requests" for v in m["checkpoints"].values())
                 + f" (growth {m['growth_mib']:+.1f} MiB).")
    return lines


def plot(result: dict, out: Path) -> None:
    points = result["points"]
    fig, ax = plt.subplots(figsize=(9, 5))
    palette, drawn = plt.get_cmap("tab20").colors, 0
    for server, setting, encoding in _series(points):
        measured = [p for p in points if (p["server"], p["setting"], p["encoding"]) == (server, setting, encoding)
                    and "refused" not in p]
        if len(measured) > 1:  # 20 colours, then the same colours with another marker
            ax.plot([p["clients"] for p in measured], [p["req_per_s"] for p in measured], marker="os^"[drawn // 20 % 3],
                    color=palette[drawn % 20], label=f"{server} ({setting}), {encoding}", linestyle="-" if server == "mlp-serve" else "--")
            drawn += 1
    ax.set(xscale="log", yscale="log", xlabel="concurrent clients (batch 1 each)", ylabel="requests/s",
           title=f"Serving on {result['machine']['cpu']} ({result['machine']['cores']} cores)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: 25 series hide the lines
    ax.grid(True, which="both", alpha=0.3)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write(serve_json: Path) -> None:
    """serve.md and serve.png for the serve.json at `serve_json` (ARTIFACTS/bench/serve.json)."""
    result = json.loads(Path(serve_json).read_text())
    artifacts = Path(serve_json).parent.parent
    with atomic_path(artifacts / SERVE_REPORT) as tmp:
        tmp.write_text(render(result))
    plot(result, artifacts / SERVE_PLOT)
    print(f"{artifacts / SERVE_REPORT}, {artifacts / SERVE_PLOT}")


if __name__ == "__main__":
    write(Path(sys.argv[1]))

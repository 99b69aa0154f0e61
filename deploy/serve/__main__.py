"""mlp-serve: a bundle behind the Open Inference Protocol (KServe V2 / Triton), HTTP/REST and gRPC,
with dynamic batching; torch-free.

Usage:
    mlp-serve [--bundle DIR | --repository DIR] [--variant NAME] [--host H] [--port 8000] [--grpc-port 8001]
              [--max-batch N] [--max-queue-delay-us US] [--max-queue-size N] [--no-dynamic-batching]
              [--max-request-bytes B] [--body-timeout-s S] [--max-connections N] [--workers N]
              [--tls-cert PEM --tls-key PEM] [--restricted-api GROUPS --restricted-header KEY=VALUE]
    make serve HOST=127.0.0.1 PORT=8000 GRPC_PORT=8001        # serves $(ARTIFACTS)/deploy until Ctrl-C
    make serve REPOSITORY=models                               # every model and version under models/

--repository DIR serves every bundle under DIR/<model>/<version>/ (Triton's layout; `make deploy
REPOSITORY=DIR` publishes the bundle there as the next version), each version with its own batcher,
statistics and metrics labels, the versions each model's config.pbtxt policy picks (the latest by
default), and Triton's repository extension: POST /v2/repository/models/<m>/load re-reads the model's
folder and moves traffic to the versions it now picks once they are verified and warm, losing no
request (deploy.serve.repository). --tls-cert/--tls-key serve HTTPS and gRPC over TLS on the same
ports; --restricted-api guards groups of routes and methods with a header (deploy.serve.access).

HTTP (deploy.serve.http_app) and gRPC (deploy.serve.grpc_service, --grpc-port 0 turns it off) share one dynamic
batcher (deploy.serve.batcher): one inference thread runs the queued requests together, up to --max-batch
rows per ONNX Runtime call, after waiting at most --max-queue-delay-us for them; beyond
--max-queue-size queued requests a new one gets 503 / UNAVAILABLE. The defaults of the three are the
bundle's (`make deploy` writes them; its Triton config.pbtxt has the same). The sessions use the
options `make tune` chose per batch size with spinning off (SERVING_ORT_OPTIONS: why). SIGTERM or
Ctrl-C stops accepting, runs the queue at once, answers every request already in, and exits 0.
--workers N runs N such processes on the same ports (SO_REUSEPORT; the kernel spreads connections),
each with its own sessions and batcher: docs/deploy.md says when that pays and when Triton or KServe
is the better tool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import socket
import sys
from pathlib import Path

import uvicorn

try:  # uvloop: libuv's event loop, the fast one; it does not exist on Windows, where asyncio's runs
    from uvloop import run as run_loop
except ImportError:  # pragma: no cover - Windows only
    from asyncio import run as run_loop

from deploy.batch_policy import BatchPolicy
from deploy.bundle import load_bundle, rebuild_hint
from deploy.errors import DeployError, ExitCode
from deploy.serve.access import Restriction
from deploy.serve.connections import bounded_protocol
from deploy.serve.grpc_service import InferenceService, grpc_server
from deploy.serve.http_app import HttpApp
from deploy.serve.metrics import Metrics
from deploy.serve.models import SERVER_NAME, ServedModels
from deploy.serve.pages import PageFile, load_pages
from deploy.serve.protocol import ProtocolError
from deploy.serve.repository import Repository, warm_up
from deploy.serve.service import ModelService, ServingLimits
from deploy.serve.workers import run_workers
from handoff.errors import PipelineError
from handoff.manifest import read_manifest

SERVER_VERSION = importlib.metadata.version("mnist-pipeline")  # the console script exists only when installed
DEFAULT_MAX_REQUEST_BYTES = 64 << 20  # 64 MiB: a max batch of MNIST in binary is 25.7 MB, in JSON about 2x that
# `make tune` measures one session in a loop, where spinning threads win; a server waits on sockets
# between batches, and spinning threads burned most of a core doing nothing (docs/deploy.md).
SERVING_ORT_OPTIONS = {"allow_spinning": False}
DRAIN_S = 30  # longest wait for in-flight requests after SIGTERM
MAX_CONNECTIONS = 2048  # --max-connections' default
log = logging.getLogger(SERVER_NAME)


class _Server(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT handled in the event loop: it drains, then returns, so the
    process exits 0 (uvicorn's own handler re-raises the signal after draining, which kills it)."""

    def __init__(self, config: uvicorn.Config, on_exit) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self, sig: int) -> None:
        log.info("%s: draining in-flight requests", signal.Signals(sig).name)
        self.handle_exit(sig, None)  # uvicorn's own: a second Ctrl-C forces the exit
        self._on_exit()


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 literal needs brackets


class Server:
    """What one server process serves: the loaded model versions, their repository (--repository) or
    lone bundle (--bundle), the shared metrics, and the two protocols' front-ends over them."""

    def __init__(self, args: argparse.Namespace, server_version: str) -> None:
        self.args, self.metrics, self.models = args, Metrics(), ServedModels(server_version)
        self.restriction = Restriction.parse(args.restricted_api, args.restricted_header)
        self.repository = Repository(Path(args.repository), self.models, self.open_version) if args.repository else None
        self.pages: dict[str, PageFile] = {}

    def open_version(self, path: Path, name: str | None = None, version: str | None = None) -> ModelService:
        """A verified bundle as a service (not started), with its own limits."""
        bundle = load_bundle(path, self.args.variant, SERVING_ORT_OPTIONS)
        service = ModelService(bundle, limits_from(self.args, path), self.metrics, name, version)
        log.info("%s version %s: bundle %s (max batch %d, queue delay %d µs, queue size %d)", service.name, service.version, bundle.summary(),
                 service.limits.max_batch, service.limits.policy.max_queue_delay_us, service.limits.policy.max_queue_size)
        return service

    def load_bundle(self) -> None:
        """--bundle: its one model, and its page when `make web` built one."""
        service = self.open_version(Path(self.args.bundle))
        warm_up(service)
        service.start()
        self.models.swap(service.name, {service.version: service})
        self.pages = load_pages(Path(self.args.bundle))

    def tls(self) -> tuple[bytes, bytes] | None:
        args = self.args
        return (Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes()) if args.tls_cert else None


async def serve(server: Server) -> None:
    """Serve HTTP (and gRPC, and the bundle's page) until SIGTERM/SIGINT, then drain both and stop the batchers."""
    args = server.args
    if server.repository is not None:
        await server.repository.load_all()
    servicer = InferenceService(server.models, server.metrics, server.repository, server.restriction)
    grpc = h2 = None
    if args.grpc_port and args.grpc_transport == "grpcio":
        grpc = grpc_server(servicer, grpc_address(args.host, args.grpc_port), args.reuse_port, args.max_request_bytes,
                           server.tls(), args.max_connections)
    elif args.grpc_port:
        h2 = grpc_over_uvicorn(servicer, args)
    stopping: list[asyncio.Future] = []

    def on_exit() -> None:
        for service in server.models:
            service.drain()  # queued requests run now, not after the queue delay
        if grpc is not None and not stopping:
            stopping.append(asyncio.ensure_future(grpc.stop(DRAIN_S)))
        if h2 is not None:
            h2[0].should_exit = True

    app = HttpApp(server.models, server.metrics, args.max_request_bytes, args.body_timeout_s, server.pages,
                  server.repository, server.restriction)
    # proxy_headers off: uvicorn's default wraps every request in a middleware that reads X-Forwarded-*
    # (a task step per request); behind a proxy, the proxy logs the client.
    config = uvicorn.Config(app, loop="none", http=bounded_protocol(args.max_connections), lifespan="off", access_log=False,
                            proxy_headers=False, log_level="warning", timeout_graceful_shutdown=DRAIN_S, backlog=4096,
                            ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
    sock = listening_socket(args.host, args.port, args.reuse_port)
    watcher = asyncio.ensure_future(app.bodies.watch())
    scheme = "https" if args.tls_cert else "http"
    try:
        if grpc is not None:
            await grpc.start()
        log.info("serving %s://%s:%d%s", scheme, args.host, args.port,
                 f" and gRPC{' (TLS)' * bool(args.tls_cert)} on {args.host}:{args.grpc_port} ({args.grpc_transport})" if args.grpc_port else "")
        if server.repository is None:
            log.info("the browser page: %s", f"{scheme}://{args.host}:{args.port}/" if server.pages else "none in this bundle (`make web` builds one)")
        if h2 is not None:
            stopping.append(asyncio.ensure_future(h2[0].serve(sockets=[h2[1]])))
        await _Server(config, on_exit).serve(sockets=[sock])
        on_exit()
        await asyncio.gather(*stopping)
    finally:
        watcher.cancel()
        for service in server.models:
            service.stop()  # every queued request has its answer before the thread ends
    log.info("stopped")


class _QuietServer(uvicorn.Server):
    """A second uvicorn server in the process (gRPC over HTTP/2): the HTTP side's _Server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def grpc_over_uvicorn(servicer: InferenceService, args: argparse.Namespace) -> tuple[uvicorn.Server, socket.socket]:
    """--grpc-transport uvicorn: gRPC's wire protocol over uvicorn's HTTP/2 (deploy.serve.grpc_h2) on
    the gRPC port, in this event loop: no grpcio server, the same servicer and batchers."""
    from deploy.serve.grpc_h2 import GrpcH2App, GrpcH2Protocol  # zttp: only this transport needs it

    config = uvicorn.Config(GrpcH2App(servicer, max_message_bytes=args.max_request_bytes), http=GrpcH2Protocol, loop="none",
                            lifespan="off", access_log=False, proxy_headers=False, log_level="warning", timeout_graceful_shutdown=DRAIN_S,
                            backlog=4096, timeout_keep_alive=300,  # uvicorn's 5 s would close idle gRPC channels
                            limit_concurrency=args.max_connections, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
    return _QuietServer(config), listening_socket(args.host, args.grpc_port, args.reuse_port)


def batching_flags(args: argparse.Namespace) -> dict[str, int | None]:
    return {"max_batch": args.max_batch, "max_queue_delay_us": args.max_queue_delay_us, "max_queue_size": args.max_queue_size}


def limits_from(args: argparse.Namespace, bundle_path: Path) -> ServingLimits:
    """The command line's limits, the bundle's where it gives none (deploy.batch_policy's for a bundle
    that predates batching)."""
    recorded = read_manifest(bundle_path, rebuild_hint(bundle_path))["config"]["deploy"]
    return ServingLimits(BatchPolicy.resolve(batching_flags(args), recorded), args.max_request_bytes, args.dynamic_batching)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=SERVER_NAME, description=__doc__.strip().splitlines()[0])
    add = parser.add_argument
    add("--bundle", default="artifacts/deploy", help="deploy bundle folder (default: %(default)s)")
    add("--repository", default=None, help="serve every bundle under DIR/<model>/<version>/ instead (Triton's layout)")
    add("--variant", default=None, help="model variant in the bundle, e.g. fp32 or int8 (default: the bundle's default_variant)")
    add("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 for all)")
    add("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    add("--grpc-port", type=int, default=8001, help="gRPC port, 0 for none (default: %(default)s, Triton's)")
    add("--max-batch", type=int, default=None, help="rows per request beyond which it is refused with 413, and per "
                                                    "ONNX Runtime call (default: the bundle's)")
    add("--max-queue-delay-us", type=int, default=None, help="longest wait to fill a batch, µs (default: the bundle's)")
    add("--max-queue-size", type=int, default=None, help="queued requests beyond which new ones get 503 (default: the bundle's)")
    add("--dynamic-batching", action=argparse.BooleanOptionalAction, default=True,
        help="run queued requests together (default: on; off runs each request alone)")
    add("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, help="(default: %(default)s)")
    add("--body-timeout-s", type=float, default=15.0,
        help="a request whose body has not all arrived this long after it began gets 408 and is closed (default: %(default)s)")
    add("--grpc-transport", choices=("uvicorn", "grpcio"), default="uvicorn",
        help="gRPC on uvicorn's HTTP/2 beside the HTTP side, or on grpcio's server (default: %(default)s, "
             "2.2x grpcio's calls/s at 64 clients: docs/deploy.md)")
    add("--max-connections", type=int, default=MAX_CONNECTIONS, help="open HTTP connections beyond which a new one gets 503 and is "
                                                           "closed, and gRPC calls at once (default: %(default)s)")
    add("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS and gRPC over TLS (with --tls-key)")
    add("--tls-key", default=None, help="PEM private key of --tls-cert")
    add("--restricted-api", default=None, help="API groups that need --restricted-header, comma-separated: "
                                               "health, metadata, inference, repository, statistics, metrics")
    add("--restricted-header", default=None, help="KEY=VALUE: the header (gRPC: metadata) a restricted call must carry")
    add("--workers", type=int, default=1, help="server processes sharing the ports (default: %(default)s)")
    add("--reuse-port", action="store_true", help="bind with SO_REUSEPORT (what each of --workers N does)")
    args = parser.parse_args(argv)
    try:
        BatchPolicy.resolve(batching_flags(args))  # the limits' one validation, before anything is loaded
    except PipelineError as err:
        parser.error(str(err))
    if args.max_request_bytes < 1 or args.workers < 1 or args.max_connections < 1 or args.body_timeout_s <= 0:
        parser.error("--max-request-bytes, --max-connections and --workers must be at least 1, --body-timeout-s above 0")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        Restriction.parse(args.restricted_api, args.restricted_header)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.workers > 1:
        return run_workers([sys.executable, "-m", "deploy.serve", *argv, "--workers", "1", "--reuse-port"], args.workers)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    server = Server(args, SERVER_VERSION)
    try:
        if server.repository is None:
            server.load_bundle()
        run_loop(serve(server))
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.code)
    except ProtocolError as err:  # a repository model that failed to load at start-up (Triton exits too)
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.BAD_MODEL)
    except OSError as err:  # a port in use, an address not of this machine, an unreadable certificate
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``sekisho console``: the officer's dashboard (the static files of console/) over HTTP or HTTPS.

The server only hands out files. The page itself talks to the broker (MQTT over WebSockets,
``--broker-ws``) and signs commands in the browser with the officer's own key (WebCrypto); this
process holds no key, opens no broker connection and reads no store, so whoever reaches it
learns the site's layout and nothing else, and can make no command through it.

What it serves: the files under console/ as they were at start (a fixed table; any other path
is 404, never a directory listing, never a file outside console/), and ``config.json``, made
once at start from the site config: the site id, the broker's WebSocket URL, this node's
doors, desks and areas, and the page's default language. Each answer carries headers that keep
the page to itself (a Content-Security-Policy allowing scripts only from this server, no
framing, no sniffing) and ``Cache-Control: no-cache``, so a new release is picked up at the next
load.

By default it listens on 127.0.0.1 only: a page loaded from ``http://localhost`` is a secure
context, where the browser offers WebCrypto; from another machine the page needs HTTPS
(``--tls-cert``/``--tls-key``), or the browser refuses to sign and the page stays read-only.
A port already in use or a certificate that does not load is one line and an exit status
(``Unavailable``, ``SekishoError``), never a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import Config
from .errors import SekishoError, Unavailable, UsageError
from .topics import Topics

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
"""The page's files, beside daemon/ in the source tree."""
DEFAULT_PORT = 8443
LANGUAGES = ("auto", "ja", "en")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".json": "application/json", ".svg": "image/svg+xml", ".md": "text/plain", ".txt": "text/plain"}
SKIPPED = {".sh"}
"""Files of console/ that are tools, not part of the page (console/vendor/update.sh)."""
HANDSHAKE_AND_REQUEST_S = 10.0
"""How long a connection may take over its TLS handshake and each read of its request."""


@dataclass(frozen=True)
class Page:
    """What the server answers: path to (content type, bytes)."""

    files: Mapping[str, tuple[str, bytes]]

    @property
    def weight(self) -> int:
        return sum(len(body) for _, body in self.files.values())


def site_layout(cfg: Config, broker_ws: str | None, lang: str) -> dict[str, Any]:
    """``config.json``: what the page needs to know before the bus tells it the rest."""
    node = cfg.site.node
    return {
        "site": cfg.site.id,
        "base": Topics(cfg.site.id).base,
        "broker": broker_ws,
        "lang": lang,
        "timezone": cfg.site.timezone,
        "nodes": [node],
        "doors": {name: {"node": node, "area_in": d.area_in or None, "area_out": d.area_out or None}
                  for name, d in cfg.doors.items()},
        "desks": {name: {"node": node, "area": d.area or None, "position": list(d.position) if d.position else None}
                  for name, d in cfg.desks.items()},
        "areas": list(cfg.areas),
    }


def load_page(root: Path, layout: Mapping[str, Any]) -> Page:
    """Every file under ``root`` read once, and config.json; index.html also answers ``/``."""
    if not (root / "index.html").is_file():
        raise SekishoError(f"{root}: no index.html; the console's files are missing")
    files: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in SKIPPED or any(p.startswith(".") for p in path.relative_to(root).parts):
            continue
        kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind == "application/json":
            kind += "; charset=utf-8"
        files["/" + path.relative_to(root).as_posix()] = (kind, path.read_bytes())
    files["/"] = files["/index.html"]
    files["/config.json"] = ("application/json; charset=utf-8",
                             json.dumps(layout, ensure_ascii=False, indent=1).encode())
    return Page(files)


def _security_headers(broker_ws: str | None) -> dict[str, str]:
    # The broker may be on another host or port than this server: connect-src names it, or any
    # ws:/wss: when the page derives it from its own address. mqtt.js keeps its keepalive timer in
    # a worker it makes from a blob (a background tab's timers are throttled; a worker's are not).
    connect = "'self' " + (_origin(broker_ws) if broker_ws else "ws: wss:")
    return {
        "Content-Security-Policy": f"default-src 'self'; connect-src {connect}; img-src 'self' data:; "
                                   "style-src 'self'; script-src 'self'; worker-src blob:; object-src 'none'; "
                                   "base-uri 'none'; "
                                   "frame-ancestors 'none'; form-action 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Server(ThreadingHTTPServer):
    """Each connection on its own thread, TLS included: the handshake of a connection is done in
    its thread, with the handler's timeout, so one client that connects and says nothing holds
    up nobody else (wrapping the listening socket would do every handshake in the accept loop)."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away, timed out or failed its handshake: its own problem.
        log.debug("console: %s: %s", client_address, sys.exc_info()[1])


def _handler(page: Page, headers: Mapping[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sekisho-console"
        sys_version = ""
        timeout = HANDSHAKE_AND_REQUEST_S

        def setup(self) -> None:
            super().setup()  # the timeout, first
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            found = page.files.get(urlsplit(self.path).path)
            kind, data = found or ("text/plain; charset=utf-8", b"not found\n")
            self.send_response(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class ConsoleServer:
    """The HTTP(S) server on its own threads; ``url`` once it listens, ``close()`` to stop."""

    def __init__(self, page: Page, listen: str, port: int, broker_ws: str | None,
                 tls: tuple[str, str] | None = None) -> None:
        try:
            self.httpd = _Server((listen, port), _handler(page, _security_headers(broker_ws)))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {listen}:{port}: {exc.strerror or exc}") from None
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.load_cert_chain(*tls)
            except (OSError, ssl.SSLError) as exc:
                self.httpd.server_close()
                raise SekishoError(f"--tls-cert {tls[0]} / --tls-key {tls[1]}: cannot load: {exc}") from None
            self.httpd.tls = context
            self.scheme = "https"
        host, bound = self.httpd.socket.getsockname()[:2]
        # localhost, not 127.0.0.1: the name a browser treats as a secure context in every version;
        # a wildcard address is shown as this machine's name, as another machine would reach it.
        shown = ("localhost" if host == "127.0.0.1" else socket.gethostname() if host in ("0.0.0.0", "::")
                 else f"[{host}]" if ":" in host else host)
        self.url = f"{self.scheme}://{shown}:{bound}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="console http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(cfg: Config, *, listen: str, port: int, broker_ws: str | None, lang: str,
          tls_cert: str | None, tls_key: str | None, plain_http: bool = False, root: Path = CONSOLE_DIR) -> int:
    """``sekisho console``: serve until SIGINT or SIGTERM."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_cert is None and not plain_http and not _loopback(listen):
        raise UsageError(f"--listen {listen} without --tls-cert and --tls-key: another machine's browser would get "
                         "a page that cannot sign, and a broker password typed into it would cross the network in "
                         "clear (--plain-http if that is what you want)")
    if broker_ws is not None and urlsplit(broker_ws).scheme not in ("ws", "wss"):
        raise UsageError(f"--broker-ws {broker_ws}: a ws:// or wss:// URL")
    page = load_page(root, site_layout(cfg, broker_ws, lang))
    server = ConsoleServer(page, listen, port, broker_ws,
                           (tls_cert, tls_key) if tls_cert and tls_key else None)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"sekisho console: {server.url} (site {cfg.site.id}, broker "
              f"{broker_ws or 'ws(s)://<this host>:9001/, from the page address'}, {page.weight:,} bytes)",
              flush=True)
        stop.wait()
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

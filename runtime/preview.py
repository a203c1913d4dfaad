"""A live view in the browser for machines without a window: the annotated frames as an MJPEG stream and the
current decisions as JSON, served over HTTP (``--preview``).

The headless OpenCV wheel cannot open a window, and a Raspberry Pi often has no monitor; any browser on the
same machine (or, when ``--preview HOST:PORT`` says so, on the network) can show this instead. Loopback only
by default: the stream shows faces. Frames are JPEG-encoded on demand by the serving thread, once per frame
whatever the number of viewers, so the run loop only hands over a copy.
"""
from __future__ import annotations

import html
import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from .errors import OutputError, UsageError

log = logging.getLogger("liveness_edge")

DEFAULT_ADDRESS = "127.0.0.1:8080"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_VIEWERS = 4
BOUNDARY = "liveness-edge-frame"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>liveness-edge preview</title>
<style>body{{font-family:sans-serif;background:#222;color:#eee;margin:1em}}img{{max-width:100%;border:1px solid #555}}
pre{{background:#111;padding:.5em;white-space:pre-wrap}}</style></head>
<body><h1>liveness-edge</h1><p>{source}<br>{model}</p>
<img src="/stream.mjpg" alt="annotated camera stream">
<p>Green: real, red: spoof, orange: uncertain (reason below the box). P(real) is the smoothed score.</p>
<pre id="status">waiting for the first frame...</pre>
<script>
async function poll() {{
  try {{
    const s = await (await fetch('/status.json')).json();
    const faces = s.faces.map(f => `#${{f.track}} ${{f.decision}}  P(real) ${{f.p_real_smoothed.toFixed(2)}}` +
                                   (f.reason ? `  (${{f.reason}})` : '')).join('\\n');
    const challenge = s.challenge ? `\\n\\nCHALLENGE: ${{s.challenge.prompt}}` +
      (s.challenge.remaining_s !== null ? ` (${{Math.ceil(s.challenge.remaining_s)}} s left)` : '') : '';
    document.getElementById('status').textContent =
      `${{s.frames}} frames, ${{s.fps.toFixed(1)}} FPS\\n` + (faces || 'no face') + challenge;
  }} catch (e) {{ document.getElementById('status').textContent = 'the run has ended'; }}
  setTimeout(poll, 1000);
}}
poll();
</script></body></html>
"""


class _QuietServer(ThreadingHTTPServer):
    """A viewer closing its tab mid-response is normal: no traceback on the terminal, a debug line."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        log.debug("preview: connection from %s ended abruptly", client_address[0])


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); a bad value is a ``UsageError``."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--preview takes HOST:PORT or PORT, not {text!r}") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"--preview port must be 0-65535, not {number}")
    return host, number


@dataclass
class _Latest:
    image: np.ndarray | None = None
    seq: int = 0
    jpeg: bytes = b""
    jpeg_seq: int = -1
    status: bytes = b'{"frames": 0, "fps": 0.0, "faces": []}'


def _names_loopback(host_header: str) -> bool:
    """A loopback preview answers only requests addressed to a loopback name: a web page on a rebinding
    domain (evil.example resolved to 127.0.0.1) would otherwise read the camera as a same-origin page."""
    name = host_header.strip().lower()
    name = name[1:name.find("]")] if name.startswith("[") and "]" in name else name.split(":", 1)[0]
    return name in LOOPBACK or name.startswith("127.")


class PreviewServer:
    """Serves ``/`` (a page), ``/stream.mjpg`` (annotated frames) and ``/status.json`` in daemon threads."""

    def __init__(self, address: str = DEFAULT_ADDRESS, source: str = "", model: str = "") -> None:
        host, port = parse_address(address)
        self._latest = _Latest()
        self._cond = threading.Condition()
        self._closed = False
        self._viewers = threading.BoundedSemaphore(MAX_VIEWERS)  # each stream holds a thread while it is open
        self._page = PAGE.format(source=html.escape(source), model=html.escape(model)).encode()
        try:
            self._httpd = _QuietServer((host, port), self._handler())
        except OSError as e:
            raise OutputError(f"cannot serve the preview on {host}:{port}: {e.strerror or e}") from None
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{bound_host if ':' not in bound_host else f'[{bound_host}]'}:{bound_port}/"
        self.public = host not in LOOPBACK
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="preview server", daemon=True)
        self._thread.start()

    def publish(self, image: np.ndarray, status: dict) -> None:
        """The newest annotated frame and its status (copied: the caller reuses its buffer)."""
        with self._cond:
            self._latest.image = image.copy()
            self._latest.seq += 1
            self._latest.status = json.dumps(status).encode()
            self._cond.notify_all()

    def _jpeg(self, after: int) -> tuple[bytes, int] | None:
        """The first frame newer than ``after`` as JPEG (encoded once, shared by all viewers); None when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._latest.seq > after, timeout=1.0)
            latest = self._latest
            if self._closed:
                return None
            if latest.seq <= after or latest.image is None:
                return b"", after
            if latest.jpeg_seq != latest.seq:
                latest.jpeg = cv2.imencode(".jpg", latest.image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
                latest.jpeg_seq = latest.seq
            return latest.jpeg, latest.seq

    def _status(self) -> bytes:
        with self._cond:
            return self._latest.status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if not preview.public and not _names_loopback(self.headers.get("Host", "")):
                    self._send(403, "text/plain", b"forbidden: open the preview as http://127.0.0.1:PORT/\n")
                elif path == "/":
                    self._send(200, "text/html; charset=utf-8", preview._page)
                elif path == "/status.json":
                    self._send(200, "application/json", preview._status())
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found: try / , /stream.mjpg or /status.json\n")

            def _send(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                if not preview._viewers.acquire(blocking=False):
                    self._send(503, "text/plain", f"at most {MAX_VIEWERS} streams at a time\n".encode())
                    return
                try:
                    self._frames()
                finally:
                    preview._viewers.release()

            def _frames(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = 0
                try:
                    while (item := preview._jpeg(seq)) is not None:
                        jpeg, seq = item
                        if jpeg:
                            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                            self.wfile.write(head.encode() + jpeg + b"\r\n")
                            self.wfile.flush()
                except OSError:
                    return  # the viewer went away

            def log_message(self, format: str, *args: object) -> None:
                log.debug("preview: " + format, *args)

        return Handler

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

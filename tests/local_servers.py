"""HTTP servers on a free loopback port for the tests, in a thread: fake judges (chapter 7), the real server."""

import contextlib
import threading
from http.server import ThreadingHTTPServer


@contextlib.contextmanager
def serving(server):
    """``server`` (already bound) answering in a thread while the context lasts; yields its base URL."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def quiet(handler):
    """A request handler class that logs nothing."""
    return type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})


def local(handler):
    """A ThreadingHTTPServer of ``handler`` on a free loopback port."""
    return ThreadingHTTPServer(("127.0.0.1", 0), quiet(handler))

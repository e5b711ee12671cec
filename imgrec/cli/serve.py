"""``imgrec serve``: run the REST API under uvicorn."""

from __future__ import annotations

from imgrec.cli.args import EXIT_OK, positive_int
from imgrec.core.settings import Settings


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="run the REST API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, default=8000)
    serve.add_argument("--workers", type=positive_int, default=1, help="processes, each with its own model")
    serve.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    """Each worker reads its own settings; ``main`` has already read them, so a bad IMGREC_* value fails once,
    with a clear message, before any worker starts."""
    import uvicorn  # the server stack loads only for this command

    uvicorn.run(
        "imgrec.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        log_level="info", access_log=False,
    )
    return EXIT_OK

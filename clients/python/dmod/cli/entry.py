"""The `dmod` console script: the Typer app, with every error a user can meet turned into one
readable line and an exit code — never a Python traceback. An unexpected error is written in full
to `$DMOD_HOME/cli-errors.log` (shown on the terminal with DMOD_DEBUG=1)."""
from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from pathlib import Path


def _say(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def _log_unexpected(exc: BaseException) -> Path | None:
    from dmod.services.runtime.settings import default_home

    try:
        home = Path(os.environ.get("DMOD_HOME") or default_home())
        home.mkdir(parents=True, exist_ok=True)
        log = home / "cli-errors.log"
        with open(log, "a") as fh:
            fh.write(f"--- {dt.datetime.now(dt.UTC).isoformat()} dmod {' '.join(sys.argv[1:])}\n")
            fh.write("".join(traceback.format_exception(exc)))
        return log
    except OSError:
        return None


def run(argv: list[str] | None = None) -> int:
    import grpc

    from dmod.cli.main import app
    from dmod.datasets_client import ChecksumMismatch
    from dmod.errors import describe
    from dmod.url_download import UrlFetchFailed

    try:
        app(args=argv, standalone_mode=True)
        return 0
    except SystemExit as exc:  # Typer/Click's normal way out (exit codes, usage errors)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except grpc.RpcError as exc:
        _say(describe(exc) if hasattr(exc, "code") else str(exc))
        return 1
    except ChecksumMismatch as exc:
        _say(f"the downloaded bytes failed their SHA-256 check, nothing was kept: {exc}")
        return 1
    except UrlFetchFailed as exc:
        _say(f"download from the object store failed: {exc}")
        return 1
    except (OSError, LookupError, ValueError) as exc:
        _say(str(exc) or exc.__class__.__name__)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the user's terminal
        if os.environ.get("DMOD_DEBUG"):
            raise
        log = _log_unexpected(exc)
        _say(f"unexpected {exc.__class__.__name__}: {str(exc)[:300]}"
             + (f" (details in {log}; DMOD_DEBUG=1 shows them here)" if log else ""))
        return 1


def main() -> None:
    sys.exit(run())

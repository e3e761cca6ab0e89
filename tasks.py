"""archfarm's tasks. Thin by design: parse flags, call into `provision`, print, exit.

Heavy imports (the Compute Engine client) happen inside task bodies, so `inv --list` and
`inv <task> --help` stay fast.
"""

from invoke import Collection, task


@task(help={"port": "loopback port to listen on (default 8089)",
            "operation_seconds": "how long each operation takes (default 2)"})
def fake(c, port=8089, operation_seconds=2.0):
    """Run the fake Compute Engine in the foreground on 127.0.0.1 (Ctrl-C stops it)."""
    from provision.fakegce.__main__ import main

    raise SystemExit(main(["--port", str(port), "--operation-seconds", str(operation_seconds)]))


ns = Collection(fake)

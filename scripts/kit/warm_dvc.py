"""A warm DVC: one process that imports DVC once, then forks a child per DVC command, so a
command starts in milliseconds instead of a cold interpreter's half second of imports.

Each child runs DVC's own command line (`dvc.cli.main`, the `dvc` console entry) in its own
process, with its own `Repo`, so DVC decides, locks and records exactly as `dvc ARGS` would; only
the import is shared. (One other command: Option C's plan, read with DVC's API, kit/dvc_graph.py.)
The warm process is started once per flow process (`start`), forks from a single thread (it runs
no other), and ends when the flow's process does. Its children are Popen-like (`WarmCommand`): a
pid to stop their process tree by, their output as lines, their exit status as Popen gives it.

    python -m kit.warm_dvc FD ROOT       (started by `start`, never by hand)

Only the standard library is imported here: the warm process imports DVC, and nothing else.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

_started: WarmDvc | None = None
_start_lock = threading.Lock()


class WarmCommand:
    """A DVC command running in a child of the warm process, used as a Popen is: `pid`,
    `stdout` (its output and errors, as text lines), `wait()` and `returncode`."""

    def __init__(self, replies: socket.socket, output_fd: int):
        self._replies = replies.makefile("r")
        self.stdout = open(output_fd, errors="replace")
        pid = self._replies.readline()
        if not pid.strip():
            self.stdout.close()
            raise OSError("the warm DVC process did not start the command")
        self.pid = int(pid)
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            status = self._replies.readline()  # the exit status, as Popen gives it: -N for signal N
            self.returncode = int(status) if status.strip() else -signal.SIGKILL  # the warm process is gone
            self._replies.close()
        return self.returncode

    def __enter__(self) -> WarmCommand:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stdout.close()
        self.wait()


class WarmDvc:
    """The warm process, and the socket its commands are sent on."""

    def __init__(self, root: Path):
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kit.warm_dvc", str(theirs.fileno()), str(root)],
                cwd=Path(__file__).resolve().parents[1],  # scripts/: `kit` importable
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )

    def run(self, args: list[str], cwd: Path, env: dict[str, str], command: str = "dvc") -> WarmCommand:
        """Start `dvc ARGS` in `cwd` with `env`, its output and errors on one pipe; or, with
        command="plan", print Option C's plan of the repository at ARGS[0] (kit/dvc_graph.py)."""
        output, child_output = os.pipe()
        replies, child_replies = socket.socketpair()
        try:
            request = json.dumps({"command": command, "args": args, "cwd": str(cwd), "env": env}).encode()
            with self._lock:  # one message at a time on the shared socket
                socket.send_fds(self._control, [request], [child_replies.fileno(), child_output])
        except OSError:
            os.close(output)
            replies.close()
            raise
        finally:
            os.close(child_output)
            child_replies.close()
        with replies:
            return WarmCommand(replies, output)


def start(root: Path) -> WarmDvc | None:
    """This process's warm DVC, started on the first call (its imports then run beside the
    caller's work); None where it cannot run (no fork: Windows)."""
    global _started
    if not hasattr(os, "fork"):
        return None
    with _start_lock:
        if _started is None or _started.process.poll() is not None:
            _started = WarmDvc(root)
        return _started


def run_warm(root: Path, args: list[str], cwd: Path, env: dict[str, str], command: str = "dvc") -> WarmCommand | None:
    """`WarmDvc.run` on this process's warm DVC (started for `root` if need be); None where there
    is none to run it (no fork, or the warm process is gone): the caller does the same without it."""
    process = start(root)
    if process is None:
        return None
    try:
        return process.run(args, cwd, env, command)
    except OSError:
        return None


# --- the warm process ---------------------------------------------------------------------------


def serve(control: socket.socket, root: Path) -> None:
    """Import DVC, then fork a child per request until the flow's process closes the socket;
    report each child's pid when it starts and its exit status when it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the commands; this ends with its flow
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below
    from kit import dvc_internals

    try:
        dvc_internals.warm_up(root)
    except Exception:  # a repository DVC cannot open: its commands will say why
        pass
    running: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                message, fds, _, _ = socket.recv_fds(control, 1 << 20, 2)
                if not message:  # the flow's process is gone
                    gc.freeze()  # skip the last collections' walk over what DVC's imports made
                    return
                replies, output = socket.socket(fileno=fds[0]), fds[1]
                pid = os.fork()
                if pid == 0:
                    for fd in (control.fileno(), wake_read, wake_write, *(s.fileno() for s in running.values())):
                        os.close(fd)
                    _run_command(json.loads(message), replies, output)
                os.close(output)
                replies.sendall(f"{pid}\n".encode())
                running[pid] = replies
            else:
                os.read(wake_read, 4096)
                _report_ended(running)


def _report_ended(running: dict[int, socket.socket]) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if replies := running.pop(pid, None):
            try:
                replies.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass  # the flow stopped waiting for it
            replies.close()


def _run_command(request: dict, replies: socket.socket, output: int) -> None:
    """In the forked child: run `dvc ARGS` as its console entry would (or print the plan), and
    exit with its status."""
    code = 255
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        replies.close()
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        sys.stdout.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["dvc", *request["args"]]
        from kit.dvc_graph import print_plan
        from kit.dvc_internals import command_line, poll_lock_often

        poll_lock_often()  # every command here waits for DVC's lock (kit/dvc_run.py, kit/dvc_graph.py)
        code = {"dvc": command_line, "plan": print_plan}[request["command"]](request["args"])
    except Exception as exc:
        print(f"ERROR: {exc!r}", file=sys.stderr)
    finally:  # whatever happened, the child ends here and never returns into the warm loop
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) and 0 <= code < 256 else 255)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), Path(sys.argv[2]))

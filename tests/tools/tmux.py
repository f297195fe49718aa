"""A private tmux server for testing terminal programs: its socket lives in the test's temp
dir, so it never touches the user's sessions; kill() stops it."""
import os
import subprocess
import time


class TmuxError(Exception):
    pass


class Tmux:
    def __init__(self, tmp, window="w"):
        self.sock = os.path.join(tmp, "tmux.sock")
        self.window = window

    def run(self, *args, check_rc=True):
        p = subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                           timeout=10)
        if check_rc and p.returncode != 0:
            raise TmuxError(f"tmux {args}: {p.stderr}")
        return p.stdout

    def start(self, command, width=150, height=60):
        self.run("new-session", "-d", "-s", self.window, "-x", str(width), "-y", str(height),
                 command)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", self.window)

    def wait_for(self, pred, what, timeout=10):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self.screen()
            if pred(last):
                return last
            time.sleep(0.1)
        raise TmuxError(f"screen never showed {what}:\n{last}")

    def kill(self):
        self.run("kill-server", check_rc=False)

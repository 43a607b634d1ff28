"""A real multi-user course machine for the end-to-end course test, all on 127.0.0.1:

* real unix users (an instructor and students) made with useradd, with passwords, removed afterwards;
* JupyterHub with PAM logins (those unix passwords), LocalProcessSpawner (each single-user server runs as
  its unix user) and configurable-http-proxy in front;
* nbgrader's exchange, a directory every user can write to, as on a real multi-user hub.

Everything the test does as a student goes through the proxy: a token from the hub's REST API (logged in with
the unix password), the single-user server started by the hub, nbgrader's server extension and the Jupyter
contents API. The instructor runs nbgrader on the command line in the course directory, as the instructor's
unix user (`runuser`), which is how docs/teaching.md tells a teacher to do it. Every wait is bounded; every
process started here is stopped by its id at the end.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]
COURSE_ID = "vmio-edu"


def missing() -> str | None:
    """Why a real hub cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: it creates unix users and runs JupyterHub's LocalProcessSpawner (CI runs as root)"
    for tool in ("useradd", "userdel", "chpasswd", "runuser"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on this machine (Debian's passwd/util-linux packages)"
    if chp() is None:
        return "no configurable-http-proxy (`npm install -g configurable-http-proxy`; .ci/run does it)"
    if shared_python() is None:
        return ("no python3 that every user can run (with venv and ensurepip): the course users cannot run "
                "an interpreter under /root; Debian's /usr/bin/python3 with python3-venv will do")
    try:
        import requests  # noqa: F401
        import nbgrader  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install -e '.[test]')"
    return None


_shared_python: list = []


def shared_python() -> str | None:
    """A python3 that any unix user can run, to build the course's environment with. This test's own venv
    may live where students cannot reach it (a clone under /root, a pyenv interpreter under /root)."""
    if not _shared_python:
        found = None
        for cand in (getattr(sys, "_base_executable", None), shutil.which("python3"), "/usr/bin/python3"):
            if not cand or not os.path.exists(cand):
                continue
            cand = os.path.realpath(cand)
            try:
                ok = subprocess.run(["runuser", "-u", "nobody", "--", cand, "-c", "import venv, ensurepip"],
                                    capture_output=True, timeout=60).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                found = cand
                break
        _shared_python.append(found)
    return _shared_python[0]


def _umask022() -> None:
    os.umask(0o022)  # what the course users must read (the venv, the exchange) must not be private to root


def build_course_env(where: Path, diag: "Diagnostics", timeout: float = 1200) -> Path:
    """A venv every course user can run, with vmio-edu and its `course` extra (JupyterHub, nbgrader,
    JupyterLab) installed as a hub administrator would: not editable, so nothing points into this
    repository. Returns its bin directory."""
    venv, src = where / "venv", where / "vmio-edu-src"
    # pip builds in the source tree: build a copy, so the repository gets no build/ and no root-owned files
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "test-output", "tests", "*.img"))
    steps = [[shared_python(), "-m", "venv", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              f"{src}[course]"]]
    for argv in steps:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=_umask022,
                               cwd=where)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{' '.join(argv)}: no result within {timeout:g} s\n{e.stdout}{e.stderr}")
        diag.note(f"course environment: {' '.join(argv)} -> {p.returncode}", p.stdout + p.stderr)
        assert p.returncode == 0, f"{' '.join(argv)} failed:\n{p.stdout[-3000:]}{p.stderr[-6000:]}"
    return venv / "bin"


def chp() -> str | None:
    return shutil.which("configurable-http-proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Diagnostics:
    """What to show when the test fails: command outputs as they happen, log files read at the end."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.notes: list[tuple[str, str]] = []
        self.logs: list[tuple[str, Path]] = []

    def note(self, title: str, text: str) -> None:
        self.notes.append((f"{time.monotonic() - self.t0:7.1f} s: {title}", text))

    def report(self, tail: int = 12000) -> str:
        out = [f"--- {title} ---\n{text[-tail:]}" for title, text in self.notes]
        for title, path in self.logs:
            try:
                text = path.read_text(errors="replace")
            except OSError as e:
                text = f"(cannot read {path}: {e})"
            out.append(f"--- {title} ({path}) ---\n{text[-tail:]}")
        return "\n".join(out)


def _wait(proc_or_pid, timeout: float) -> bool:
    """Wait up to `timeout` s for a pid to be gone; True if it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(proc_or_pid):
            return True
        time.sleep(0.2)
    return not _alive(proc_or_pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pids(pids: list[int], grace: float = 10) -> None:
    """SIGTERM these processes (ours, by id), then SIGKILL what is left after `grace` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        live = [p for p in pids if _alive(p)]
        for p in live:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in live) and time.monotonic() < deadline:
            time.sleep(0.2)


@dataclass
class User:
    name: str
    password: str
    home: Path
    uid: int
    gid: int


@dataclass
class UnixUsers:
    """Unix users made for one test run (random names, so a crashed run never collides with the next)."""

    base: Path
    users: list[User] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)  # sessions run_as started

    def add(self, role: str) -> User:
        name = f"vmio{role}{secrets.token_hex(3)}"
        home = self.base / "home" / name
        home.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                        "--comment", "vmio-edu course test", name], check=True, capture_output=True, timeout=60)
        pw = pwd.getpwnam(name)
        user = User(name, secrets.token_urlsafe(12), home, pw.pw_uid, pw.pw_gid)
        self.users.append(user)
        subprocess.run(["chpasswd"], input=f"{name}:{user.password}\n", text=True, check=True,
                       capture_output=True, timeout=60)
        return user

    def processes(self) -> list[int]:
        """Pids of processes running as one of these users (servers the hub did not stop, stray kernels),
        or left in a session run_as started (a grader's sandbox, which runs as nobody)."""
        uids = {u.uid for u in self.users}
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        sid = int(f.read().rsplit(")", 1)[1].split()[4])
                    if os.stat(f"/proc/{d}").st_uid in uids or sid in self.sessions:
                        pids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return pids

    def remove(self) -> None:
        _stop_pids(self.processes())
        for user in self.users:
            subprocess.run(["userdel", "--remove", user.name], capture_output=True, timeout=60)
        self.users.clear()

    def run_as(self, user: User | None, argv: list[str], cwd: Path, bin_dir: Path, timeout: float,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command as `user` (None: root) with a clean login-like environment (the instructor's
        commands). In its own session, so a time-out can stop the command and everything it started."""
        name, home = (user.name, user.home) if user else ("root", Path("/root"))
        env_ = ["HOME=" + str(home), "USER=" + name, "LOGNAME=" + name, "SHELL=/bin/bash",
                "LANG=C.UTF-8", "PATH=" + f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
                *(f"{k}={v}" for k, v in (env or {}).items())]
        cmd = [*(["runuser", "-u", name, "--"] if user else []), "env", "-i", *env_, *argv]
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, preexec_fn=_umask022)
        self.sessions.add(proc.pid)  # its session id: teardown stops whatever is left in it, as any user
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            raise AssertionError(f"{' '.join(argv)} as {name}: no result within {timeout:g} s\n{out}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, "")


HUB_CONFIG = """\
# Written by tests/course/hub.py: a real multi-user hub, on 127.0.0.1 only.
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {cookie!r}
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = {allowed!r}
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.log_level = "INFO"
"""


class Hub:
    """JupyterHub as a child process of the test (root), its state and log under `state`."""

    def __init__(self, state: Path, bin_dir: Path, allowed: set[str], environment: dict[str, str],
                 diag: Diagnostics):
        self.state, self.bin_dir = state, bin_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state / "jupyterhub.log"
        self.proxy_pid_file = state / "jupyterhub-proxy.pid"
        diag.logs.append(("JupyterHub, proxy and single-user servers", self.log))
        (state / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=free_port(), proxy_api_port=free_port(), chp=chp(),
            proxy_pid=str(self.proxy_pid_file), state=state, cookie=str(state / "cookie_secret"),
            allowed=sorted(allowed), singleuser=str(bin_dir / "jupyterhub-singleuser"), environment=environment))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        import requests

        env = dict(os.environ, PATH=f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", PYTHONUNBUFFERED="1")
        for k in list(env):
            if k.startswith(("JUPYTERHUB_", "JPY_")):
                env.pop(k)
        with open(self.log, "wb") as out:  # the single-user servers inherit it: their logs land here too
            self.proc = subprocess.Popen([str(self.bin_dir / "python"), "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                                        cwd=self.state, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterHub exited with status {self.proc.returncode} while starting")
            try:
                # through the proxy: both the hub and configurable-http-proxy are up
                if requests.get(f"{self.url}/hub/api/", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterHub did not answer on {self.url} within {timeout:g} s")
            time.sleep(0.5)

    def proxy_pid(self) -> int | None:
        try:
            return int(self.proxy_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM the hub, which stops the single-user servers and the proxy; kill what is left."""
        if self.proc is None:
            return
        proxy = self.proxy_pid()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if proxy is not None:
            _stop_pids([proxy])
        self.proc = None


class Student:
    """One student in a browser-less session: everything goes through the hub's proxy with the student's
    own API token (what JupyterLab's Assignments tab and editor send)."""

    def __init__(self, hub: Hub, user: User, diag: Diagnostics):
        import requests

        self.hub, self.user, self.diag = hub, user, diag
        self.http = requests.Session()
        self.server = f"{hub.url}/user/{quote(user.name)}/"

    def request_token(self, password: str):
        """POST /hub/api/users/:name/tokens, authenticated by the unix password (PAM) in the body."""
        return self.http.post(f"{self.hub.url}/hub/api/users/{self.user.name}/tokens", timeout=120,
                              json={"auth": {"username": self.user.name, "password": password},
                                    "note": "vmio-edu course test", "expires_in": 3600})

    def log_in(self) -> None:
        r = self.request_token(self.user.password)
        assert r.status_code in (200, 201), f"{self.user.name}: token request: {r.status_code} {r.text}"
        self.http.headers["Authorization"] = f"token {r.json()['token']}"

    def start_server(self, timeout: float = 300) -> dict:
        """Ask the hub to spawn this student's server, and wait until the hub says it is ready."""
        r = self.http.post(f"{self.hub.url}/hub/api/users/{self.user.name}/server", timeout=120)
        assert r.status_code in (201, 202), f"{self.user.name}: spawn: {r.status_code} {r.text}"
        deadline = time.monotonic() + timeout
        while True:
            model = self.http.get(f"{self.hub.url}/hub/api/users/{self.user.name}", timeout=60).json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if server is None and model.get("pending") is None and r.status_code == 202:
                raise AssertionError(f"{self.user.name}: the server stopped while starting: {model}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user.name}: server not ready within {timeout:g} s: {model}")
            time.sleep(1)

    def call(self, method: str, path: str, ok=(200,), timeout: float = 300, **kw):
        """One request to this student's single-user server, through the proxy."""
        r = self.http.request(method, self.server + path, timeout=timeout, **kw)
        self.diag.note(f"{self.user.name}: {method} {path} -> {r.status_code}", r.text[:4000])
        assert r.status_code in ok, f"{self.user.name}: {method} {path}: {r.status_code} {r.text[:2000]}"
        return r

    # nbgrader's server extension (what the Assignments tab calls)
    def assignments(self) -> list[dict]:
        res = self.call("GET", "assignments", params={"course_id": COURSE_ID}).json()
        assert res["success"], f"{self.user.name}: assignment list: {res}"
        return res["value"]

    def assignment_action(self, action: str, assignment: str) -> dict:
        res = self.call("POST", f"assignments/{action}",
                        json={"course_id": COURSE_ID, "assignment_id": assignment}).json()
        assert res.get("success"), f"{self.user.name}: {action} {assignment}: {res}"
        return res

    def validate(self, path: str) -> dict:
        """nbgrader's Validate button: the server runs the notebook in a kernel, as this student."""
        res = self.call("POST", "assignments/validate", json={"path": path}, timeout=900).json()
        assert res.get("success"), f"{self.user.name}: validate {path}: {res}"
        return res["value"]

    # the Jupyter contents API (what the notebook editor calls)
    def read_notebook(self, path: str) -> dict:
        model = self.call("GET", "api/contents/" + quote(path), params={"content": "1"}).json()
        assert model["type"] == "notebook", model
        return model["content"]

    def save_notebook(self, path: str, nb: dict) -> None:
        self.call("PUT", "api/contents/" + quote(path), ok=(200, 201),
                  json={"type": "notebook", "format": "json", "content": nb})

    def read_text(self, path: str) -> str:
        model = self.call("GET", "api/contents/" + quote(path), params={"content": "1", "format": "text",
                                                                         "type": "file"}).json()
        return model["content"]

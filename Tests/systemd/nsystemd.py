"""A real systemd (the machine's /lib/systemd/systemd) booted as PID 1 of private namespaces, for tests.

    system = NamespacedSystemd(workdir, repo, bin_dir)
    system.boot()                         # unshare + boot.sh + systemd; waits until the boot target is reached
    system.run("/run/kvtest/src/scripts/install.sh")   # any command inside (nsenter)
    system.systemctl("start", "kv.target")
    status, body = system.http("GET", "/status")        # HTTP to 127.0.0.1:8080 inside its network namespace
    system.shutdown()                     # SIGKILL to its PID 1: everything inside ends; cgroups removed

The namespaces are PID, mount, network, UTS and IPC: systemd, nginx and the kv units get their own loopback
(so the installed defaults, 127.0.0.1:8080 and 7001-7003, never collide with a dev cluster or another test
run) and their own view of /run, /tmp, /dev, /etc, /usr/local and /var (see boot.sh) — the host's files are
never written. Sockets into that network namespace are created by a helper thread that joined it (setns).
If the test process dies, unshare (PR_SET_PDEATHSIG) and then systemd (unshare --kill-child) die with it.
"""
import ctypes
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import kvcluster  # noqa: E402  (the repository's cluster helper: one HTTP exchange for both harnesses)
import kvwire  # noqa: E402  (the authenticated wire client)
BOOT_SCRIPT = os.path.join(HERE, "boot.sh")
SYSTEMD = "/lib/systemd/systemd"
NSENTER_NAMESPACES = ["-m", "-p", "-n", "-u", "-i"]
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--mount-proc",
           "--propagation", "private", "--net", "--uts", "--ipc"]

_libc = ctypes.CDLL(None, use_errno=True)

# Lines for the test session's summary (exposure scores, timings), printed by conftest.py.
REPORT = []


def unavailable_reason():
    """None if this machine can boot systemd in namespaces, else why not (the tests skip with it)."""
    if os.geteuid() != 0:
        return "needs root (unshare of PID/mount/network namespaces, mounts, setns)"
    for tool in ("unshare", "nsenter", "systemctl", "journalctl", "systemd-analyze", "nginx"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} is not installed"
    probe = subprocess.run(UNSHARE + ["sh", "-ec", "mount -t tmpfs tmpfs /run; mkdir /run/u /run/w /run/o; "
                                                  "mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/u,"
                                                  "workdir=/run/w /run/o"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create namespaces or mount tmpfs/overlay here: {probe.stderr.strip() or probe.stdout.strip()}"
    return None


def wait_until(predicate, timeout_s, what, interval_s=0.05):
    """kvcluster.wait_until, polling every 50 ms by default: the predicates here run `systemctl` or HTTP in the
    namespaces."""
    return kvcluster.wait_until(predicate, timeout_s, what, interval_s=interval_s)


class _NetnsSockets:
    """Creates sockets inside another network namespace: a thread joins it once, then makes sockets on request.
    A socket belongs to the namespace it was created in, whichever thread uses it afterwards."""

    def __init__(self, netns_path):
        self._requests = queue.Queue()
        ready = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(netns_path, ready), daemon=True,
                                        name="netns-sockets")
        self._thread.start()
        error = ready.get(timeout=10)
        if error:
            raise OSError(error)

    def _run(self, netns_path, ready):
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                ready.put(f"setns({netns_path}): {os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(fd)
        ready.put(None)
        while True:
            request = self._requests.get()
            if request is None:
                return
            family, reply = request
            try:
                reply.put(socket.socket(family, socket.SOCK_STREAM))
            except OSError as exc:
                reply.put(exc)

    def socket(self, family=socket.AF_INET):
        reply = queue.Queue()
        self._requests.put((family, reply))
        result = reply.get(timeout=10)
        if isinstance(result, Exception):
            raise result
        return result

    def connect(self, host, port, timeout_s):
        sock = self.socket()
        sock.settimeout(timeout_s)
        try:
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self):
        self._requests.put(None)


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, sockets, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._sockets = sockets

    def connect(self):
        self.sock = self._sockets.connect(self.host, self.port, self.timeout)


class NamespacedSystemd:
    def __init__(self, workdir, repo, bin_dir, http_port=8080):
        self.workdir = workdir
        self.repo = os.path.abspath(repo)
        self.bin_dir = os.path.abspath(bin_dir)
        self.http_port = http_port
        # The installed admin token, read once it exists (http() sends it).
        self._admin_token = None
        self.id = uuid.uuid4().hex[:12]
        self.console_log = os.path.join(workdir, "console.log")
        self.output_log = os.path.join(workdir, "unshare.log")
        self.proc = None
        self.pid1 = None          # host PID of the namespace's PID 1 (systemd)
        self._sockets = None

    # ----- life cycle ---------------------------------------------------------------------------------------

    def boot(self, timeout_s=60):
        remove_stale_cgroups()
        os.makedirs(self.workdir, exist_ok=True)
        open(self.console_log, "w").close()
        output = open(self.output_log, "w")

        def die_with_parent():
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        self.proc = subprocess.Popen(UNSHARE + ["sh", BOOT_SCRIPT, self.id, self.console_log, self.repo,
                                                self.bin_dir],
                                     stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        output.close()

        def pid1():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the namespace exited during boot:\n{self.boot_log()}")
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    children = f.read().split()
            except FileNotFoundError:
                return None
            if not children:
                return None
            try:
                with open(f"/proc/{children[0]}/comm") as f:
                    return int(children[0]) if f.read().strip() == "systemd" else None
            except FileNotFoundError:
                return None
        self.pid1 = wait_until(pid1, timeout_s, "systemd to start as PID 1 of the namespace")

        def booted():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the namespace exited during boot:\n{self.boot_log()}")
            out = self.run("systemctl", "is-active", "kvtest.target", check=False)
            return out.stdout.strip() == "active"
        try:
            wait_until(booted, timeout_s, "the namespace's systemd to reach kvtest.target", interval_s=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.boot_log()}\n{self.journal(lines=100)}") from None
        self._sockets = _NetnsSockets(f"/proc/{self.pid1}/ns/net")

    def boot_log(self):
        parts = []
        for path in (self.output_log, self.console_log):
            try:
                with open(path, errors="replace") as f:
                    parts.append(f"--- {os.path.basename(path)}\n{f.read()[-5000:]}")
            except OSError:
                pass
        return "\n".join(parts)

    def shutdown(self):
        """Ends everything in the namespaces (SIGKILL to their PID 1) and removes our cgroups."""
        if self._sockets is not None:
            self._sockets.close()
            self._sockets = None
        if self.proc is not None:
            try:
                if self.pid1 is not None:
                    os.kill(self.pid1, signal.SIGKILL)
                else:
                    self.proc.kill()      # unshare; --kill-child takes the namespace's PID 1 with it
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc = None
        remove_cgroups(self.id)

    # ----- inside -------------------------------------------------------------------------------------------

    def run(self, *argv, check=True, input=None, timeout_s=120, env=None):
        """Runs argv inside the namespaces; returns the CompletedProcess (text)."""
        command = ["nsenter", "-t", str(self.pid1)] + NSENTER_NAMESPACES + ["--"]
        if env:
            command += ["env"] + [f"{k}={v}" for k, v in env.items()]
        result = subprocess.run(command + list(argv), input=input, capture_output=True, text=True,
                                timeout=timeout_s)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args, check=True, timeout_s=120):
        return self.run("systemctl", "--no-pager", *args, check=check, timeout_s=timeout_s)

    def show(self, unit, prop):
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def is_active(self, unit):
        return self.systemctl("is-active", unit, check=False).stdout.strip()

    def journal(self, *units, lines=None):
        args = ["journalctl", "--no-pager", "-o", "short-monotonic"]
        for unit in units:
            args += ["-u", unit]
        if lines:
            args += ["-n", str(lines)]
        return self.run(*args, check=False).stdout

    def read_file(self, path):
        return self.run("cat", path).stdout

    def write_file(self, path, text):
        self.run("sh", "-c", 'cat > "$1"', "sh", path, input=text)

    def exists(self, path):
        return self.run("test", "-e", path, check=False).returncode == 0

    # ----- network ------------------------------------------------------------------------------------------

    def http(self, method, path, body=None, timeout_s=30, token=True):
        """One HTTP request to nginx inside; returns (status, parsed JSON body or {"raw": text}). With `token`,
        it carries the installed admin token (/etc/kv/admin.token) once there is one."""
        headers = {}
        if token:
            if self._admin_token is None and self.exists("/etc/kv/admin.token"):
                self._admin_token = self.read_file("/etc/kv/admin.token").strip()
            if self._admin_token:
                headers["Authorization"] = f"Bearer {self._admin_token}"
        return kvcluster.exchange(_NetnsHTTPConnection(self._sockets, "127.0.0.1", self.http_port, timeout_s),
                                  method, path, body, headers)

    def watch(self, path, last_event_id=None, timeout_s=30):
        """A GET /watch stream from nginx inside (kvsse.EventStream), with the admin token."""
        import kvsse
        self.http("GET", "/ping")  # reads the admin token once
        headers = {"Authorization": f"Bearer {self._admin_token}"} if self._admin_token else {}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        conn = _NetnsHTTPConnection(self._sockets, "127.0.0.1", self.http_port, timeout_s)
        return kvsse.EventStream(self.http_port, path, headers=headers, conn=conn)

    def raw_wire(self, port, payload, timeout_s=10):
        """Sends `payload` to 127.0.0.1:port inside without a handshake, as `nc` would; the reply lines until the
        server closes."""
        sock = self._sockets.connect("127.0.0.1", port, timeout_s)
        try:
            sock.sendall(payload)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    return [json.loads(line) for line in b"".join(chunks).splitlines()]
                chunks.append(data)
        finally:
            sock.close()

    def role_key(self, role):
        """The key proving `role` on the installed cluster's links (from /etc/kv/cluster.key)."""
        return kvwire.role_key(bytes.fromhex(self.read_file("/etc/kv/cluster.key").strip()), role)

    def link_tls_context(self):
        """The ssl context of the installed cluster links (None unless /etc/kv/cluster.yaml has security.tls): the
        installed certificate, key and CA, copied out of the namespaces for Python's ssl module."""
        import yaml
        config = yaml.safe_load(self.read_file("/etc/kv/cluster.yaml"))
        tls = (config.get("security") or {}).get("tls")
        if not tls:
            return None
        copies = {}
        for name in ("cert_file", "key_file", "ca_file"):
            fd, copies[name] = tempfile.mkstemp(prefix="kv-link-tls-")
            with os.fdopen(fd, "w") as f:
                f.write(self.read_file(tls[name]))
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=copies["ca_file"])
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.load_cert_chain(copies["cert_file"], copies["key_file"])
        finally:
            for path in copies.values():
                os.remove(path)
        return context

    def wire(self, port, *lines, timeout_s=10, client_id="tests", epoch=0):
        """Sends wire-protocol lines to a replica on 127.0.0.1:port inside (through TLS when the install has link
        TLS on); returns the JSON replies."""
        sock = self._sockets.connect("127.0.0.1", port, timeout_s)
        try:
            tls = self.link_tls_context()
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            f = sock.makefile("rwb")
            if self.exists("/etc/kv/cluster.key"):
                # The installed cluster authenticates its links: prove the master's role with the installed key.
                kvwire.handshake(f, self.role_key("master"), "master", client_id, epoch=epoch)
            for line in lines:
                f.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
            f.flush()
            replies = []
            for _ in lines:
                raw = f.readline()
                if not raw:
                    raise ConnectionError(f"127.0.0.1:{port} closed the connection")
                replies.append(json.loads(raw))
            f.close()
            return replies
        finally:
            sock.close()


def _cgroup_groups(system_id):
    """The kvtest-ID groups boot.sh creates: below our own cgroup, in the name=systemd and the v2 hierarchy."""
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                mounts.setdefault("", fields[1])
            elif fields[2] == "cgroup" and "name=systemd" in fields[3].split(","):
                mounts.setdefault("name=systemd", fields[1])
    groups = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers in mounts:
                groups.append(os.path.join(mounts[controllers] + path, f"kvtest-{system_id}"))
    return groups


def remove_stale_cgroups():
    """Removes kvtest-* groups without any process in them: left by test runs that were killed (SIGKILL to
    the test process ends the namespaces but leaves their empty cgroups). Live systems always have a process."""
    for group in _cgroup_groups("x"):
        parent = os.path.dirname(group)
        try:
            names = [n for n in os.listdir(parent) if n.startswith("kvtest-")]
        except OSError:
            continue
        for name in names:
            tree = os.path.join(parent, name)
            busy = False
            for dirpath, _, files in os.walk(tree):
                if "cgroup.procs" in files:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        busy = busy or bool(f.read().strip())
            if not busy:
                _rmdir_tree(tree, attempts=1)


def remove_cgroups(system_id):
    """Removes the cgroups kvtest-ID (and their children) a namespace's systemd left behind, once empty."""
    for group in _cgroup_groups(system_id):
        if os.path.isdir(group):
            _rmdir_tree(group)


def _rmdir_tree(path, attempts=50):
    for attempt in range(attempts):
        for dirpath, _, _ in sorted(os.walk(path), key=lambda entry: -entry[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        if not os.path.exists(path):
            return
        time.sleep(0.1)
